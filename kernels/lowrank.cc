// lowrank codec: per-slab PCA transform coding. docs/lowrank.md is the format spec; the
// analysis half (covariance, eigen-decomposition, bit allocation) is encoder-only policy
// and can change without a format change.
#include "kernels/lowrank.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <queue>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/half.h"
#include "kernels/linalg.h"
#include "kernels/simd.h"

namespace adaptcache {
namespace {

constexpr uint32_t kSectionIndex = 1;  // per slab: u32 offset, u32 length into kSectionData
constexpr uint32_t kSectionData = 2;   // slab records
constexpr uint8_t kLayoutRevision = 1;  // params[1]
constexpr int kMaxBits = 12;            // widest coefficient code
constexpr float kFp16Max = 65504.0f;

// Sizes of the fixed parts of a slab record (docs/lowrank.md).
constexpr uint64_t kSlabHeaderBytes = 4;   // u16 heads_per_group, u16 reserved
constexpr uint64_t kGroupHeaderBytes = 4;  // u16 rank, u16 reserved
constexpr uint64_t kPerComponentBytes = 1 + 4;  // u8 bits + f32 step (+ 2*head_dim basis)

absl::Status Corrupt(absl::string_view what) {
  return absl::DataLossError(absl::StrCat("corrupt lowrank container: ", what));
}

uint64_t SlabCount(const KvShape& s) { return 2ull * s.layers; }

// Bytes of everything in the container that does not depend on the bit allocation,
// except the per-group parts of slab records.
uint64_t ContainerFixedBytes(const KvShape& s) {
  const uint64_t index = SlabCount(s) * 8;
  return sizeof(ContainerHeader) + 2 * sizeof(SectionEntry) + index + 2 * kSectionAlign;
}

uint64_t SlabFixedBytes(const KvShape& s, uint32_t groups) {
  return kSlabHeaderBytes + 2ull * s.kv_heads * s.head_dim + groups * (kGroupHeaderBytes + 1);
}

// Component payload budget of one slab, in bits, so that the container is about
// raw / ratio bytes. Computed with the worst-case group count so the bound is shape-only.
uint64_t SlabBudgetBits(const CodecConfig& cfg, const KvShape& s) {
  const uint64_t target = s.Bytes() / std::max<uint8_t>(cfg.lowrank_ratio, 1);
  const uint64_t fixed = ContainerFixedBytes(s) + SlabCount(s) * SlabFixedBytes(s, s.kv_heads);
  if (target <= fixed) return 0;
  return (target - fixed) * 8 / SlabCount(s);
}

// Gaussian MSE of the best uniform quantizer with 2^b levels, relative to the variance
// (b = 0: the component is dropped). Drives the allocation only; the encoder then
// searches the step on the real coefficients.
double RelativeDistortion(int b) {
  static constexpr double kTable[] = {1.0, 0.3634, 0.1175, 0.03744, 0.01154, 0.003490, 0.001035};
  if (b < 7) return kTable[b];
  return kTable[6] * std::ldexp(1.0, -2 * (b - 6));
}

// ---------- little-endian byte writer / bounds-checked reader ----------

class Writer {
 public:
  explicit Writer(uint8_t* p) : p_(p) {}
  void U8(uint8_t v) { *p_++ = v; }
  void U16(uint16_t v) { std::memcpy(p_, &v, 2), p_ += 2; }
  void U32(uint32_t v) { std::memcpy(p_, &v, 4), p_ += 4; }
  void F32(float v) { std::memcpy(p_, &v, 4), p_ += 4; }
  uint8_t* Take(size_t n) {
    uint8_t* r = p_;
    p_ += n;
    return r;
  }
  uint8_t* pos() const { return p_; }

 private:
  uint8_t* p_;
};

class Reader {
 public:
  Reader(const uint8_t* p, uint64_t n) : p_(p), left_(n) {}
  bool Has(uint64_t n) const { return n <= left_; }
  uint64_t left() const { return left_; }
  // Callers check Has() first.
  const uint8_t* Take(uint64_t n) {
    const uint8_t* r = p_;
    p_ += n;
    left_ -= n;
    return r;
  }
  uint16_t U16() {
    uint16_t v;
    std::memcpy(&v, Take(2), 2);
    return v;
  }

 private:
  const uint8_t* p_;
  uint64_t left_;
};

// LSB-first bit stream (bit k of the stream is bit k%8 of byte k/8).
class BitWriter {
 public:
  explicit BitWriter(uint8_t* dst) : dst_(dst) {}
  void Put(uint32_t code, int bits) {
    acc_ |= uint64_t{code} << fill_;
    fill_ += bits;
    while (fill_ >= 8) {
      *dst_++ = static_cast<uint8_t>(acc_);
      acc_ >>= 8;
      fill_ -= 8;
    }
  }
  void Flush() {
    if (fill_ > 0) *dst_++ = static_cast<uint8_t>(acc_);
    acc_ = 0;
    fill_ = 0;
  }

 private:
  uint8_t* dst_;
  uint64_t acc_ = 0;
  int fill_ = 0;
};

class BitReader {
 public:
  BitReader(const uint8_t* src, uint64_t bytes) : src_(src), end_(src + bytes) {}
  // The caller has checked that the stream holds every bit it asks for.
  uint32_t Get(int bits) {
    while (fill_ < bits) {
      acc_ |= uint64_t{src_ < end_ ? *src_ : uint8_t{0}} << fill_;
      ++src_;
      fill_ += 8;
    }
    const uint32_t v = static_cast<uint32_t>(acc_ & ((uint64_t{1} << bits) - 1));
    acc_ >>= bits;
    fill_ -= bits;
    return v;
  }

 private:
  const uint8_t* src_;
  const uint8_t* end_;
  uint64_t acc_ = 0;
  int fill_ = 0;
};

// ---------- encoder analysis ----------

// One PCA group: `heads` consecutive heads sharing a basis; rows are (token, head).
struct GroupPlan {
  std::vector<double> energy;   // eigenvalues of the scatter matrix, descending
  std::vector<double> vectors;  // eigenvectors of the leading components, row i = component i
  std::vector<uint8_t> bits;    // allocated bits per component (0 = dropped)
};

struct SlabPlan {
  uint32_t heads_per_group = 1;
  std::vector<GroupPlan> groups;
  double distortion = 0;  // expected squared error (model)
  std::vector<SymmetricEigenSolver> solvers;  // per group
};

// Greedy bit allocation over all components of a slab: repeatedly takes the step with
// the largest modelled error reduction per bit that still fits. A dropped component's
// first step also pays for its basis row, step and width byte, and may jump to 1..4 bits.
void AllocateBits(const KvShape& s, uint64_t budget_bits, SlabPlan& plan) {
  const uint64_t rows = uint64_t{s.tokens} * plan.heads_per_group;
  const uint64_t activation_bits = (kPerComponentBytes + 2ull * s.head_dim) * 8;
  struct Step {
    double gain_per_bit;
    uint32_t group, comp;
    uint8_t to_bits;
    uint64_t cost;
  };
  auto better = [](const Step& a, const Step& b) {  // priority order, deterministic ties
    if (a.gain_per_bit != b.gain_per_bit) return a.gain_per_bit < b.gain_per_bit;
    if (a.group != b.group) return a.group > b.group;
    return a.comp > b.comp;
  };
  std::priority_queue<Step, std::vector<Step>, decltype(better)> queue(better);
  auto next_step = [&](uint32_t g, uint32_t c) -> bool {
    const double e = plan.groups[g].energy[c];
    const int b = plan.groups[g].bits[c];
    if (!(e > 0) || b >= kMaxBits) return false;
    Step st{0, g, c, 0, 0};
    if (b == 0) {
      for (int to = 1; to <= 4; ++to) {
        const uint64_t cost = activation_bits + rows * to;
        const double gpb = e * (1.0 - RelativeDistortion(to)) / double(cost);
        if (gpb > st.gain_per_bit) st = {gpb, g, c, uint8_t(to), cost};
      }
    } else {
      st = {e * (RelativeDistortion(b) - RelativeDistortion(b + 1)) / double(rows), g, c,
            uint8_t(b + 1), rows};
    }
    queue.push(st);
    return true;
  };
  for (uint32_t g = 0; g < plan.groups.size(); ++g) {
    auto& gp = plan.groups[g];
    gp.bits.assign(gp.energy.size(), 0);
    for (uint32_t c = 0; c < gp.energy.size(); ++c) {
      if (!next_step(g, c)) break;  // energies descend: the rest are zero too
    }
  }
  uint64_t left = budget_bits;
  while (!queue.empty()) {
    const Step st = queue.top();
    queue.pop();
    if (st.cost > left) continue;  // never fits later either: budget only shrinks
    left -= st.cost;
    plan.groups[st.group].bits[st.comp] = st.to_bits;
    next_step(st.group, st.comp);
  }
  plan.distortion = 0;
  for (const auto& gp : plan.groups) {
    for (size_t c = 0; c < gp.energy.size(); ++c) {
      plan.distortion += std::max(gp.energy[c], 0.0) * RelativeDistortion(gp.bits[c]);
    }
  }
}

// Loads one slab ([tokens][heads][head_dim]) as floats; rejects values lowrank cannot carry.
absl::Status LoadSlab(const KvShape& s, ConstByteSpan raw, uint64_t slab, std::vector<float>& x) {
  const uint64_t n = s.SlabElements();
  x.resize(n);
  const uint64_t base = slab * n;
  for (uint64_t i = 0; i < n; ++i) {
    const float v = LoadAsFloat(raw.data(), s.dtype, base + i);
    if (!std::isfinite(v) || std::fabs(v) > kFp16Max) {
      return absl::InvalidArgumentError(
          absl::StrCat("lowrank cannot encode element ", base + i, " (", v,
                       "): values must be finite and within the fp16 range"));
    }
    x[i] = v;
  }
  return absl::OkStatus();
}

// Rounds through fp16, as stored.
inline float Half(float v) { return Fp16ToFloat(FloatToFp16(v)); }

// sc += lower triangle of C^T C for the T x D rows C; float partial sums over 64 rows
// (vectorised axpys), double totals. acc is D*D scratch.
AC_ALWAYS_INLINE void AccumulateScatterBody(const float* c, uint32_t T, uint32_t D, float* acc,
                                            double* sc) {
  std::fill(acc, acc + size_t(D) * D, 0.f);
  for (uint32_t t = 0; t < T; ++t) {
    const float* row = c + size_t(t) * D;
    for (uint32_t i = 0; i < D; ++i) {
      const float ci = row[i];
      float* a = acc + size_t(i) * D;
      for (uint32_t j = 0; j <= i; ++j) a[j] += ci * row[j];
    }
    if ((t & 63) == 63 || t + 1 == T) {
      for (size_t k = 0; k < size_t(D) * D; ++k) sc[k] += acc[k];
      std::fill(acc, acc + size_t(D) * D, 0.f);
    }
  }
}
AC_DISPATCH(void, AccumulateScatter,
            (const float* c, uint32_t T, uint32_t D, float* acc, double* sc),
            AccumulateScatterBody, (c, T, D, acc, sc))

// out[r] += sum_d b[d] * cols[d][r] for r < rows, as axpys over rows.
AC_ALWAYS_INLINE void ProjectBody(const float* b, const float* cols, uint32_t D, uint64_t rows,
                                  float* out) {
  for (uint32_t d = 0; d < D; ++d) {
    const float bd = b[d];
    const float* col = cols + d * rows;
    for (uint64_t r = 0; r < rows; ++r) out[r] += bd * col[r];
  }
}
AC_DISPATCH(void, Project, (const float* b, const float* cols, uint32_t D, uint64_t rows, float* out),
            ProjectBody, (b, cols, D, rows, out))

// y += sum_i coef[i] * basis[i] (k rows of D), in component order.
AC_ALWAYS_INLINE void ReconstructBody(const float* coef, const float* basis, uint32_t k, uint32_t D,
                                      float* y) {
  for (uint32_t i = 0; i < k; ++i) {
    const float c = coef[i];
    const float* bv = basis + size_t(i) * D;
    for (uint32_t d = 0; d < D; ++d) y[d] += c * bv[d];
  }
}
AC_DISPATCH(void, Reconstruct, (const float* coef, const float* basis, uint32_t k, uint32_t D, float* y),
            ReconstructBody, (coef, basis, k, D, y))

// Per-head means (fp16-rounded, as the decoder sees them) and scatter matrices of the
// centred data, in double.
void HeadStatistics(const KvShape& s, const std::vector<float>& x, std::vector<float>& means,
                    std::vector<std::vector<double>>& scatter) {
  const uint32_t T = s.tokens, H = s.kv_heads, D = s.head_dim;
  means.assign(size_t(H) * D, 0.f);
  scatter.assign(H, std::vector<double>(size_t(D) * D, 0.0));
  std::vector<double> sum(D);
  std::vector<float> centred(size_t(T) * D), acc(size_t(D) * D);
  for (uint32_t h = 0; h < H; ++h) {
    std::fill(sum.begin(), sum.end(), 0.0);
    for (uint32_t t = 0; t < T; ++t) {
      const float* row = &x[(size_t(t) * H + h) * D];
      for (uint32_t d = 0; d < D; ++d) sum[d] += row[d];
    }
    float* m = &means[size_t(h) * D];
    for (uint32_t d = 0; d < D; ++d) m[d] = Half(float(sum[d] / T));
    for (uint32_t t = 0; t < T; ++t) {
      const float* row = &x[(size_t(t) * H + h) * D];
      for (uint32_t d = 0; d < D; ++d) centred[size_t(t) * D + d] = row[d] - m[d];
    }
    AccumulateScatter(centred.data(), T, D, acc.data(), scatter[h].data());
  }
}

// Plans one grouping from eigenvalues only (eigenvectors come later, for the winner).
absl::StatusOr<SlabPlan> PlanSlab(const KvShape& s, uint64_t budget_bits, uint32_t heads_per_group,
                                  const std::vector<std::vector<double>>& scatter) {
  const uint32_t D = s.head_dim;
  SlabPlan plan;
  plan.heads_per_group = heads_per_group;
  plan.groups.resize(s.kv_heads / heads_per_group);
  plan.solvers.resize(plan.groups.size());
  std::vector<double> a(size_t(D) * D);
  for (uint32_t g = 0; g < plan.groups.size(); ++g) {
    std::fill(a.begin(), a.end(), 0.0);
    for (uint32_t h = g * heads_per_group; h < (g + 1) * heads_per_group; ++h) {
      for (size_t k = 0; k < a.size(); ++k) a[k] += scatter[h][k];
    }
    if (auto st = plan.solvers[g].Compute(int(D), a); !st.ok()) return st;
    const auto w = plan.solvers[g].eigenvalues();
    plan.groups[g].energy.assign(w.begin(), w.end());
  }
  AllocateBits(s, budget_bits, plan);
  return plan;
}

// Fills in the eigenvectors of the components that received bits.
void ComputeVectors(const KvShape& s, SlabPlan& plan) {
  for (uint32_t g = 0; g < plan.groups.size(); ++g) {
    GroupPlan& gp = plan.groups[g];
    int count = 0;
    for (size_t c = 0; c < gp.bits.size(); ++c) {
      if (gp.bits[c] > 0) count = int(c) + 1;
    }
    gp.vectors.assign(size_t(count) * s.head_dim, 0.0);
    plan.solvers[g].Eigenvectors(count, gp.vectors);
  }
}

// Code of `v` for a symmetric mid-rise quantizer with `top` + 1 levels (round half up).
inline uint32_t QuantizeCode(float v, float step, float top) {
  return uint32_t(std::clamp(v / step + 0.5f * top, 0.f, top) + 0.5f);
}

// Chooses the step of a symmetric mid-rise quantizer with 2^bits levels that minimises
// the squared error on `c` (deterministic search over clipping points).
float ChooseStep(const std::vector<float>& c, int bits) {
  float amax = 0;
  for (float v : c) amax = std::max(amax, std::fabs(v));
  if (!(amax > 0)) return 1.0f;
  const int levels = 1 << bits;
  const float top = float(levels - 1), half = 0.5f * top;
  float best_step = 2 * amax / float(levels), best_err = INFINITY;
  for (int i = 0; i <= 16; ++i) {
    const float step = (2 * amax / float(levels)) * (1.0f - 0.05f * float(i));
    double err = 0;
    for (float v : c) {
      const float d = (float(QuantizeCode(v, step, top)) - half) * step - v;
      err += double(d) * d;
    }
    if (err < best_err) best_err = float(err), best_step = step;
  }
  return best_step;
}

uint64_t GroupPayloadBytes(uint64_t rows, uint32_t rank, uint64_t row_bits, uint32_t head_dim) {
  return kGroupHeaderBytes + rank * (kPerComponentBytes + 2ull * head_dim) + (rows * row_bits + 7) / 8;
}

// Writes one slab record; returns its length.
uint64_t WriteSlab(const KvShape& s, const std::vector<float>& x, const std::vector<float>& means,
                   const SlabPlan& plan, uint8_t* dst) {
  const uint32_t T = s.tokens, H = s.kv_heads, D = s.head_dim, G = plan.heads_per_group;
  Writer w(dst);
  w.U16(uint16_t(G));
  w.U16(0);
  for (uint32_t i = 0; i < H * D; ++i) w.U16(FloatToFp16(means[i]));
  std::vector<float> basis, centred_t, coef_t, column;
  std::vector<int> comps;
  for (uint32_t g = 0; g < plan.groups.size(); ++g) {
    const GroupPlan& gp = plan.groups[g];
    comps.clear();
    for (uint32_t c = 0; c < gp.bits.size(); ++c) {
      if (gp.bits[c] > 0) comps.push_back(int(c));
    }
    const uint32_t k = uint32_t(comps.size());
    const uint64_t rows = uint64_t{T} * G;
    // Basis rows as the decoder will see them (fp16).
    basis.resize(size_t(k) * D);
    for (uint32_t i = 0; i < k; ++i) {
      for (uint32_t d = 0; d < D; ++d) basis[size_t(i) * D + d] = Half(float(gp.vectors[size_t(comps[i]) * D + d]));
    }
    // Coefficients of the centred rows on that basis, computed as coef_t[i][r] (rows
    // contiguous) so the inner loops are axpys over rows.
    centred_t.assign(size_t(D) * rows, 0.f);
    for (uint32_t t = 0; t < T; ++t) {
      for (uint32_t j = 0; j < G; ++j) {
        const uint32_t h = g * G + j;
        const float* row = &x[(size_t(t) * H + h) * D];
        const float* m = &means[size_t(h) * D];
        const uint64_t r = uint64_t{t} * G + j;
        for (uint32_t d = 0; d < D; ++d) centred_t[d * rows + r] = row[d] - m[d];
      }
    }
    coef_t.assign(size_t(k) * rows, 0.f);
    for (uint32_t i = 0; i < k; ++i) Project(&basis[size_t(i) * D], centred_t.data(), D, rows, &coef_t[i * rows]);
    std::vector<float> steps(k);
    for (uint32_t i = 0; i < k; ++i) {
      column.assign(coef_t.begin() + i * rows, coef_t.begin() + (i + 1) * rows);
      steps[i] = ChooseStep(column, gp.bits[comps[i]]);
    }
    w.U16(uint16_t(k));
    w.U16(0);
    for (uint32_t i = 0; i < k; ++i) w.U8(gp.bits[comps[i]]);
    for (uint32_t i = 0; i < k; ++i) w.F32(steps[i]);
    for (uint32_t i = 0; i < k * D; ++i) w.U16(FloatToFp16(basis[i]));
    uint64_t row_bits = 0;
    for (uint32_t i = 0; i < k; ++i) row_bits += gp.bits[comps[i]];
    uint8_t* codes = w.Take((rows * row_bits + 7) / 8);
    BitWriter bw(codes);
    for (uint64_t r = 0; r < rows; ++r) {
      for (uint32_t i = 0; i < k; ++i) {
        const int b = gp.bits[comps[i]];
        bw.Put(QuantizeCode(coef_t[i * rows + r], steps[i], float((1 << b) - 1)), b);
      }
    }
    bw.Flush();
  }
  return uint64_t(w.pos() - dst);
}

uint64_t PlannedSlabBytes(const KvShape& s, const SlabPlan& plan) {
  uint64_t n = kSlabHeaderBytes + 2ull * s.kv_heads * s.head_dim;
  for (const auto& gp : plan.groups) {
    uint32_t k = 0;
    uint64_t row_bits = 0;
    for (uint8_t b : gp.bits) k += b > 0, row_bits += b;
    n += GroupPayloadBytes(uint64_t{s.tokens} * plan.heads_per_group, k, row_bits, s.head_dim);
  }
  return n;
}

absl::Status CheckConfig(const CodecConfig& cfg) {
  if (cfg.family != CodecId::kLowrank) return absl::InvalidArgumentError("not a lowrank config");
  if (cfg.lowrank_ratio < kLowrankMinRatio || cfg.lowrank_ratio > kLowrankMaxRatio) {
    return absl::InvalidArgumentError(absl::StrCat("lowrank ratio ", cfg.lowrank_ratio,
                                                   " outside [", kLowrankMinRatio, ", ",
                                                   kLowrankMaxRatio, "]"));
  }
  return absl::OkStatus();
}

}  // namespace

uint64_t LowrankMaxBytes(const CodecConfig& cfg, const KvShape& shape) {
  // The allocation never spends more than the slab budget on components; the fixed parts
  // are bounded with the largest group count (one group per head).
  return ContainerFixedBytes(shape) +
         SlabCount(shape) * (SlabFixedBytes(shape, shape.kv_heads) + SlabBudgetBits(cfg, shape) / 8);
}

absl::StatusOr<uint64_t> EncodeLowrank(const CodecConfig& cfg, const KvShape& shape,
                                       ConstByteSpan raw, ByteSpan out) {
  if (auto st = CheckConfig(cfg); !st.ok()) return st;
  if (auto st = ValidateShape(shape); !st.ok()) return st;
  if (raw.size() != shape.Bytes()) {
    return absl::InvalidArgumentError(absl::StrCat("tensor is ", raw.size(), " bytes; shape ",
                                                   shape.DebugString(), " needs ", shape.Bytes()));
  }
  if (shape.head_dim > kMaxEigenDim) {
    return absl::InvalidArgumentError("lowrank supports head_dim up to 4096");
  }
  const uint64_t slabs = SlabCount(shape);
  const uint64_t budget = SlabBudgetBits(cfg, shape);
  // Candidate groupings: one basis per head, or one shared by all heads of the slab.
  std::vector<uint32_t> groupings = {1};
  if (shape.kv_heads > 1) groupings.push_back(shape.kv_heads);

  std::vector<std::vector<uint8_t>> records(slabs);
  std::vector<float> x, means;
  std::vector<std::vector<double>> scatter;
  for (uint64_t slab = 0; slab < slabs; ++slab) {
    if (auto st = LoadSlab(shape, raw, slab, x); !st.ok()) return st;
    HeadStatistics(shape, x, means, scatter);
    SlabPlan best;
    bool have = false;
    for (uint32_t g : groupings) {
      auto plan = PlanSlab(shape, budget, g, scatter);
      if (!plan.ok()) return plan.status();
      if (!have || plan->distortion < best.distortion) best = std::move(*plan), have = true;
    }
    ComputeVectors(shape, best);
    records[slab].resize(PlannedSlabBytes(shape, best));
    const uint64_t written = WriteSlab(shape, x, means, best, records[slab].data());
    if (written != records[slab].size()) return absl::InternalError("lowrank slab size mismatch");
  }
  uint64_t data_bytes = 0;
  for (const auto& r : records) data_bytes += r.size();
  if (data_bytes > UINT32_MAX) return absl::InvalidArgumentError("lowrank payload too large");

  ContainerWriter cw(CodecId::kLowrank, shape);
  const uint8_t params[2] = {cfg.lowrank_ratio, kLayoutRevision};
  cw.SetParams(params);
  const size_t index_section = cw.AddSection(kSectionIndex, slabs * 8);
  const size_t data_section = cw.AddSection(kSectionData, data_bytes);
  if (cw.TotalBytes() > LowrankMaxBytes(cfg, shape)) {
    return absl::InternalError("lowrank output exceeds its bound");
  }
  if (auto st = cw.Layout(out); !st.ok()) return st;
  Writer index(reinterpret_cast<uint8_t*>(cw.SectionData(index_section).data()));
  uint8_t* data = reinterpret_cast<uint8_t*>(cw.SectionData(data_section).data());
  uint64_t offset = 0;
  for (const auto& r : records) {
    index.U32(uint32_t(offset));
    index.U32(uint32_t(r.size()));
    std::memcpy(data + offset, r.data(), r.size());
    offset += r.size();
  }
  cw.Seal();
  return cw.TotalBytes();
}

namespace {

struct GroupView {
  uint32_t rank = 0;
  const uint8_t* bits = nullptr;   // [rank]
  const uint8_t* steps = nullptr;  // f32 [rank]
  const uint8_t* basis = nullptr;  // fp16 [rank][head_dim]
  const uint8_t* codes = nullptr;
  uint64_t code_bytes = 0;
};
struct SlabView {
  uint32_t heads_per_group = 0;
  const uint8_t* means = nullptr;  // fp16 [heads][head_dim]
  std::vector<GroupView> groups;
};

inline float LoadHalf(const uint8_t* p, size_t i) {
  uint16_t h;
  std::memcpy(&h, p + 2 * i, 2);
  return Fp16ToFloat(h);
}

// Validates one slab record completely (sizes, widths, finite values) without decoding.
absl::StatusOr<SlabView> ParseSlab(const KvShape& s, const uint8_t* rec, uint64_t len) {
  const uint32_t T = s.tokens, H = s.kv_heads, D = s.head_dim;
  SlabView v;
  Reader r(rec, len);
  if (!r.Has(kSlabHeaderBytes)) return Corrupt("slab header truncated");
  v.heads_per_group = r.U16();
  const uint32_t G = v.heads_per_group;
  if (r.U16() != 0) return Corrupt("slab reserved field");
  if (G == 0 || G > H || H % G != 0) return Corrupt(absl::StrCat("heads_per_group ", G));
  if (!r.Has(2ull * H * D)) return Corrupt("means truncated");
  v.means = r.Take(2ull * H * D);
  for (size_t i = 0; i < size_t(H) * D; ++i) {
    if (!std::isfinite(LoadHalf(v.means, i))) return Corrupt("non-finite mean");
  }
  const uint64_t rows = uint64_t{T} * G;
  v.groups.resize(H / G);
  for (GroupView& gv : v.groups) {
    if (!r.Has(kGroupHeaderBytes)) return Corrupt("group header truncated");
    gv.rank = r.U16();
    const uint32_t k = gv.rank;
    if (r.U16() != 0) return Corrupt("group reserved field");
    if (k > D) return Corrupt(absl::StrCat("rank ", k, " > head_dim ", D));
    if (!r.Has(k * (kPerComponentBytes + 2ull * D))) return Corrupt("components truncated");
    gv.bits = r.Take(k);
    gv.steps = r.Take(4ull * k);
    gv.basis = r.Take(2ull * k * D);
    uint64_t row_bits = 0;
    for (uint32_t i = 0; i < k; ++i) {
      if (gv.bits[i] < 1 || gv.bits[i] > kMaxBits) {
        return Corrupt(absl::StrCat("bit width ", int(gv.bits[i])));
      }
      row_bits += gv.bits[i];
      float st;
      std::memcpy(&st, gv.steps + 4 * i, 4);
      if (!std::isfinite(st) || !(st > 0)) return Corrupt("bad quantizer step");
    }
    for (size_t i = 0; i < size_t(k) * D; ++i) {
      if (!std::isfinite(LoadHalf(gv.basis, i))) return Corrupt("non-finite basis");
    }
    gv.code_bytes = (rows * row_bits + 7) / 8;
    if (!r.Has(gv.code_bytes)) return Corrupt("codes truncated");
    gv.codes = r.Take(gv.code_bytes);
  }
  if (r.left() != 0) return Corrupt("trailing bytes in slab record");
  return v;
}

// Reconstructs one validated slab into `out` (the whole tensor).
void DecodeSlab(const KvShape& s, uint64_t slab, const SlabView& v, ByteSpan out) {
  const uint32_t T = s.tokens, H = s.kv_heads, D = s.head_dim, G = v.heads_per_group;
  const uint64_t slab_base = slab * s.SlabElements();
  const float out_max = s.dtype == DType::kFP16 ? kFp16Max : INFINITY;
  std::vector<float> means(size_t(H) * D), steps, basis, coef, y(D);
  for (size_t i = 0; i < means.size(); ++i) means[i] = LoadHalf(v.means, i);
  for (uint32_t g = 0; g < v.groups.size(); ++g) {
    const GroupView& gv = v.groups[g];
    const uint32_t k = gv.rank;
    steps.resize(k);
    if (k > 0) std::memcpy(steps.data(), gv.steps, 4ull * k);
    basis.resize(size_t(k) * D);
    for (size_t i = 0; i < basis.size(); ++i) basis[i] = LoadHalf(gv.basis, i);
    BitReader br(gv.codes, gv.code_bytes);
    coef.resize(k);
    for (uint32_t t = 0; t < T; ++t) {
      for (uint32_t j = 0; j < G; ++j) {
        for (uint32_t i = 0; i < k; ++i) {
          const int b = gv.bits[i];
          coef[i] = (float(br.Get(b)) - 0.5f * float((1u << b) - 1)) * steps[i];
        }
        const uint32_t h = g * G + j;
        std::memcpy(y.data(), &means[size_t(h) * D], 4ull * D);
        Reconstruct(coef.data(), basis.data(), k, D, y.data());
        const uint64_t base = slab_base + (uint64_t{t} * H + h) * D;
        for (uint32_t d = 0; d < D; ++d) {
          StoreFromFloat(out.data(), s.dtype, base + d, std::clamp(y[d], -out_max, out_max));
        }
      }
    }
  }
}

}  // namespace

absl::Status DecodeLowrank(const ContainerView& view, ByteSpan out) {
  const KvShape& s = view.shape;
  if (view.codec != CodecId::kLowrank) return Corrupt("not a lowrank container");
  if (auto st = ValidateShape(s); !st.ok()) return Corrupt(st.message());
  if (out.size() != s.Bytes()) {
    return absl::InvalidArgumentError(
        absl::StrCat("output buffer is ", out.size(), " bytes; tensor needs ", s.Bytes()));
  }
  const uint8_t ratio = view.params[0];
  if (ratio < kLowrankMinRatio || ratio > kLowrankMaxRatio) return Corrupt("ratio parameter");
  if (view.params[1] != kLayoutRevision) return Corrupt("layout revision");
  for (size_t i = 2; i < kContainerParamBytes; ++i) {
    if (view.params[i] != 0) return Corrupt("reserved parameter bytes");
  }
  if (view.sections.size() != 2) return Corrupt("expected 2 sections");
  auto index = view.Find(kSectionIndex);
  if (!index.ok()) return index.status();
  auto data = view.Find(kSectionData);
  if (!data.ok()) return data.status();
  const uint64_t slabs = SlabCount(s);
  if (index->size() != slabs * 8) return Corrupt("index size");
  const auto* idx = reinterpret_cast<const uint8_t*>(index->data());
  const auto* dat = reinterpret_cast<const uint8_t*>(data->data());
  // Records are contiguous and cover the data section exactly.
  uint64_t expect = 0;
  for (uint64_t i = 0; i < slabs; ++i) {
    uint32_t off, len;
    std::memcpy(&off, idx + 8 * i, 4);
    std::memcpy(&len, idx + 8 * i + 4, 4);
    if (off != expect || len > data->size() - off) return Corrupt("slab index");
    expect = uint64_t{off} + len;
  }
  if (expect != data->size()) return Corrupt("slab index does not cover the data");
  // Validate every record before writing a byte of `out`.
  std::vector<SlabView> views(slabs);
  for (uint64_t i = 0; i < slabs; ++i) {
    uint32_t off, len;
    std::memcpy(&off, idx + 8 * i, 4);
    std::memcpy(&len, idx + 8 * i + 4, 4);
    auto v = ParseSlab(s, dat + off, len);
    if (!v.ok()) return absl::DataLossError(absl::StrCat(std::string(v.status().message()), " (slab ", i, ")"));
    views[i] = std::move(*v);
  }
  for (uint64_t i = 0; i < slabs; ++i) DecodeSlab(s, i, views[i], out);
  return absl::OkStatus();
}

}  // namespace adaptcache
