#include "kernels/fp8.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/dtype_rows.h"
#include "kernels/simd.h"

namespace adaptcache {
namespace {

constexpr float kE4M3Max = 448.0f;

absl::Status Corrupt(const std::string& what) {
  return absl::DataLossError(absl::StrCat("corrupt fp8 container: ", what));
}

// Branch-free forms used inside the vectorized loops (selects are bit masks, so the
// compiler needs no if-conversion).
AC_ALWAYS_INLINE uint8_t EncodeE4M3(float v) {
  const uint32_t u = std::bit_cast<uint32_t>(v);
  const uint32_t sign = (u >> 24) & 0x80u;
  uint32_t au = u & 0x7fffffffu;
  au = au < 0x43e00000u ? au : 0x43e00000u;  // saturate at 448 (integer compare: a >= 0)
  // Normal range (a >= 2^-6): round the mantissa to 3 bits, ties to even; a carry
  // into the exponent is the correct next binade. Rebias 127 -> 7.
  const uint32_t r = au + 0x7ffffu + ((au >> 20) & 1u);
  const uint32_t normal = ((r >> 20) - (120u << 3)) & 0x7fu;
  // Subnormal (a < 2^-6): multiples of 2^-9; the float adder rounds to nearest even.
  // a * 512 + 2^23 has ulp 1, so its low mantissa bits are round(a * 512) in 0..8.
  const uint32_t sub =
      std::bit_cast<uint32_t>(std::bit_cast<float>(au) * 512.0f + 8388608.0f) & 0xfu;
  const uint32_t is_sub = 0u - static_cast<uint32_t>(au < 0x3c800000u);
  return static_cast<uint8_t>(sign | (sub & is_sub) | (normal & ~is_sub));
}

AC_ALWAYS_INLINE float DecodeE4M3(uint8_t c) {
  const uint32_t sign = uint32_t{c & 0x80u} << 24;
  const uint32_t em = c & 0x7fu;
  const uint32_t normal = (em << 20) + (120u << 23);
  const float sub = static_cast<float>(static_cast<int32_t>(em)) * 0.001953125f;  // em * 2^-9
  const uint32_t is_sub = 0u - static_cast<uint32_t>(em < 8);
  const uint32_t bits = (std::bit_cast<uint32_t>(sub) & is_sub) | (normal & ~is_sub);
  return std::bit_cast<float>(bits | sign);
}

AC_ALWAYS_INLINE float EncodeRowBody(const float* x, size_t n, uint8_t* codes) {
  uint32_t amax_bits = 0;  // |x| orders like its bit pattern
  for (size_t i = 0; i < n; ++i) {
    const uint32_t a = std::bit_cast<uint32_t>(x[i]) & 0x7fffffffu;
    amax_bits = a > amax_bits ? a : amax_bits;
  }
  const float scale = std::bit_cast<float>(amax_bits) / kE4M3Max;
  const float inv = scale > 0.f ? 1.0f / scale : 0.f;
  for (size_t i = 0; i < n; ++i) codes[i] = EncodeE4M3(x[i] * inv);
  return scale;
}

AC_ALWAYS_INLINE void DecodeRowBody(const uint8_t* codes, size_t n, float scale, float* y) {
  for (size_t i = 0; i < n; ++i) y[i] = DecodeE4M3(codes[i]) * scale;
}

AC_ALWAYS_INLINE uint64_t CountNanCodesBody(const uint8_t* c, uint64_t n) {
  uint64_t bad = 0;
  for (uint64_t i = 0; i < n; ++i) bad += (c[i] & 0x7f) == 0x7f;
  return bad;
}

AC_DISPATCH(uint64_t, CountNanCodes, (const uint8_t* c, uint64_t n), CountNanCodesBody, (c, n))
AC_DISPATCH(float, EncodeRow, (const float* x, size_t n, uint8_t* codes), EncodeRowBody,
            (x, n, codes))
AC_DISPATCH(void, DecodeRow, (const uint8_t* codes, size_t n, float scale, float* y),
            DecodeRowBody, (codes, n, scale, y))

uint64_t Rows(const KvShape& s) { return 2ull * s.layers * s.tokens; }
uint64_t RowWidth(const KvShape& s) { return uint64_t{s.kv_heads} * s.head_dim; }

}  // namespace

float E4M3ToFloat(uint8_t code) {
  if ((code & 0x7f) == 0x7f) return std::nanf("");
  return DecodeE4M3(code);
}

uint8_t FloatToE4M3(float v) { return EncodeE4M3(v); }

uint64_t Fp8ContainerBytes(const KvShape& shape) {
  ContainerWriter w(CodecId::kFp8, shape);
  w.AddSection(kFp8SectionCodes, Rows(shape) * RowWidth(shape));
  w.AddSection(kFp8SectionScales, Rows(shape) * 4);
  return w.TotalBytes();
}

absl::StatusOr<uint64_t> EncodeFp8(const KvShape& shape, ConstByteSpan raw, ByteSpan out) {
  if (auto st = CheckEncodeInput(shape, raw); !st.ok()) return st;
  const uint64_t rows = Rows(shape), width = RowWidth(shape);
  const size_t esize = DTypeSize(shape.dtype);
  if (MaxAbsBits(raw.data(), shape.dtype, shape.Elements()) >= NonFiniteAbsBits(shape.dtype)) {
    return absl::InvalidArgumentError("fp8 cannot encode a tensor containing inf or NaN");
  }
  ContainerWriter w(CodecId::kFp8, shape);
  w.AddSection(kFp8SectionCodes, rows * width);
  w.AddSection(kFp8SectionScales, rows * 4);
  if (auto st = w.Layout(out); !st.ok()) return st;
  auto* codes = reinterpret_cast<uint8_t*>(w.SectionData(0).data());
  std::byte* scales = w.SectionData(1).data();
  std::vector<float> buf(width);
  for (uint64_t r = 0; r < rows; ++r) {
    LoadRow(raw.data() + r * width * esize, shape.dtype, width, buf.data());
    const float scale = EncodeRow(buf.data(), width, codes + r * width);
    std::memcpy(scales + 4 * r, &scale, 4);
  }
  w.Seal();
  return w.TotalBytes();
}

absl::Status DecodeFp8(const ContainerView& view, ByteSpan out) {
  const KvShape& shape = view.shape;
  const uint64_t rows = Rows(shape), width = RowWidth(shape);
  const size_t esize = DTypeSize(shape.dtype);
  for (uint8_t p : view.params) {
    if (p != 0) return Corrupt("non-zero parameter byte");
  }
  if (view.sections.size() != 2) return Corrupt("expected 2 sections");
  auto codes = view.Find(kFp8SectionCodes);
  if (!codes.ok()) return codes.status();
  auto scales = view.Find(kFp8SectionScales);
  if (!scales.ok()) return scales.status();
  if (codes->size() != rows * width) {
    return Corrupt(absl::StrCat("codes section is ", codes->size(), " bytes, shape needs ",
                                rows * width));
  }
  if (scales->size() != rows * 4) return Corrupt("scales section size does not match shape");
  if (out.size() != shape.Bytes()) return absl::InvalidArgumentError("output size mismatch");
  std::vector<float> scale(rows);
  std::memcpy(scale.data(), scales->data(), rows * 4);
  for (uint64_t r = 0; r < rows; ++r) {
    if (!(scale[r] >= 0.f && std::isfinite(scale[r]))) {
      return Corrupt(absl::StrCat("scale of row ", r, " is not a finite non-negative value"));
    }
  }
  const auto* c = reinterpret_cast<const uint8_t*>(codes->data());
  if (CountNanCodes(c, rows * width) != 0) return Corrupt("NaN code (0x7f/0xff)");
  std::vector<float> buf(width);
  for (uint64_t r = 0; r < rows; ++r) {
    DecodeRow(c + r * width, width, scale[r], buf.data());
    StoreRow(buf.data(), width, shape.dtype, out.data() + r * width * esize);
  }
  return absl::OkStatus();
}

}  // namespace adaptcache
