#include "kernels/quality_proxy.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/half.h"

namespace adaptcache {
namespace {

// Rows [tokens][head_dim] of one (K or V, layer, head) as floats.
void LoadHeadRows(const KvShape& s, const void* data, uint32_t kv, uint32_t layer, uint32_t head,
                  std::vector<float>& out) {
  const uint32_t T = s.tokens, H = s.kv_heads, D = s.head_dim;
  out.resize(size_t(T) * D);
  const uint64_t slab = (uint64_t{kv} * s.layers + layer) * s.SlabElements();
  for (uint32_t t = 0; t < T; ++t) {
    const uint64_t base = slab + (uint64_t{t} * H + head) * D;
    for (uint32_t d = 0; d < D; ++d) out[size_t(t) * D + d] = LoadAsFloat(data, s.dtype, base + d);
  }
}

// o = softmax(K q) V over tokens with kept[t] != 0 (q already scaled by 1/sqrt(d)).
// Writes the logits of every token to `logits` (also dropped ones, for the logit error).
void Attend(const float* q, const std::vector<float>& k, const std::vector<float>& v, uint32_t T,
            uint32_t D, std::span<const uint8_t> kept, std::vector<double>& logits, float* o) {
  logits.resize(T);
  double mx = -INFINITY;
  for (uint32_t t = 0; t < T; ++t) {
    double s = 0;
    const float* kr = &k[size_t(t) * D];
    for (uint32_t d = 0; d < D; ++d) s += double(q[d]) * kr[d];
    logits[t] = s;
    if (kept.empty() || kept[t]) mx = std::max(mx, s);
  }
  std::vector<double> acc(D, 0.0);
  double z = 0;
  for (uint32_t t = 0; t < T; ++t) {
    if (!kept.empty() && !kept[t]) continue;
    const double w = std::exp(logits[t] - mx);
    z += w;
    const float* vr = &v[size_t(t) * D];
    for (uint32_t d = 0; d < D; ++d) acc[d] += w * vr[d];
  }
  for (uint32_t d = 0; d < D; ++d) o[d] = z > 0 ? float(acc[d] / z) : 0.f;
}

// Top principal direction of the centred rows x (T x D) orthogonal to `avoid` (unit or
// empty), by a fixed number of power iterations from a deterministic start.
std::vector<double> PrincipalDirection(const std::vector<float>& x, const std::vector<double>& mean,
                                       uint32_t T, uint32_t D, const std::vector<double>& avoid) {
  std::vector<double> u(D), next(D), proj(T);
  uint32_t seed = 12345;
  for (uint32_t d = 0; d < D; ++d) {
    seed = seed * 1664525u + 1013904223u;
    u[d] = 0.5 + double(seed >> 8) / double(1u << 24);
  }
  auto orthonormalise = [&](std::vector<double>& w) {
    if (!avoid.empty()) {
      double dot = 0;
      for (uint32_t d = 0; d < D; ++d) dot += w[d] * avoid[d];
      for (uint32_t d = 0; d < D; ++d) w[d] -= dot * avoid[d];
    }
    double n = 0;
    for (double v : w) n += v * v;
    n = std::sqrt(n);
    if (!(n > 0)) return false;
    for (double& v : w) v /= n;
    return true;
  };
  if (!orthonormalise(u)) return {};
  for (int it = 0; it < 12; ++it) {
    for (uint32_t t = 0; t < T; ++t) {
      double s = 0;
      for (uint32_t d = 0; d < D; ++d) s += (x[size_t(t) * D + d] - mean[d]) * u[d];
      proj[t] = s;
    }
    std::fill(next.begin(), next.end(), 0.0);
    for (uint32_t t = 0; t < T; ++t) {
      for (uint32_t d = 0; d < D; ++d) next[d] += proj[t] * (x[size_t(t) * D + d] - mean[d]);
    }
    if (!orthonormalise(next)) return {};
    u.swap(next);
  }
  return u;
}

// Scales unit direction u so the logits u.k_t * s have standard deviation `target` over
// tokens (zero when the keys do not vary along u: uniform attention).
void ScaledQuery(const std::vector<double>& u, double sign, const std::vector<float>& k, uint32_t T,
                 uint32_t D, double target, float* q) {
  if (u.empty()) {
    std::fill(q, q + D, 0.f);
    return;
  }
  double sum = 0, sum2 = 0;
  for (uint32_t t = 0; t < T; ++t) {
    double s = 0;
    for (uint32_t d = 0; d < D; ++d) s += u[d] * k[size_t(t) * D + d];
    sum += s;
    sum2 += s * s;
  }
  const double mean = sum / T;
  const double sd = std::sqrt(std::max(0.0, sum2 / T - mean * mean));
  const double scale = sd > 1e-12 ? sign * target / sd : 0.0;
  for (uint32_t d = 0; d < D; ++d) q[d] = float(u[d] * scale);
}

}  // namespace

absl::StatusOr<QualityReference> QualityReference::Build(const KvShape& shape, ConstByteSpan raw,
                                                         const SideData& side) {
  if (auto st = ValidateShape(shape); !st.ok()) return st;
  if (raw.size() != shape.Bytes()) {
    return absl::InvalidArgumentError(absl::StrCat("tensor is ", raw.size(), " bytes; shape ",
                                                   shape.DebugString(), " needs ", shape.Bytes()));
  }
  const uint32_t L = shape.layers, T = shape.tokens, H = shape.kv_heads, D = shape.head_dim;
  QualityReference ref;
  ref.shape_ = shape;
  ref.raw_ = raw;
  if (!side.token_importance.empty()) {
    if (side.token_importance.size() != T) {
      return absl::InvalidArgumentError("token_importance must have one value per token");
    }
    ref.importance_.assign(side.token_importance.begin(), side.token_importance.end());
  }
  if (side.probe_count > 0) {
    if (side.probe_count > 4096) return absl::InvalidArgumentError("too many probe queries");
    const uint64_t want = uint64_t{L} * side.probe_count * H * D;
    if (side.probe_queries.size() != want) {
      return absl::InvalidArgumentError(absl::StrCat("probe_queries has ", side.probe_queries.size(),
                                                     " floats; [layers][probes][kv_heads][head_dim] needs ",
                                                     want));
    }
    for (float f : side.probe_queries) {
      if (!std::isfinite(f)) return absl::InvalidArgumentError("non-finite probe query");
    }
    ref.probes_.assign(side.probe_queries.begin(), side.probe_queries.end());
    ref.probe_count_ = side.probe_count;
    ref.used_probes_ = true;
  } else if (!side.probe_queries.empty()) {
    return absl::InvalidArgumentError("probe_queries given with probe_count 0");
  }
  const uint32_t P = ref.used_probes_ ? ref.probe_count_ : kPseudoQueriesPerHead;
  ref.queries_per_head_ = P;
  ref.queries_.assign(uint64_t{L} * H * P * D, 0.f);
  ref.outputs_.assign(ref.queries_.size(), 0.f);
  ref.output_floor_.assign(uint64_t{L} * H, 0.f);
  const double inv_sqrt_d = 1.0 / std::sqrt(double(D));
  std::vector<float> k, v;
  std::vector<double> mean(D), logits;
  for (uint32_t l = 0; l < L; ++l) {
    for (uint32_t h = 0; h < H; ++h) {
      LoadHeadRows(shape, raw.data(), 0, l, h, k);
      LoadHeadRows(shape, raw.data(), 1, l, h, v);
      for (float f : k) {
        if (!std::isfinite(f)) return absl::InvalidArgumentError("non-finite key");
      }
      for (float f : v) {
        if (!std::isfinite(f)) return absl::InvalidArgumentError("non-finite value");
      }
      float* q = &ref.queries_[((uint64_t{l} * H + h) * P) * D];
      if (ref.used_probes_) {
        for (uint32_t p = 0; p < P; ++p) {
          const float* src = &ref.probes_[((uint64_t{l} * P + p) * H + h) * D];
          for (uint32_t d = 0; d < D; ++d) q[size_t(p) * D + d] = float(src[d] * inv_sqrt_d);
        }
      } else {
        std::fill(mean.begin(), mean.end(), 0.0);
        for (uint32_t t = 0; t < T; ++t)
          for (uint32_t d = 0; d < D; ++d) mean[d] += k[size_t(t) * D + d];
        double mn = 0;
        for (double& m : mean) m /= T, mn += m * m;
        std::vector<double> dir0;
        if (mn > 0) {
          dir0 = mean;
          for (double& m : dir0) m /= std::sqrt(mn);
        }
        const auto dir1 = PrincipalDirection(k, mean, T, D, {});
        const auto dir2 = dir1.empty() ? dir1 : PrincipalDirection(k, mean, T, D, dir1);
        ScaledQuery(dir0, 1, k, T, D, kPseudoQueryLogitStd, q);
        ScaledQuery(dir1, 1, k, T, D, kPseudoQueryLogitStd, q + D);
        ScaledQuery(dir1, -1, k, T, D, kPseudoQueryLogitStd, q + 2 * D);
        ScaledQuery(dir2, 1, k, T, D, kPseudoQueryLogitStd, q + 3 * D);
        ScaledQuery(dir2, -1, k, T, D, kPseudoQueryLogitStd, q + 4 * D);
      }
      float* o = &ref.outputs_[((uint64_t{l} * H + h) * P) * D];
      for (uint32_t p = 0; p < P; ++p) Attend(q + size_t(p) * D, k, v, T, D, {}, logits, o + size_t(p) * D);
      double vv = 0;
      for (float f : v) vv += double(f) * f;
      ref.output_floor_[uint64_t{l} * H + h] = float(0.05 * std::sqrt(vv / T));
    }
  }
  return ref;
}

absl::StatusOr<QualityReport> QualityReference::Evaluate(ConstByteSpan decoded,
                                                         std::span<const uint8_t> kept) const {
  const KvShape& s = shape_;
  if (decoded.size() != s.Bytes()) {
    return absl::InvalidArgumentError(absl::StrCat("decoded tensor is ", decoded.size(),
                                                   " bytes; shape needs ", s.Bytes()));
  }
  if (!kept.empty() && kept.size() != s.tokens) {
    return absl::InvalidArgumentError("kept flags must have one entry per token");
  }
  const uint32_t L = s.layers, T = s.tokens, H = s.kv_heads, D = s.head_dim, P = queries_per_head_;
  QualityReport rep;
  rep.used_probes = used_probes_;
  rep.layers.resize(L);
  std::vector<float> k, v, k2, v2, o(D), o_kept(D);
  std::vector<double> logits, logits2, exact;
  double k_num = 0, k_den = 0, v_num = 0, v_den = 0;
  for (uint32_t l = 0; l < L; ++l) {
    LayerQuality& lq = rep.layers[l];
    double lk_num = 0, lk_den = 0, lv_num = 0, lv_den = 0, att = 0, logit_sq = 0, mass_lost = 0;
    uint64_t logit_n = 0;
    for (uint32_t h = 0; h < H; ++h) {
      LoadHeadRows(s, raw_.data(), 0, l, h, k);
      LoadHeadRows(s, raw_.data(), 1, l, h, v);
      LoadHeadRows(s, decoded.data(), 0, l, h, k2);
      LoadHeadRows(s, decoded.data(), 1, l, h, v2);
      for (size_t i = 0; i < k.size(); ++i) {
        const double dk = double(k[i]) - k2[i], dv = double(v[i]) - v2[i];
        lk_num += dk * dk, lk_den += double(k[i]) * k[i];
        lv_num += dv * dv, lv_den += double(v[i]) * v[i];
      }
      const float floor = output_floor_[uint64_t{l} * H + h];
      for (uint32_t p = 0; p < P; ++p) {
        const uint64_t qi = ((uint64_t{l} * H + h) * P + p) * D;
        const float* q = &queries_[qi];
        const float* ref_o = &outputs_[qi];
        // Exact logits and the attention mass of the tokens the codec dropped.
        exact.resize(T);
        double mx = -INFINITY;
        for (uint32_t t = 0; t < T; ++t) {
          double e = 0;
          for (uint32_t d = 0; d < D; ++d) e += double(q[d]) * k[size_t(t) * D + d];
          exact[t] = e;
          mx = std::max(mx, e);
        }
        double z = 0, z_lost = 0;
        for (uint32_t t = 0; t < T; ++t) {
          const double w = std::exp(exact[t] - mx);
          z += w;
          if (!kept.empty() && !kept[t]) z_lost += w;
        }
        const double lost = z_lost / z;
        // Reconstruction error of the attention output over the kept tokens.
        const float* target = ref_o;
        if (!kept.empty()) {
          Attend(q, k, v, T, D, kept, logits, o_kept.data());
          target = o_kept.data();
        }
        Attend(q, k2, v2, T, D, kept, logits2, o.data());
        double diff = 0, norm = 0;
        for (uint32_t d = 0; d < D; ++d) {
          diff += double(o[d] - target[d]) * (o[d] - target[d]);
          norm += double(target[d]) * target[d];
        }
        const double den = std::max(std::sqrt(norm), double(floor));
        att += lost + (den > 0 ? std::sqrt(diff) / den : (diff > 0 ? 1.0 : 0.0));
        mass_lost += lost;
        for (uint32_t t = 0; t < T; ++t) {
          if (!kept.empty() && !kept[t]) continue;
          logit_sq += (exact[t] - logits2[t]) * (exact[t] - logits2[t]);
          ++logit_n;
        }
      }
    }
    auto rel = [](double num, double den) { return den > 0 ? std::sqrt(num / den) : std::sqrt(num); };
    lq.k_rel_error = rel(lk_num, lk_den);
    lq.v_rel_error = rel(lv_num, lv_den);
    lq.attention_error = att / double(uint64_t{H} * P);
    lq.attention_mass_lost = mass_lost / double(uint64_t{H} * P);
    lq.logit_rms_error = logit_n ? std::sqrt(logit_sq / double(logit_n)) : 0.0;
    k_num += lk_num, k_den += lk_den, v_num += lv_num, v_den += lv_den;
    rep.proxy += lq.attention_error / L;
  }
  rep.k_rel_error = k_den > 0 ? std::sqrt(k_num / k_den) : std::sqrt(k_num);
  rep.v_rel_error = v_den > 0 ? std::sqrt(v_num / v_den) : std::sqrt(v_num);
  return rep;
}

absl::StatusOr<QualityReport> QualityReference::EvaluateConfig(const CodecConfig& cfg) const {
  SideData side;
  side.token_importance = importance_;
  side.probe_count = probe_count_;
  side.probe_queries = probes_;
  auto blob = EncodeToVector(cfg, shape_, raw_, side);
  if (!blob.ok()) return blob.status();
  std::vector<std::byte> decoded(shape_.Bytes());
  if (auto st = Decode(*blob, decoded); !st.ok()) return st;
  auto positions = DecodeKeptTokens(*blob);
  if (!positions.ok()) return positions.status();
  std::vector<uint8_t> kept;
  if (positions->size() != shape_.tokens) {
    kept.assign(shape_.tokens, 0);
    for (uint32_t t : *positions) {
      if (t >= shape_.tokens) return absl::InternalError("kept token position out of range");
      kept[t] = 1;
    }
  }
  return Evaluate(decoded, kept);
}

absl::StatusOr<QualityReport> EstimateQuality(const CodecConfig& cfg, const KvShape& shape,
                                              ConstByteSpan raw, const SideData& side) {
  auto ref = QualityReference::Build(shape, raw, side);
  if (!ref.ok()) return ref.status();
  return ref->EvaluateConfig(cfg);
}

}  // namespace adaptcache
