#include "kernels/quant.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/bitpack.h"
#include "kernels/dtype_rows.h"
#include "kernels/hadamard.h"
#include "kernels/quant_minmax.h"
#include "kernels/simd.h"

namespace adaptcache {
namespace {

absl::Status Corrupt(const std::string& what) {
  return absl::DataLossError(absl::StrCat("corrupt quant payload: ", what));
}

// Everything derived from params and shape.
struct Dims {
  uint32_t layers, tokens, heads, dim, width;  // width = heads * dim
  uint32_t sinks, qtokens, group, blocks, vgroup, vgroups;  // vgroups per head
  uint64_t krow, vrow;  // packed row bytes
  size_t esize, ssize;  // element and scale bytes
};

Dims DimsOf(const QuantParams& p, const KvShape& s) {
  Dims d{};
  d.layers = s.layers;
  d.tokens = s.tokens;
  d.heads = s.kv_heads;
  d.dim = s.head_dim;
  d.width = s.kv_heads * s.head_dim;
  d.sinks = std::min<uint32_t>(p.sinks, s.tokens);
  d.qtokens = s.tokens - d.sinks;
  d.group = p.group;
  d.blocks = (d.qtokens + p.group - 1) / p.group;
  d.vgroup = std::min<uint32_t>(p.group, s.head_dim);
  d.vgroups = (s.head_dim + d.vgroup - 1) / d.vgroup;
  d.krow = PackedBytes(d.width, p.k_bits);
  d.vrow = PackedBytes(d.width, p.v_bits);
  d.esize = DTypeSize(s.dtype);
  d.ssize = p.fp32_scales ? 4 : 2;
  return d;
}

// ---- scale rounding (encoder) ----

// Branch-free (vectorizable) directed rounding to fp16 via round-to-nearest and one step.
AC_ALWAYS_INLINE float RoundDownToFp16(float f) {
  const uint32_t h = FloatToFp16Bits(f);
  const uint32_t above = Fp16BitsToFloat(static_cast<uint16_t>(h)) > f;
  const uint32_t step = (h & 0x8000u) ? 1u : 0xffffffffu;  // away from / toward zero
  return Fp16BitsToFloat(static_cast<uint16_t>(h + (above ? step : 0u)));
}

AC_ALWAYS_INLINE float RoundUpToFp16(float f) {  // f >= 0
  const uint32_t h = FloatToFp16Bits(f);
  const uint32_t below = Fp16BitsToFloat(static_cast<uint16_t>(h)) < f;
  return Fp16BitsToFloat(static_cast<uint16_t>(h + below));
}

// (scale, min) for a group with range [mn, mx], as stored.
AC_ALWAYS_INLINE void GroupScale(float mn, float mx, float levels, bool fp16, float* s,
                                 float* m) {
  float mm = fp16 ? RoundDownToFp16(mn) : mn;
  float ss = (mx - mm) / levels;
  if (fp16) ss = RoundUpToFp16(ss);
  *m = mm + 0.0f;  // -0 -> +0, so every variant stores the same bits
  *s = ss;
}

AC_ALWAYS_INLINE float Inverse(float s) { return s >= 1e-30f ? 1.0f / s : 0.0f; }

AC_ALWAYS_INLINE uint8_t QuantizeOne(float x, float m, float inv, float levels) {
  float v = (x - m) * inv;
  v = v > 0.f ? v : 0.f;  // also maps NaN to 0
  v = v < levels ? v : levels;
  return static_cast<uint8_t>(static_cast<int32_t>(v + 0.5f));
}

// ---- hot loops ----

// Scales, mins and inverse scales for n groups with ranges [lo, hi].
AC_ALWAYS_INLINE void GroupScalesBody(const float* lo, const float* hi, size_t n, float levels,
                                      bool fp16, float* s, float* m, float* inv) {
  if (fp16) {
    for (size_t i = 0; i < n; ++i) GroupScale(lo[i], hi[i], levels, true, &s[i], &m[i]);
  } else {
    for (size_t i = 0; i < n; ++i) GroupScale(lo[i], hi[i], levels, false, &s[i], &m[i]);
  }
  for (size_t i = 0; i < n; ++i) inv[i] = Inverse(s[i]);
}

// Writes n scale-format values (exactly representable when fp16).
AC_ALWAYS_INLINE void StoreScalesBody(const float* v, size_t n, bool fp16, std::byte* dst) {
  if (fp16) {
    for (size_t i = 0; i < n; ++i) {
      const uint16_t h = FloatToFp16Bits(v[i]);
      std::memcpy(dst + 2 * i, &h, 2);
    }
  } else {
    std::memcpy(dst, v, 4 * n);
  }
}

// Per-channel min and max over `rows` rows of `w` floats.
AC_ALWAYS_INLINE void ColumnMinMaxBody(const float* x, size_t rows, size_t w, float* mn,
                                       float* mx) {
  std::memcpy(mn, x, w * 4);
  std::memcpy(mx, x, w * 4);
  for (size_t r = 1; r < rows; ++r) {
    const float* row = x + r * w;
    for (size_t c = 0; c < w; ++c) {
      mn[c] = row[c] < mn[c] ? row[c] : mn[c];
      mx[c] = row[c] > mx[c] ? row[c] : mx[c];
    }
  }
}

AC_ALWAYS_INLINE void QuantizeKRowBody(const float* x, const float* m, const float* inv,
                                       size_t w, float levels, uint8_t* q) {
  for (size_t c = 0; c < w; ++c) q[c] = QuantizeOne(x[c], m[c], inv[c], levels);
}

// V row: per group min/max, then scales (batched), then quantize.
AC_ALWAYS_INLINE void QuantizeVRowBody(const float* x, size_t ngroups_total, size_t dim,
                                       size_t vgroup, float levels, bool fp16, uint8_t* q,
                                       float* s_out, float* m_out, float* scratch) {
  const size_t per_head = (dim + vgroup - 1) / vgroup;
  float* glo = scratch;
  float* ghi = scratch + ngroups_total;
  float* ginv = scratch + 2 * ngroups_total;
  for (size_t gi = 0; gi < ngroups_total; ++gi) {
    const size_t head = gi / per_head, g = gi % per_head;
    const float* xs = x + head * dim + g * vgroup;
    const size_t n = std::min(vgroup, dim - g * vgroup);
    quant_math::GroupMinMax(xs, n, &glo[gi], &ghi[gi]);
  }
  GroupScalesBody(glo, ghi, ngroups_total, levels, fp16, s_out, m_out, ginv);
  for (size_t gi = 0; gi < ngroups_total; ++gi) {
    const size_t head = gi / per_head, g = gi % per_head;
    const size_t start = head * dim + g * vgroup;
    const size_t n = std::min(vgroup, dim - g * vgroup);
    const float m = m_out[gi], inv = ginv[gi];
    for (size_t k = 0; k < n; ++k) q[start + k] = QuantizeOne(x[start + k], m, inv, levels);
  }
}

AC_ALWAYS_INLINE void DequantKRowBody(const uint8_t* q, const float* s, const float* m,
                                      size_t w, float* y) {
  for (size_t c = 0; c < w; ++c) y[c] = static_cast<float>(q[c]) * s[c] + m[c];
}

AC_ALWAYS_INLINE void DequantVRowBody(const uint8_t* q, size_t ngroups_total, size_t dim,
                                      size_t vgroup, const float* s, const float* m, float* y) {
  const size_t per_head = (dim + vgroup - 1) / vgroup;
  for (size_t gi = 0; gi < ngroups_total; ++gi) {
    const size_t head = gi / per_head, g = gi % per_head;
    const size_t start = head * dim + g * vgroup;
    const size_t n = std::min(vgroup, dim - g * vgroup);
    const float sg = s[gi], mg = m[gi];
    for (size_t k = 0; k < n; ++k) y[start + k] = static_cast<float>(q[start + k]) * sg + mg;
  }
}

// Counts scale (negative, inf, NaN) and min (inf, NaN) values that no encoder writes.
AC_ALWAYS_INLINE uint64_t CountBadScalesBody(const std::byte* s, const std::byte* m, size_t n,
                                             bool fp16) {
  uint64_t bad = 0;
  if (fp16) {
    for (size_t i = 0; i < n; ++i) {
      uint16_t a, b;
      std::memcpy(&a, s + 2 * i, 2);
      std::memcpy(&b, m + 2 * i, 2);
      bad += (a >= 0x7c00u) + ((b & 0x7fffu) >= 0x7c00u);
    }
  } else {
    for (size_t i = 0; i < n; ++i) {
      uint32_t a, b;
      std::memcpy(&a, s + 4 * i, 4);
      std::memcpy(&b, m + 4 * i, 4);
      bad += (a >= 0x7f800000u) + ((b & 0x7fffffffu) >= 0x7f800000u);
    }
  }
  return bad;
}

AC_ALWAYS_INLINE void LoadScalesBody(const std::byte* src, size_t n, bool fp16, float* dst) {
  if (fp16) {
    for (size_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, src + 2 * i, 2);
      dst[i] = Fp16BitsToFloat(h);
    }
  } else {
    std::memcpy(dst, src, 4 * n);
  }
}

AC_DISPATCH(void, ColumnMinMax, (const float* x, size_t rows, size_t w, float* mn, float* mx),
            ColumnMinMaxBody, (x, rows, w, mn, mx))
AC_DISPATCH(void, QuantizeKRow,
            (const float* x, const float* m, const float* inv, size_t w, float levels,
             uint8_t* q),
            QuantizeKRowBody, (x, m, inv, w, levels, q))
AC_DISPATCH(void, QuantizeVRow,
            (const float* x, size_t ngroups_total, size_t dim, size_t vgroup, float levels,
             bool fp16, uint8_t* q, float* s_out, float* m_out, float* scratch),
            QuantizeVRowBody,
            (x, ngroups_total, dim, vgroup, levels, fp16, q, s_out, m_out, scratch))
AC_DISPATCH(void, GroupScales,
            (const float* lo, const float* hi, size_t n, float levels, bool fp16, float* s,
             float* m, float* inv),
            GroupScalesBody, (lo, hi, n, levels, fp16, s, m, inv))
AC_DISPATCH(void, StoreScales, (const float* v, size_t n, bool fp16, std::byte* dst),
            StoreScalesBody, (v, n, fp16, dst))
AC_DISPATCH(void, DequantKRow,
            (const uint8_t* q, const float* s, const float* m, size_t w, float* y),
            DequantKRowBody, (q, s, m, w, y))
AC_DISPATCH(void, DequantVRow,
            (const uint8_t* q, size_t ngroups_total, size_t dim, size_t vgroup, const float* s,
             const float* m, float* y),
            DequantVRowBody, (q, ngroups_total, dim, vgroup, s, m, y))
AC_DISPATCH(uint64_t, CountBadScales,
            (const std::byte* s, const std::byte* m, size_t n, bool fp16), CountBadScalesBody,
            (s, m, n, fp16))
AC_DISPATCH(void, LoadScales, (const std::byte* src, size_t n, bool fp16, float* dst),
            LoadScalesBody, (src, n, fp16, dst))

bool OnGrid(uint32_t v, std::initializer_list<uint32_t> grid) {
  return std::find(grid.begin(), grid.end(), v) != grid.end();
}

// Offset (in elements) of row `token` of slab (kv, layer).
uint64_t RowOffset(const Dims& d, uint32_t kv, uint32_t layer, uint32_t token) {
  return ((static_cast<uint64_t>(kv) * d.layers + layer) * d.tokens + token) * d.width;
}

}  // namespace

void WriteQuantParams(const QuantParams& p, uint8_t* dst) {
  dst[0] = p.k_bits;
  dst[1] = p.v_bits;
  dst[2] = static_cast<uint8_t>(p.group & 0xff);
  dst[3] = static_cast<uint8_t>(p.group >> 8);
  dst[4] = p.sinks;
  dst[5] = static_cast<uint8_t>((p.hadamard ? 1 : 0) | (p.fp32_scales ? 2 : 0));
}

absl::StatusOr<QuantParams> ReadQuantParams(const uint8_t* src) {
  QuantParams p;
  p.k_bits = src[0];
  p.v_bits = src[1];
  p.group = static_cast<uint16_t>(src[2] | (src[3] << 8));
  p.sinks = src[4];
  if (src[5] & ~3u) return Corrupt("unknown quant flag bits");
  p.hadamard = src[5] & 1;
  p.fp32_scales = src[5] & 2;
  if (auto st = ValidateQuantParams(p); !st.ok()) return Corrupt(std::string(st.message()));
  return p;
}

absl::Status ValidateQuantParams(const QuantParams& p) {
  if (!OnGrid(p.k_bits, {2, 3, 4, 8}) || !OnGrid(p.v_bits, {2, 3, 4, 8})) {
    return absl::InvalidArgumentError(absl::StrCat("quant bits k=", p.k_bits, " v=", p.v_bits,
                                                   " not in {2,3,4,8}"));
  }
  if (!OnGrid(p.group, {32, 64, 128})) {
    return absl::InvalidArgumentError(
        absl::StrCat("quant group ", p.group, " not in {32,64,128}"));
  }
  if (!OnGrid(p.sinks, {0, 4, 8, 16, 32})) {
    return absl::InvalidArgumentError(
        absl::StrCat("quant sink tokens ", p.sinks, " not in {0,4,8,16,32}"));
  }
  if (p.hadamard && p.v_bits > 3) {
    return absl::InvalidArgumentError("Hadamard rotation is only defined for v_bits <= 3");
  }
  return absl::OkStatus();
}

absl::Status CheckQuantShape(const QuantParams& p, const KvShape& shape) {
  if (p.hadamard && !IsPowerOfTwo(shape.head_dim)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Hadamard rotation needs a power-of-two head_dim, shape has ", shape.head_dim));
  }
  return absl::OkStatus();
}

std::array<uint64_t, kQuantSections> QuantSectionBytes(const QuantParams& p, const KvShape& s) {
  const Dims d = DimsOf(p, s);
  const uint64_t kscales = uint64_t{d.layers} * d.blocks * d.width * d.ssize;
  const uint64_t vscales = uint64_t{d.layers} * d.qtokens * d.heads * d.vgroups * d.ssize;
  return {uint64_t{d.layers} * d.qtokens * d.krow,
          uint64_t{d.layers} * d.qtokens * d.vrow,
          kscales,
          kscales,
          vscales,
          vscales,
          2ull * d.layers * d.sinks * d.width * d.esize};
}

absl::StatusOr<bool> QuantNeedsFp32Scales(const QuantParams& p, const KvShape& shape,
                                         ConstByteSpan raw) {
  const Dims d = DimsOf(p, shape);
  uint32_t amax = 0;
  for (uint32_t kv = 0; kv < 2; ++kv) {
    for (uint32_t l = 0; l < d.layers; ++l) {
      const uint32_t m = MaxAbsBits(raw.data() + RowOffset(d, kv, l, d.sinks) * d.esize,
                                    shape.dtype, uint64_t{d.qtokens} * d.width);
      amax = std::max(amax, m);
    }
  }
  if (amax >= NonFiniteAbsBits(shape.dtype)) {
    return absl::InvalidArgumentError("quant cannot encode a tensor containing inf or NaN");
  }
  // A group's range (max - min), the Hadamard butterflies and min + code * scale must stay
  // finite in fp32; 2^100 leaves room for all three (KV values are many orders smaller).
  if (amax >= AbsBitsOf(0x1p100f, shape.dtype)) {
    return absl::InvalidArgumentError("quant cannot encode values of magnitude 2^100 or more");
  }
  return amax > AbsBitsOf(16384.0f, shape.dtype);
}

void QuantEncodeSections(const QuantParams& p, const KvShape& shape, ConstByteSpan raw,
                         const std::array<ByteSpan, kQuantSections>& sec) {
  const Dims d = DimsOf(p, shape);
  const bool fp16 = !p.fp32_scales;
  const float klevels = static_cast<float>((1 << p.k_bits) - 1);
  const float vlevels = static_cast<float>((1 << p.v_bits) - 1);
  const size_t w = d.width;
  auto* kcodes = reinterpret_cast<uint8_t*>(sec[0].data());
  auto* vcodes = reinterpret_cast<uint8_t*>(sec[1].data());
  std::vector<float> buf(size_t{std::max<uint32_t>(d.group, 1)} * w);
  std::vector<float> mn(w), mx(w), sc(w), mi(w), inv(w);
  std::vector<uint8_t> q(w);
  const size_t vgroups_row = size_t{d.heads} * d.vgroups;
  std::vector<float> vs(vgroups_row), vm(vgroups_row), scratch(3 * vgroups_row);
  for (uint32_t l = 0; l < d.layers; ++l) {
    // Sinks, K then V, stored as is.
    for (uint32_t kv = 0; kv < 2; ++kv) {
      const uint64_t n = uint64_t{d.sinks} * w * d.esize;
      if (n == 0) continue;  // empty sections may have null data
      std::memcpy(sec[6].data() + (static_cast<uint64_t>(kv) * d.layers + l) * n,
                  raw.data() + RowOffset(d, kv, l, 0) * d.esize, n);
    }
    // K: per channel over token blocks.
    for (uint32_t b = 0; b < d.blocks; ++b) {
      const uint32_t t0 = b * d.group;
      const uint32_t rows = std::min(d.group, d.qtokens - t0);
      for (uint32_t r = 0; r < rows; ++r) {
        LoadRow(raw.data() + RowOffset(d, 0, l, d.sinks + t0 + r) * d.esize, shape.dtype, w,
                buf.data() + size_t{r} * w);
      }
      ColumnMinMax(buf.data(), rows, w, mn.data(), mx.data());
      const uint64_t sbase = (uint64_t{l} * d.blocks + b) * w * d.ssize;
      GroupScales(mn.data(), mx.data(), w, klevels, fp16, sc.data(), mi.data(), inv.data());
      StoreScales(sc.data(), w, fp16, sec[2].data() + sbase);
      StoreScales(mi.data(), w, fp16, sec[3].data() + sbase);
      for (uint32_t r = 0; r < rows; ++r) {
        QuantizeKRow(buf.data() + size_t{r} * w, mi.data(), inv.data(), w, klevels, q.data());
        PackBits(q.data(), w, p.k_bits,
                 kcodes + (uint64_t{l} * d.qtokens + t0 + r) * d.krow);
      }
    }
    // V: per token over channel groups within each head.
    for (uint32_t t = 0; t < d.qtokens; ++t) {
      LoadRow(raw.data() + RowOffset(d, 1, l, d.sinks + t) * d.esize, shape.dtype, w,
              buf.data());
      if (p.hadamard) HadamardInPlace(buf.data(), d.dim, d.heads);
      QuantizeVRow(buf.data(), vgroups_row, d.dim, d.vgroup, vlevels, fp16, q.data(), vs.data(),
                   vm.data(), scratch.data());
      const uint64_t row = uint64_t{l} * d.qtokens + t;
      PackBits(q.data(), w, p.v_bits, vcodes + row * d.vrow);
      StoreScales(vs.data(), vgroups_row, fp16, sec[4].data() + row * vgroups_row * d.ssize);
      StoreScales(vm.data(), vgroups_row, fp16, sec[5].data() + row * vgroups_row * d.ssize);
    }
  }
}

absl::Status QuantDecodeSections(const QuantParams& p, const KvShape& shape,
                                 const std::array<ConstByteSpan, kQuantSections>& sec,
                                 ByteSpan out) {
  if (auto st = ValidateQuantParams(p); !st.ok()) return Corrupt(std::string(st.message()));
  if (auto st = CheckQuantShape(p, shape); !st.ok()) return Corrupt(std::string(st.message()));
  if (out.size() != shape.Bytes()) {
    return absl::InvalidArgumentError(absl::StrCat("output buffer is ", out.size(),
                                                   " bytes; tensor needs ", shape.Bytes()));
  }
  const auto want = QuantSectionBytes(p, shape);
  for (size_t i = 0; i < kQuantSections; ++i) {
    if (sec[i].size() != want[i]) {
      return Corrupt(absl::StrCat("section ", i + 1, " is ", sec[i].size(),
                                  " bytes, params and shape need ", want[i]));
    }
  }
  const Dims d = DimsOf(p, shape);
  const bool fp16 = !p.fp32_scales;
  if (CountBadScales(sec[2].data(), sec[3].data(), want[2] / d.ssize, fp16) != 0 ||
      CountBadScales(sec[4].data(), sec[5].data(), want[4] / d.ssize, fp16) != 0) {
    return Corrupt("a scale is negative or non-finite, or a min is non-finite");
  }
  // Everything is validated; from here on the payload is only read within sizes above.
  const size_t w = d.width;
  const auto* kcodes = reinterpret_cast<const uint8_t*>(sec[0].data());
  const auto* vcodes = reinterpret_cast<const uint8_t*>(sec[1].data());
  std::vector<float> sc(w), mi(w), y(w);
  std::vector<uint8_t> q(w);
  const size_t vgroups_row = size_t{d.heads} * d.vgroups;
  std::vector<float> vs(vgroups_row), vm(vgroups_row);
  for (uint32_t l = 0; l < d.layers; ++l) {
    for (uint32_t kv = 0; kv < 2; ++kv) {
      const uint64_t n = uint64_t{d.sinks} * w * d.esize;
      if (n == 0) continue;  // empty sections may have null data
      std::memcpy(out.data() + RowOffset(d, kv, l, 0) * d.esize,
                  sec[6].data() + (static_cast<uint64_t>(kv) * d.layers + l) * n, n);
    }
    for (uint32_t b = 0; b < d.blocks; ++b) {
      const uint64_t sbase = (uint64_t{l} * d.blocks + b) * w * d.ssize;
      LoadScales(sec[2].data() + sbase, w, fp16, sc.data());
      LoadScales(sec[3].data() + sbase, w, fp16, mi.data());
      const uint32_t t0 = b * d.group;
      const uint32_t rows = std::min(d.group, d.qtokens - t0);
      for (uint32_t r = 0; r < rows; ++r) {
        UnpackBits(kcodes + (uint64_t{l} * d.qtokens + t0 + r) * d.krow, w, p.k_bits, q.data());
        DequantKRow(q.data(), sc.data(), mi.data(), w, y.data());
        StoreRow(y.data(), w, shape.dtype,
                 out.data() + RowOffset(d, 0, l, d.sinks + t0 + r) * d.esize);
      }
    }
    for (uint32_t t = 0; t < d.qtokens; ++t) {
      const uint64_t row = uint64_t{l} * d.qtokens + t;
      LoadScales(sec[4].data() + row * vgroups_row * d.ssize, vgroups_row, fp16, vs.data());
      LoadScales(sec[5].data() + row * vgroups_row * d.ssize, vgroups_row, fp16, vm.data());
      UnpackBits(vcodes + row * d.vrow, w, p.v_bits, q.data());
      DequantVRow(q.data(), vgroups_row, d.dim, d.vgroup, vs.data(), vm.data(), y.data());
      if (p.hadamard) HadamardInPlace(y.data(), d.dim, d.heads);
      StoreRow(y.data(), w, shape.dtype, out.data() + RowOffset(d, 1, l, d.sinks + t) * d.esize);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::array<ConstByteSpan, kQuantSections>> FindQuantSections(
    const ContainerView& view) {
  std::array<ConstByteSpan, kQuantSections> sec;
  for (uint32_t id = 1; id <= kQuantSections; ++id) {
    auto s = view.Find(id);
    if (!s.ok()) return s.status();
    sec[id - 1] = *s;
  }
  return sec;
}

uint64_t QuantContainerMaxBytes(const QuantParams& p, const KvShape& shape) {
  QuantParams q = p;
  q.fp32_scales = true;
  ContainerWriter w(CodecId::kQuant, shape);
  for (uint64_t b : QuantSectionBytes(q, shape)) w.AddSection(0, b);
  return w.TotalBytes();
}

absl::StatusOr<uint64_t> EncodeQuant(QuantParams p, const KvShape& shape, ConstByteSpan raw,
                                     ByteSpan out) {
  if (auto st = CheckEncodeInput(shape, raw); !st.ok()) return st;
  if (auto st = ValidateQuantParams(p); !st.ok()) return st;
  if (auto st = CheckQuantShape(p, shape); !st.ok()) return st;
  auto fp32 = QuantNeedsFp32Scales(p, shape, raw);
  if (!fp32.ok()) return fp32.status();
  p.fp32_scales = *fp32;
  ContainerWriter w(CodecId::kQuant, shape);
  uint8_t params[kQuantParamBytes];
  WriteQuantParams(p, params);
  w.SetParams(params);
  const auto sizes = QuantSectionBytes(p, shape);
  for (size_t i = 0; i < kQuantSections; ++i) w.AddSection(i + 1, sizes[i]);
  if (auto st = w.Layout(out); !st.ok()) return st;
  std::array<ByteSpan, kQuantSections> sec;
  for (size_t i = 0; i < kQuantSections; ++i) sec[i] = w.SectionData(i);
  QuantEncodeSections(p, shape, raw, sec);
  w.Seal();
  return w.TotalBytes();
}

absl::Status DecodeQuant(const ContainerView& view, ByteSpan out) {
  for (size_t i = kQuantParamBytes; i < kContainerParamBytes; ++i) {
    if (view.params[i] != 0) return Corrupt("non-zero reserved parameter byte");
  }
  auto p = ReadQuantParams(view.params.data());
  if (!p.ok()) return p.status();
  if (view.sections.size() != kQuantSections) return Corrupt("expected 7 sections");
  auto sec = FindQuantSections(view);
  if (!sec.ok()) return sec.status();
  return QuantDecodeSections(*p, view.shape, *sec, out);
}

}  // namespace adaptcache
