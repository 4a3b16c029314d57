#include "kernels/dtype_rows.h"

#include <cstring>

#include "absl/strings/str_cat.h"

#include "kernels/simd.h"

namespace adaptcache {
namespace {

AC_ALWAYS_INLINE void LoadRowBody(const std::byte* src, DType dtype, size_t n, float* dst) {
  switch (dtype) {
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = Bf16BitsToFloat(h);
      }
      return;
    case DType::kFP16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = Fp16BitsToFloat(h);
      }
      return;
    case DType::kFP32:
      std::memcpy(dst, src, 4 * n);
      return;
  }
}

AC_ALWAYS_INLINE void StoreRowBody(const float* src, size_t n, DType dtype, std::byte* dst) {
  switch (dtype) {
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) {
        const uint16_t h = FloatToBf16Bits(src[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
      return;
    case DType::kFP16:
      for (size_t i = 0; i < n; ++i) {
        const uint16_t h = FloatToFp16Bits(src[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
      return;
    case DType::kFP32:
      std::memcpy(dst, src, 4 * n);
      return;
  }
}

AC_ALWAYS_INLINE uint32_t MaxAbsBitsBody(const std::byte* src, DType dtype, size_t n) {
  uint32_t m = 0;
  if (dtype == DType::kFP32) {
    for (size_t i = 0; i < n; ++i) {
      uint32_t u;
      std::memcpy(&u, src + 4 * i, 4);
      u &= 0x7fffffffu;
      m = u > m ? u : m;
    }
  } else {
    uint16_t m16 = 0;
    for (size_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, src + 2 * i, 2);
      h &= 0x7fffu;
      m16 = h > m16 ? h : m16;
    }
    m = m16;
  }
  return m;
}

}  // namespace

AC_DISPATCH(void, LoadRow, (const std::byte* src, DType dtype, size_t n, float* dst),
            LoadRowBody, (src, dtype, n, dst))
AC_DISPATCH(void, StoreRow, (const float* src, size_t n, DType dtype, std::byte* dst),
            StoreRowBody, (src, n, dtype, dst))
AC_DISPATCH(uint32_t, MaxAbsBits, (const std::byte* src, DType dtype, size_t n), MaxAbsBitsBody,
            (src, dtype, n))

absl::Status CheckEncodeInput(const KvShape& shape, ConstByteSpan raw) {
  if (auto st = ValidateShape(shape); !st.ok()) return st;
  if (raw.size() != shape.Bytes()) {
    return absl::InvalidArgumentError(absl::StrCat("tensor is ", raw.size(), " bytes; shape ",
                                                   shape.DebugString(), " needs ", shape.Bytes()));
  }
  return absl::OkStatus();
}

uint32_t NonFiniteAbsBits(DType dtype) {
  switch (dtype) {
    case DType::kBF16:
      return 0x7f80u;
    case DType::kFP16:
      return 0x7c00u;
    case DType::kFP32:
      return 0x7f800000u;
  }
  return 0;
}

uint32_t AbsBitsOf(float v, DType dtype) {
  switch (dtype) {
    case DType::kBF16:
      return FloatToBf16Bits(v) & 0x7fffu;
    case DType::kFP16:
      return FloatToFp16Bits(v) & 0x7fffu;
    case DType::kFP32:
      return std::bit_cast<uint32_t>(v) & 0x7fffffffu;
  }
  return 0;
}

}  // namespace adaptcache
