// GPU CRC32C of container copies (verify.h). A block checks one 32 KiB unit at a time
// (grid-stride over the launch's units): each thread takes the CRC of its 128-byte slice
// (slicing-by-8 tables in shared memory), the slices are combined by shifting each to its
// place (common/crc32c_math.h) and XOR-ing, and the unit's share is XOR-ed into the
// container's accumulator. The block that finishes a container's last unit compares the
// accumulated CRC with the expected one and opens or closes the gate.
#include <cuda_runtime.h>

#include <cstdint>

#include "common/crc32c_math.h"
#include "kernels/cuda/gate.h"
#include "kernels/cuda/verify_desc.h"

namespace adaptcache::cuda::internal {
namespace {

namespace cm = ::adaptcache::crc32c_math;

__constant__ cm::X2nTable kX2n = cm::MakeX2nTable();

__device__ __forceinline__ uint32_t Crc8(const uint32_t (*t)[256], uint32_t crc, uint64_t w) {
  const uint32_t lo = static_cast<uint32_t>(w) ^ crc, hi = static_cast<uint32_t>(w >> 32);
  return t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^
         t[3][hi & 0xff] ^ t[2][(hi >> 8) & 0xff] ^ t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
}

// x^(8n) mod P computed by a whole warp: lane k holds the factor of bit k of n, and the
// factors are multiplied in a butterfly (every lane ends with the product).
__device__ __forceinline__ uint32_t WarpXPow8N(uint64_t n) {
  const uint32_t lane = threadIdx.x & 31;
  uint32_t f = 1u << 31;
  if ((n >> lane) & 1) f = kX2n.v[lane + 3];
  if ((n >> (lane + 32)) & 1) f = cm::MultModP(f, kX2n.v[lane + 35 < 64 ? lane + 35 : 63]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) f = cm::MultModP(f, __shfl_xor_sync(0xffffffffu, f, o));
  return f;
}

__device__ __forceinline__ uint32_t FindUnitEntry(const VerifyArgs& a, uint32_t unit) {
  uint32_t lo = 0, hi = a.entries - 1;
  while (lo < hi) {
    const uint32_t mid = (lo + hi + 1) / 2;
    if (a.e[mid].unit_begin <= unit) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

__global__ void __launch_bounds__(kVerifyThreads) VerifyKernel(const __grid_constant__ VerifyArgs a) {
  __shared__ uint32_t table[8][256];
  __shared__ uint32_t shift[kVerifyThreads];  // x^(8 * 128 * (255 - t)) mod P
  __shared__ uint32_t warp_acc[kVerifyThreads / 32];
  const uint32_t t = threadIdx.x;
  {
    uint32_t c = t;
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ cm::kPoly : c >> 1;
    table[0][t] = c;
    shift[t] = cm::XPow8N(kX2n, uint64_t{kVerifySliceBytes} * (kVerifyThreads - 1 - t));
  }
  __syncthreads();
  for (int k = 1; k < 8; ++k) {
    const uint32_t p = table[k - 1][t];
    table[k][t] = (p >> 8) ^ table[0][p & 0xff];
    __syncthreads();
  }
  for (uint32_t unit = blockIdx.x; unit < a.total_units; unit += gridDim.x) {
    const VerifyEntry& e = a.e[FindUnitEntry(a, unit)];
    const uint32_t u = unit - e.unit_begin;
    const uint64_t unit_start = uint64_t{u} * kVerifyUnitBytes;
    const uint64_t unit_end = min(unit_start + kVerifyUnitBytes, e.bytes);
    const uint64_t s = unit_start + uint64_t{t} * kVerifySliceBytes;
    const uint64_t end = min(s + kVerifySliceBytes, e.bytes);
    uint32_t crc = 0;
    if (s + kVerifySliceBytes <= e.bytes) {
      const uint4* p = reinterpret_cast<const uint4*>(e.data + s);
      uint4 v[kVerifySliceBytes / 16];
#pragma unroll
      for (int j = 0; j < static_cast<int>(kVerifySliceBytes / 16); ++j) v[j] = __ldg(p + j);
      uint32_t c = 0xffffffffu;
#pragma unroll
      for (int j = 0; j < static_cast<int>(kVerifySliceBytes / 16); ++j) {
        c = Crc8(table, c, (uint64_t{v[j].y} << 32) | v[j].x);
        c = Crc8(table, c, (uint64_t{v[j].w} << 32) | v[j].z);
      }
      crc = ~c;
    } else if (s < e.bytes) {
      uint32_t c = 0xffffffffu;
      for (uint64_t i = s; i < end; ++i) c = table[0][(c ^ e.data[i]) & 0xff] ^ (c >> 8);
      crc = ~c;
    }
    // Shift the slice's CRC to its place in the container: by the bytes after it.
    uint32_t part;
    if (unit_end - unit_start == kVerifyUnitBytes) {
      part = cm::MultModP(shift[t], crc);  // the rest of the unit; the unit's tail below
    } else {
      part = s < e.bytes ? cm::MultModP(cm::XPow8N(kX2n, e.bytes - end), crc) : 0u;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) part ^= __shfl_xor_sync(0xffffffffu, part, o);
    if ((t & 31) == 0) warp_acc[t / 32] = part;
    // The unit's own place: by the bytes after it (1 for the last unit).
    const uint32_t unit_shift = t < 32 ? WarpXPow8N(e.bytes - unit_end) : 0u;
    __syncthreads();
    if (t == 0) {
      uint32_t sum = 0;
      for (int w = 0; w < kVerifyThreads / 32; ++w) sum ^= warp_acc[w];
      sum = cm::MultModP(unit_shift, sum);
      atomicXor(&e.work[1], sum);
      __threadfence();
      if (atomicAdd(&e.work[2], 1u) == e.units - 1) {
        __threadfence();
        const uint32_t got = atomicXor(&e.work[1], 0u);
        e.work[0] = got == e.expected ? kGateOpen : kGateCorrupt;
      }
    }
    __syncthreads();  // warp_acc is reused by the next unit
  }
}

}  // namespace

int LaunchVerify(const VerifyArgs& args, int grid, void* stream) {
  if (args.entries == 0 || args.total_units == 0) return 0;
  VerifyKernel<<<grid, kVerifyThreads, 0, static_cast<cudaStream_t>(stream)>>>(args);
  return cudaGetLastError();
}

}  // namespace adaptcache::cuda::internal
