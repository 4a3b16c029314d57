// CUDA encode kernels for fp8 and quant (docs/cuda.md). They fill the sections of a
// container whose header and section table the host lays out (encode_plan.cc); every
// operation repeats the CPU encoder's (kernels/fp8.cc, kernels/quant.cc), including
// the order of min/max comparisons (which decides the sign of zero), so the bytes match.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/device_math.cuh"
#include "kernels/cuda/encode_desc.h"
#include "kernels/quant_minmax.h"

namespace adaptcache::cuda::internal {
namespace {

using namespace dev;  // NOLINT

constexpr int kThreads = 256;

// ---- shared helpers (kernels/quant.cc) ----

__device__ __forceinline__ float RoundDownToFp16(float f) {
  const uint32_t h = FloatToFp16Bits(f);
  const bool above = Fp16BitsToFloat(h) > f;
  const uint32_t step = (h & 0x8000u) ? 1u : 0xffffffffu;
  return Fp16BitsToFloat((h + (above ? step : 0u)) & 0xffffu);
}

__device__ __forceinline__ float RoundUpToFp16(float f) {
  const uint32_t h = FloatToFp16Bits(f);
  const uint32_t below = Fp16BitsToFloat(h) < f ? 1u : 0u;
  return Fp16BitsToFloat((h + below) & 0xffffu);
}

__device__ __forceinline__ void GroupScale(float mn, float mx, float levels, bool fp16, float* s,
                                           float* m) {
  const float mm = fp16 ? RoundDownToFp16(mn) : mn;
  float ss = __fdiv_rn(__fsub_rn(mx, mm), levels);
  if (fp16) ss = RoundUpToFp16(ss);
  *m = __fadd_rn(mm, 0.0f);
  *s = ss;
}

__device__ __forceinline__ float Inverse(float s) { return s >= 1e-30f ? __fdiv_rn(1.0f, s) : 0.0f; }

__device__ __forceinline__ uint32_t QuantizeOne(float x, float m, float inv, float levels) {
  float v = __fmul_rn(__fsub_rn(x, m), inv);
  v = v > 0.f ? v : 0.f;
  v = v < levels ? v : levels;
  return static_cast<uint32_t>(__float2int_rz(__fadd_rn(v, 0.5f)));
}

__device__ __forceinline__ void StoreScale(uint8_t* base, bool fp16, uint64_t i, float v) {
  if (fp16) {
    const uint16_t h = static_cast<uint16_t>(FloatToFp16Bits(v));
    memcpy(base + 2 * i, &h, 2);
  } else {
    memcpy(base + 4 * i, &v, 4);
  }
}

// Writes n (<= 8) codes of b bits: ceil(n*b/8) bytes starting on a byte boundary.
__device__ __forceinline__ void StorePacked(uint8_t* dst, const uint32_t (&q)[8], int n, uint32_t b) {
  uint64_t w = 0;
  for (int i = 0; i < n; ++i) w |= uint64_t{q[i]} << (i * b);
  const uint32_t nbytes = (n * b + 7) / 8;
  for (uint32_t i = 0; i < nbytes; ++i) dst[i] = static_cast<uint8_t>(w >> (8 * i));
}

// ---- max |x| (bit pattern in the dtype) over row ranges: the encoders' input check ----

__global__ void MaxAbsKernel(const uint8_t* raw, uint8_t dtype, uint64_t slab_elems,
                             uint64_t first, uint64_t count, uint32_t* result) {
  const uint64_t base = uint64_t{blockIdx.y} * slab_elems + first;
  uint32_t m = 0;
  for (uint64_t i = uint64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < count;
       i += uint64_t{gridDim.x} * blockDim.x) {
    if (dtype == kFp32) {
      m = max(m, __ldg(reinterpret_cast<const uint32_t*>(raw) + base + i) & 0x7fffffffu);
    } else {
      m = max(m, static_cast<uint32_t>(__ldg(reinterpret_cast<const unsigned short*>(raw) + base + i)) & 0x7fffu);
    }
  }
  m = __reduce_max_sync(0xffffffffu, m);
  if (threadIdx.x % 32 == 0 && m != 0) atomicMax(result, m);
}

// ---- fp8: one block per row ----

__global__ void __launch_bounds__(kThreads) Fp8EncodeKernel(const uint8_t* raw, uint8_t dtype,
                                                            uint32_t width, uint8_t* codes,
                                                            uint8_t* scales) {
  __shared__ uint32_t warp_max[kThreads / 32];
  const uint64_t row = blockIdx.x;
  const uint32_t es = DTypeBytes(dtype);
  const uint8_t* x = raw + row * width * es;
  uint32_t amax = 0;
  for (uint32_t c = threadIdx.x; c < width; c += blockDim.x) {
    amax = max(amax, __float_as_uint(LoadElem(x, dtype, c)) & 0x7fffffffu);
  }
  amax = __reduce_max_sync(0xffffffffu, amax);
  if (threadIdx.x % 32 == 0) warp_max[threadIdx.x / 32] = amax;
  __syncthreads();
  amax = 0;
  for (int i = 0; i < kThreads / 32; ++i) amax = max(amax, warp_max[i]);
  const float scale = __fdiv_rn(__uint_as_float(amax), 448.0f);
  const float inv = scale > 0.f ? __fdiv_rn(1.0f, scale) : 0.f;
  if (threadIdx.x == 0) memcpy(scales + 4 * row, &scale, 4);
  uint8_t* out = codes + row * width;
  for (uint32_t c = threadIdx.x; c < width; c += blockDim.x) {
    out[c] = static_cast<uint8_t>(FloatToE4M3(__fmul_rn(LoadElem(x, dtype, c), inv)));
  }
}

// ---- quant K: one thread per 8 channels of one (layer, token block) ----

__global__ void __launch_bounds__(kThreads) QuantKKernel(const __grid_constant__ QuantEncodeArgs a) {
  const uint32_t nch = (a.width + 7) / 8;
  const uint32_t ch = blockIdx.y * blockDim.x + threadIdx.x;
  if (ch >= nch) return;
  const uint32_t l = blockIdx.x / a.blocks, b = blockIdx.x % a.blocks;
  const uint32_t c0 = ch * 8;
  const int n = static_cast<int>(min(8u, a.width - c0));
  const uint32_t t0 = b * a.group;
  const uint32_t rows = min(a.group, a.qtokens - t0);
  const uint32_t es = DTypeBytes(a.dtype);
  const bool fp16 = !a.fp32_scales;
  const float levels = static_cast<float>((1u << a.k_bits) - 1);
  auto row_ptr = [&](uint32_t r) {  // K row of quantized token t0 + r
    return a.raw + ((uint64_t{l} * a.tokens + a.sinks + t0 + r) * a.width + c0) * es;
  };
  float mn[8], mx[8];
  for (int i = 0; i < 8; ++i) mn[i] = mx[i] = i < n ? LoadElem(row_ptr(0), a.dtype, i) : 0.f;
  for (uint32_t r = 1; r < rows; ++r) {
    const uint8_t* x = row_ptr(r);
    for (int i = 0; i < n; ++i) {
      const float v = LoadElem(x, a.dtype, i);
      mn[i] = v < mn[i] ? v : mn[i];
      mx[i] = v > mx[i] ? v : mx[i];
    }
  }
  float m[8], inv[8];
  const uint64_t sbase = (uint64_t{l} * a.blocks + b) * a.width + c0;
  for (int i = 0; i < n; ++i) {
    float s;
    GroupScale(mn[i], mx[i], levels, fp16, &s, &m[i]);
    inv[i] = Inverse(s);
    StoreScale(a.sec[2], fp16, sbase + i, s);
    StoreScale(a.sec[3], fp16, sbase + i, m[i]);
  }
  for (uint32_t r = 0; r < rows; ++r) {
    const uint8_t* x = row_ptr(r);
    uint32_t q[8];
    for (int i = 0; i < n; ++i) q[i] = QuantizeOne(LoadElem(x, a.dtype, i), m[i], inv[i], levels);
    StorePacked(a.sec[0] + (uint64_t{l} * a.qtokens + t0 + r) * a.krow + uint64_t{ch} * a.k_bits, q,
                n, a.k_bits);
  }
}

// ---- quant V: one block per (layer, quantized token) row, staged in shared memory ----

__global__ void __launch_bounds__(kThreads) QuantVKernel(const __grid_constant__ QuantEncodeArgs a) {
  extern __shared__ float sh[];
  const uint32_t W = a.width, D = a.dim;
  const uint32_t groups = a.heads * a.vgroups;
  float* x = sh;
  float* gm = sh + W;
  float* ginv = gm + groups;
  const uint32_t l = blockIdx.x / a.qtokens, tq = blockIdx.x % a.qtokens;
  const uint32_t es = DTypeBytes(a.dtype);
  const uint8_t* src =
      a.raw + ((uint64_t{a.layers + l} * a.tokens + a.sinks + tq) * W) * es;  // slab (1, l)
  for (uint32_t c = threadIdx.x; c < W; c += blockDim.x) x[c] = LoadElem(src, a.dtype, c);
  __syncthreads();
  if (a.hadamard) {  // kernels/hadamard.cc, stage by stage over every head of the row
    const uint32_t half = W / 2;
    for (uint32_t len = 1; len < D; len <<= 1) {
      for (uint32_t p = threadIdx.x; p < half; p += blockDim.x) {
        const uint32_t head = p / (D / 2), q = p % (D / 2);
        const uint32_t i = head * D + (q / len) * 2 * len + (q % len);
        const float u = x[i], w = x[i + len];
        x[i] = __fadd_rn(u, w);
        x[i + len] = __fsub_rn(u, w);
      }
      __syncthreads();
    }
    const float scale = HadamardScaleOf(D);
    for (uint32_t c = threadIdx.x; c < W; c += blockDim.x) x[c] = __fmul_rn(x[c], scale);
    __syncthreads();
  }
  const bool fp16 = !a.fp32_scales;
  const float levels = static_cast<float>((1u << a.v_bits) - 1);
  const uint64_t row = uint64_t{l} * a.qtokens + tq;
  for (uint32_t gi = threadIdx.x; gi < groups; gi += blockDim.x) {
    const uint32_t head = gi / a.vgroups, g = gi % a.vgroups;
    const float* xs = x + head * D + g * a.vgroup;
    const uint32_t n = min(a.vgroup, D - g * a.vgroup);
    float mn, mx;
    ::adaptcache::quant_math::GroupMinMax(xs, n, &mn, &mx);  // the CPU's code (QuantizeVRowBody)
    float s, m;
    GroupScale(mn, mx, levels, fp16, &s, &m);
    gm[gi] = m;
    ginv[gi] = Inverse(s);
    StoreScale(a.sec[4], fp16, row * groups + gi, s);
    StoreScale(a.sec[5], fp16, row * groups + gi, m);
  }
  __syncthreads();
  const uint32_t nch = (W + 7) / 8;
  for (uint32_t ch = threadIdx.x; ch < nch; ch += blockDim.x) {
    const uint32_t c0 = ch * 8;
    const int n = static_cast<int>(min(8u, W - c0));
    uint32_t q[8];
    for (int i = 0; i < n; ++i) {
      const uint32_t c = c0 + i;
      const uint32_t gi = (c / D) * a.vgroups + (c % D) / a.vgroup;
      q[i] = QuantizeOne(x[c], gm[gi], ginv[gi], levels);
    }
    StorePacked(a.sec[1] + row * a.vrow + uint64_t{ch} * a.v_bits, q, n, a.v_bits);
  }
}

}  // namespace

int LaunchMaxAbs(const uint8_t* raw, uint8_t dtype, uint32_t slabs, uint64_t slab_elems,
                 uint64_t first, uint64_t count, uint32_t* result, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  if (count == 0) return 0;
  const uint64_t blocks = (count + kThreads - 1) / kThreads;
  const unsigned gx = static_cast<unsigned>(blocks < 1024 ? blocks : 1024);
  MaxAbsKernel<<<dim3(gx, slabs), kThreads, 0, s>>>(raw, dtype, slab_elems, first, count, result);
  return cudaGetLastError();
}

int LaunchFp8Encode(const uint8_t* raw, uint8_t dtype, uint64_t rows, uint32_t width,
                    uint8_t* codes, uint8_t* scales, void* stream) {
  if (rows == 0) return 0;
  Fp8EncodeKernel<<<static_cast<unsigned>(rows), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      raw, dtype, width, codes, scales);
  return cudaGetLastError();
}

size_t QuantVSharedBytes(const QuantEncodeArgs& a) {
  return 4ull * a.width + 8ull * a.heads * a.vgroups;
}

int LaunchQuantEncode(const QuantEncodeArgs& a, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  if (a.qtokens == 0) return 0;
  const uint32_t nch = (a.width + 7) / 8;
  QuantKKernel<<<dim3(a.layers * a.blocks, (nch + kThreads - 1) / kThreads), kThreads, 0, s>>>(a);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  const size_t smem = QuantVSharedBytes(a);
  if (smem > 48 * 1024) {
    err = cudaFuncSetAttribute(QuantVKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(smem));
    if (err != cudaSuccess) return err;
  }
  QuantVKernel<<<a.layers * a.qtokens, kThreads, smem, s>>>(a);
  return cudaGetLastError();
}

}  // namespace adaptcache::cuda::internal
