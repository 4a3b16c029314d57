// Device-side arithmetic shared by the CUDA decode and encode kernels. Every function
// here is the bit-for-bit twin of a CPU reference in kernels/dtype_rows.h, kernels/fp8.cc
// or kernels/quant.cc: integer bit manipulation where the CPU uses it, and explicitly
// rounded fp32 operations (__fmul_rn, __fadd_rn, ...) so nvcc never contracts a multiply
// and an add into an FMA (docs/format.md §3). Header-only, device code only.
#pragma once

#include <cstdint>

namespace adaptcache::cuda::dev {

// DType codes (common/kv_shape.h): 1 bf16, 2 fp16, 3 fp32.
inline constexpr uint8_t kBf16 = 1;
inline constexpr uint8_t kFp16 = 2;
inline constexpr uint8_t kFp32 = 3;

__device__ __forceinline__ float Bf16BitsToFloat(uint32_t h) { return __uint_as_float(h << 16); }

// kernels/dtype_rows.h FloatToBf16Bits: RNE, NaN -> (u >> 16) | 0x40.
__device__ __forceinline__ uint32_t FloatToBf16Bits(float f) {
  const uint32_t u = __float_as_uint(f);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const uint32_t nan = (u >> 16) | 0x40u;
  return ((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded) & 0xffffu;
}

// kernels/dtype_rows.h Fp16BitsToFloat (exact).
__device__ __forceinline__ float Fp16BitsToFloat(uint32_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  const uint32_t em = h & 0x7fffu;
  const uint32_t normal = (em << 13) + 0x38000000u;
  const uint32_t infnan = (em << 13) + 0x70000000u;
  const float sub = __fmul_rn(static_cast<float>(static_cast<int32_t>(em)), 5.9604644775390625e-8f);
  const uint32_t bits = em < 0x400u ? __float_as_uint(sub) : (em >= 0x7c00u ? infnan : normal);
  return __uint_as_float(bits | sign);
}

// kernels/dtype_rows.h FloatToFp16Bits: RNE, overflow -> inf, NaN -> sign | 0x7e00.
__device__ __forceinline__ uint32_t FloatToFp16Bits(float f) {
  uint32_t u = __float_as_uint(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  u &= 0x7fffffffu;
  const uint32_t big = u > 0x7f800000u ? 0x7e00u : 0x7c00u;
  const uint32_t sub = __float_as_uint(__fadd_rn(__uint_as_float(u), 0.5f)) - 0x3f000000u;
  const uint32_t normal = (u + 0xc8000fffu + ((u >> 13) & 1u)) >> 13;
  const uint32_t r = u >= 0x477ff000u ? big : (u < 0x38800000u ? sub : normal);
  return (r | sign) & 0xffffu;
}

// Element bytes of a dtype code.
__host__ __device__ __forceinline__ uint32_t DTypeBytes(uint8_t dtype) {
  return dtype == kFp32 ? 4u : 2u;
}

// Loads element i of a row in `dtype` as fp32 (exact).
__device__ __forceinline__ float LoadElem(const uint8_t* row, uint8_t dtype, uint64_t i) {
  if (dtype == kFp32) {
    uint32_t u;
    memcpy(&u, row + 4 * i, 4);
    return __uint_as_float(u);
  }
  uint16_t h;
  memcpy(&h, row + 2 * i, 2);
  return dtype == kBf16 ? Bf16BitsToFloat(h) : Fp16BitsToFloat(h);
}

// E4M3 (fn) code -> fp32, kernels/fp8.cc DecodeE4M3 (codes 0x7f/0xff are rejected on the
// host before any kernel runs).
__device__ __forceinline__ float E4M3ToFloat(uint32_t c) {
  const uint32_t sign = (c & 0x80u) << 24;
  const uint32_t em = c & 0x7fu;
  const uint32_t normal = (em << 20) + (120u << 23);
  const float sub = __fmul_rn(static_cast<float>(static_cast<int32_t>(em)), 0.001953125f);
  const uint32_t bits = em < 8 ? __float_as_uint(sub) : normal;
  return __uint_as_float(bits | sign);
}

// fp32 -> E4M3 code, RNE, saturating at +-448: kernels/fp8.cc EncodeE4M3.
__device__ __forceinline__ uint32_t FloatToE4M3(float v) {
  const uint32_t u = __float_as_uint(v);
  const uint32_t sign = (u >> 24) & 0x80u;
  uint32_t au = u & 0x7fffffffu;
  au = au < 0x43e00000u ? au : 0x43e00000u;
  const uint32_t r = au + 0x7ffffu + ((au >> 20) & 1u);
  const uint32_t normal = ((r >> 20) - (120u << 3)) & 0x7fu;
  const uint32_t sub =
      __float_as_uint(__fadd_rn(__fmul_rn(__uint_as_float(au), 512.0f), 8388608.0f)) & 0xfu;
  return sign | (au < 0x3c800000u ? sub : normal);
}

// v rounded to `dtype` and back (the CPU's StoreFromFloat then LoadAsFloat, bit for bit).
__device__ __forceinline__ float RoundTo(uint8_t dtype, float v) {
  if (dtype == kBf16) return Bf16BitsToFloat(FloatToBf16Bits(v));
  if (dtype == kFp16) return Fp16BitsToFloat(FloatToFp16Bits(v));
  return v;
}

// A decode into another dtype than the entry's goes through the entry's own: the CPU
// decoder yields the entry's dtype, and the CPU fallback converts that, so both paths give
// the same bytes. Uniform per entry; nothing to do when the dtypes match.
template <int N>
__device__ __forceinline__ void RoundThrough(uint8_t entry_dtype, uint8_t out_dtype, float (&y)[N]) {
  if (entry_dtype == out_dtype) return;
#pragma unroll
  for (int i = 0; i < N; ++i) y[i] = RoundTo(entry_dtype, y[i]);
}
__device__ __forceinline__ float RoundThrough(uint8_t entry_dtype, uint8_t out_dtype, float v) {
  return entry_dtype == out_dtype ? v : RoundTo(entry_dtype, v);
}

// Stores v (already the final fp32 value) as element i of `row` in `dtype`.
__device__ __forceinline__ void StoreElem(uint8_t* row, uint8_t dtype, uint64_t i, float v) {
  if (dtype == kFp32) {
    reinterpret_cast<float*>(row)[i] = v;
  } else {
    const uint16_t h =
        static_cast<uint16_t>(dtype == kBf16 ? FloatToBf16Bits(v) : FloatToFp16Bits(v));
    reinterpret_cast<uint16_t*>(row)[i] = h;
  }
}

// Reads n (<= 16) bytes at p into dst with the widest accesses p's alignment allows.
// Branches are uniform across a warp whenever rows share an alignment.
template <int N>
__device__ __forceinline__ void LoadBytes(const uint8_t* p, uint8_t (&dst)[N]) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if constexpr (N % 16 == 0) {
    if (a % 16 == 0) {
#pragma unroll
      for (int i = 0; i < N; i += 16) {
        *reinterpret_cast<uint4*>(dst + i) = __ldg(reinterpret_cast<const uint4*>(p + i));
      }
      return;
    }
  }
  if constexpr (N % 8 == 0) {
    if (a % 8 == 0) {
#pragma unroll
      for (int i = 0; i < N; i += 8) {
        *reinterpret_cast<uint2*>(dst + i) = __ldg(reinterpret_cast<const uint2*>(p + i));
      }
      return;
    }
  }
  if constexpr (N % 4 == 0) {
    if (a % 4 == 0) {
#pragma unroll
      for (int i = 0; i < N; i += 4) {
        *reinterpret_cast<uint32_t*>(dst + i) = __ldg(reinterpret_cast<const uint32_t*>(p + i));
      }
      return;
    }
  }
  if constexpr (N % 2 == 0) {
    if (a % 2 == 0) {
#pragma unroll
      for (int i = 0; i < N; i += 2) {
        *reinterpret_cast<uint16_t*>(dst + i) =
            __ldg(reinterpret_cast<const unsigned short*>(p + i));
      }
      return;
    }
  }
#pragma unroll
  for (int i = 0; i < N; ++i) dst[i] = __ldg(p + i);
}

// Writes N bytes with the widest accesses p's alignment allows.
template <int N>
__device__ __forceinline__ void StoreBytes(uint8_t* p, const uint8_t (&src)[N]) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if constexpr (N % 16 == 0) {
    if (a % 16 == 0) {
#pragma unroll
      for (int i = 0; i < N; i += 16) {
        *reinterpret_cast<uint4*>(p + i) = *reinterpret_cast<const uint4*>(src + i);
      }
      return;
    }
  }
  if constexpr (N % 8 == 0) {
    if (a % 8 == 0) {
#pragma unroll
      for (int i = 0; i < N; i += 8) {
        *reinterpret_cast<uint2*>(p + i) = *reinterpret_cast<const uint2*>(src + i);
      }
      return;
    }
  }
  if constexpr (N % 4 == 0) {
    if (a % 4 == 0) {
#pragma unroll
      for (int i = 0; i < N; i += 4) {
        *reinterpret_cast<uint32_t*>(p + i) = *reinterpret_cast<const uint32_t*>(src + i);
      }
      return;
    }
  }
#pragma unroll
  for (int i = 0; i < N; i += 2) {
    *reinterpret_cast<uint16_t*>(p + i) = *reinterpret_cast<const uint16_t*>(src + i);
  }
}

// Normalized-Hadamard scale for n = 2^k (kernels/hadamard.cc HadamardScale).
__host__ __device__ inline float HadamardScaleOf(uint32_t n) {
  int k = 0;
  while ((1u << k) < n) ++k;
  float s = (k % 2 == 0) ? 1.0f : 0.70710678118654752f;
  for (int i = 0; i < k / 2; ++i) s *= 0.5f;  // exact power-of-two scaling
  return s;
}

}  // namespace adaptcache::cuda::dev
