// Conversion of contiguous rows between a KV dtype (bf16, fp16, fp32) and fp32, written
// branch-free so loops vectorize. Results are bit-identical to common/half.h
// (round-to-nearest-even on narrowing, NaN stays NaN; tested). Thread safe.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "common/kv_shape.h"
#include "kernels/container.h"

namespace adaptcache {

// Branch-free scalar forms (used inside vectorized loops).
inline float Bf16BitsToFloat(uint16_t h) { return std::bit_cast<float>(uint32_t{h} << 16); }

inline uint16_t FloatToBf16Bits(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const uint32_t nan = (u >> 16) | 0x40u;
  return static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

inline float Fp16BitsToFloat(uint16_t h) {
  const uint32_t sign = uint32_t{h & 0x8000u} << 16;
  const uint32_t em = h & 0x7fffu;
  const uint32_t normal = (em << 13) + 0x38000000u;       // rebias exponent 15 -> 127
  const uint32_t infnan = (em << 13) + 0x70000000u;       // exponent 31 -> 255
  const float sub = static_cast<float>(static_cast<int32_t>(em)) * 5.9604644775390625e-8f;  // em * 2^-24
  const uint32_t bits = em < 0x400u ? std::bit_cast<uint32_t>(sub) : (em >= 0x7c00u ? infnan : normal);
  return std::bit_cast<float>(bits | sign);
}

inline uint16_t FloatToFp16Bits(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  u &= 0x7fffffffu;
  // Overflow (incl. values that round up to 65536) -> inf; NaN -> quiet NaN.
  const uint32_t big = u > 0x7f800000u ? 0x7e00u : 0x7c00u;
  // Subnormal or zero: adding 0.5f aligns the fp16 subnormal grid with the float ulp,
  // so the float adder does the round-to-nearest-even.
  const uint32_t sub =
      std::bit_cast<uint32_t>(std::bit_cast<float>(u) + 0.5f) - 0x3f000000u;
  const uint32_t normal = (u + 0xc8000fffu + ((u >> 13) & 1u)) >> 13;  // rebias, round, shift
  const uint32_t r = u >= 0x477ff000u ? big : (u < 0x38800000u ? sub : normal);
  return static_cast<uint16_t>(r | sign);
}

// Encoder argument check: a valid shape and raw.size() == shape.Bytes().
absl::Status CheckEncodeInput(const KvShape& shape, ConstByteSpan raw);

// Converts n elements at src (dtype) to fp32.
void LoadRow(const std::byte* src, DType dtype, size_t n, float* dst);
// Converts n fp32 values to dtype at dst (round to nearest even).
void StoreRow(const float* src, size_t n, DType dtype, std::byte* dst);

// Largest |x| over n elements at src, as the bit pattern of that value in `dtype` with
// the sign cleared. Non-finite values compare above every finite one, so the result is
// >= NonFiniteAbsBits(dtype) iff some element is inf or NaN.
uint32_t MaxAbsBits(const std::byte* src, DType dtype, size_t n);
uint32_t NonFiniteAbsBits(DType dtype);
// Bit pattern (sign cleared) of a positive finite value v exactly representable in dtype.
uint32_t AbsBitsOf(float v, DType dtype);

}  // namespace adaptcache
