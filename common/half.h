// bf16 / fp16 <-> float conversions shared by codecs and tests. Header-only, constexpr
// where possible, thread safe. Round-to-nearest-even on narrowing; NaN stays NaN.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

#include "common/kv_shape.h"

namespace adaptcache {

inline float Bf16ToFloat(uint16_t h) { return std::bit_cast<float>(uint32_t{h} << 16); }

inline uint16_t FloatToBf16(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN
  u += 0x7fffu + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}

inline float Fp16ToFloat(uint16_t h) {
  const uint32_t sign = uint32_t{h & 0x8000u} << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t man = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        ++e;
        man <<= 1;
      } while ((man & 0x400u) == 0);
      bits = sign | ((127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  return std::bit_cast<float>(bits);
}

inline uint16_t FloatToFp16(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  u &= 0x7fffffffu;
  if (u > 0x7f800000u) return sign | 0x7e00u;        // NaN
  if (u >= 0x477ff000u) return sign | 0x7c00u;       // overflow (rounds to inf)
  if (u < 0x38800000u) {                              // subnormal or zero
    if (u < 0x33000000u) return sign;                 // underflow to zero
    const uint32_t shift = 113 - (u >> 23) + 13;      // 14..24
    uint32_t man = (u & 0x7fffffu) | 0x800000u;
    uint32_t half = man >> shift;
    const uint32_t rem = man & ((1u << shift) - 1);
    const uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) ++half;
    return sign | static_cast<uint16_t>(half);
  }
  u += 0xfffu + ((u >> 13) & 1);                      // round to nearest even
  u -= (127u - 15u) << 23;
  return sign | static_cast<uint16_t>(u >> 13);
}

// Element i of a tensor in `dtype` at `data`, as float.
inline float LoadAsFloat(const void* data, DType dtype, uint64_t i) {
  switch (dtype) {
    case DType::kBF16: {
      uint16_t h;
      std::memcpy(&h, static_cast<const char*>(data) + 2 * i, 2);
      return Bf16ToFloat(h);
    }
    case DType::kFP16: {
      uint16_t h;
      std::memcpy(&h, static_cast<const char*>(data) + 2 * i, 2);
      return Fp16ToFloat(h);
    }
    case DType::kFP32: {
      float f;
      std::memcpy(&f, static_cast<const char*>(data) + 4 * i, 4);
      return f;
    }
  }
  return 0.f;
}

inline void StoreFromFloat(void* data, DType dtype, uint64_t i, float v) {
  switch (dtype) {
    case DType::kBF16: {
      uint16_t h = FloatToBf16(v);
      std::memcpy(static_cast<char*>(data) + 2 * i, &h, 2);
      return;
    }
    case DType::kFP16: {
      uint16_t h = FloatToFp16(v);
      std::memcpy(static_cast<char*>(data) + 2 * i, &h, 2);
      return;
    }
    case DType::kFP32:
      std::memcpy(static_cast<char*>(data) + 4 * i, &v, 4);
      return;
  }
}

}  // namespace adaptcache
