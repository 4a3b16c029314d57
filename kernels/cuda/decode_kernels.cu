// CUDA decode kernels for every codec family (docs/cuda.md). One block decodes one task:
//   rows kernel:     a tile of rows of one (K/V, layer) slab of a raw, fp8, quant or drop
//                    entry, or (drop, contiguous mode) a tile of token positions to zero;
//   lowrank kernel:  a tile of tokens of one head of one slab;
//   big-Hadamard:    one (layer, token, head) V vector of a quant entry with head_dim > 256.
// Threads own chunks of 8 consecutive elements of a row (16-byte stores for bf16/fp16).
// Arithmetic is the CPU decoders' (device_math.cuh), so results are bit-identical.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>

#include "kernels/cuda/decode_desc.h"
#include "kernels/cuda/device_math.cuh"
#include "kernels/cuda/gate.h"

namespace adaptcache::cuda::internal {
namespace {

using namespace dev;  // NOLINT

__device__ __forceinline__ uint32_t FindEntry(const LaunchArgs& a, uint32_t task) {
  uint32_t lo = 0, hi = a.entries - 1;
  while (lo < hi) {  // last entry with task_begin <= task
    const uint32_t mid = (lo + hi + 1) / 2;
    if (a.e[mid].task_begin <= task) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// An entry whose device gate (verify.h) is not open is left alone: its bytes failed, or
// never passed, the integrity check. Uniform per block, so the whole block returns.
__device__ __forceinline__ bool GateClosed(const EntryDesc& e) {
  return e.gate != nullptr && *reinterpret_cast<const volatile uint32_t*>(e.gate) != ::adaptcache::cuda::kGateOpen;
}

// Output row of token `t` of slab (kv, l), or null when the token is not written.
__device__ __forceinline__ uint8_t* RowOut(const LaunchArgs& a, const EntryDesc& e, uint32_t kv,
                                           uint32_t l, uint32_t t) {
  const uint32_t es = DTypeBytes(e.out_dtype);
  if (!a.paged) {
    return e.out + ((uint64_t{kv} * e.layers + l) * e.tokens + t) * uint64_t{e.width} * es;
  }
  const int64_t slot = e.slots[t];
  if (slot < 0) return nullptr;
  if (static_cast<uint64_t>(slot) >= a.num_slots) {
    if (a.bad_slots != nullptr) atomicAdd(a.bad_slots, 1u);
    return nullptr;
  }
  uint8_t* base = kv == 0 ? a.k_layers[l] : a.v_layers[l];
  const uint64_t s = static_cast<uint64_t>(slot);
  const uint64_t elem = (s / a.block_size) * a.block_stride + (s % a.block_size) * e.width;
  return base + elem * es;
}

// Stores n (<= 8) values of a chunk; a full chunk goes out in 16/32-byte stores.
__device__ __forceinline__ void StoreChunk(uint8_t* dst, uint8_t dtype, int n, const float (&y)[8]) {
  if (n == 8) {
    if (dtype == kFp32) {
      uint8_t b[32];
#pragma unroll
      for (int i = 0; i < 8; ++i) memcpy(b + 4 * i, &y[i], 4);
      StoreBytes<32>(dst, b);
    } else {
      uint8_t b[16];
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const uint16_t h = static_cast<uint16_t>(dtype == kBf16 ? FloatToBf16Bits(y[i])
                                                                : FloatToFp16Bits(y[i]));
        memcpy(b + 2 * i, &h, 2);
      }
      StoreBytes<16>(dst, b);
    }
    return;
  }
  for (int i = 0; i < n; ++i) StoreElem(dst, dtype, i, y[i]);
}

// Exact float of a small code: 2^23 + q built from bits, minus 2^23 (no I2F, which is a
// quarter-rate instruction).
__device__ __forceinline__ float CodeToFloat(uint32_t q) {
  return __fsub_rn(__uint_as_float(0x4b000000u | q), 8388608.0f);
}

// N (even) values that cannot be NaN (validated fp8/quant without rotation: finite or
// +-inf): bf16/fp16 by the hardware's packed RNE conversions, which agree with the CPU's
// bit manipulation on every non-NaN input; fp32 as is.
template <int N>
__device__ __forceinline__ void StoreHw(uint8_t* dst, uint8_t dtype, const float (&y)[N]) {
  static_assert(N % 2 == 0);
  if (dtype == kFp32) {
    // Same bytes either way; each N keeps the store form the kernels were measured with
    // (another form changes the generated code of the whole rows kernel).
    if constexpr (N == 8) {
      StoreChunk(dst, dtype, 8, y);
    } else {
      uint8_t b[4 * N];
      memcpy(b, y, 4 * N);
      StoreBytes<4 * N>(dst, b);
    }
    return;
  }
  uint32_t p[N / 2];
#pragma unroll
  for (int i = 0; i < N / 2; ++i) {
    if (dtype == kBf16) {
      const __nv_bfloat162 h = __floats2bfloat162_rn(y[2 * i], y[2 * i + 1]);
      memcpy(&p[i], &h, 4);
    } else {
      const __half2 h = __floats2half2_rn(y[2 * i], y[2 * i + 1]);
      memcpy(&p[i], &h, 4);
    }
  }
  uint8_t b[2 * N];
  memcpy(b, p, 2 * N);
  StoreBytes<2 * N>(dst, b);
}

// Copies (same dtype: bit exact) or converts n elements of a row chunk.
__device__ __forceinline__ void CopyChunk(const uint8_t* src, uint8_t in_dtype, uint8_t* dst,
                                          uint8_t out_dtype, int n) {
  if (in_dtype == out_dtype && n == 8) {
    if (in_dtype == kFp32) {
      uint8_t b[32];
      LoadBytes<32>(src, b);
      StoreBytes<32>(dst, b);
    } else {
      uint8_t b[16];
      LoadBytes<16>(src, b);
      StoreBytes<16>(dst, b);
    }
    return;
  }
  if (in_dtype == out_dtype) {
    const uint32_t es = DTypeBytes(in_dtype);
    for (uint32_t i = 0; i < n * es; ++i) dst[i] = src[i];
    return;
  }
  float y[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) y[i] = i < n ? LoadElem(src, in_dtype, i) : 0.f;
  StoreChunk(dst, out_dtype, n, y);
}

// Reads `nbytes` (<= 8) little-endian bytes as an integer; a full chunk of 8 codes of b
// bits is exactly b bytes (byte aligned, docs/format.md §4).
__device__ __forceinline__ uint64_t LoadPacked(const uint8_t* p, uint32_t nbytes) {
  uint64_t w = 0;
  switch (nbytes) {
    case 2: {
      uint8_t b[2];
      LoadBytes<2>(p, b);
      w = b[0] | (uint32_t{b[1]} << 8);
      break;
    }
    case 4: {
      uint8_t b[4];
      LoadBytes<4>(p, b);
      memcpy(&w, b, 4);
      break;
    }
    case 8: {
      uint8_t b[8];
      LoadBytes<8>(p, b);
      memcpy(&w, b, 8);
      break;
    }
    default:
      for (uint32_t i = 0; i < nbytes; ++i) w |= uint64_t{__ldg(p + i)} << (8 * i);
  }
  return w;
}

// Loads scale-format values [i, i + n) (fp16 or fp32) as fp32.
__device__ __forceinline__ float LoadScale(const uint8_t* base, bool fp32, uint64_t i) {
  if (fp32) return __uint_as_float(__ldg(reinterpret_cast<const uint32_t*>(base) + i));
  return Fp16BitsToFloat(__ldg(reinterpret_cast<const unsigned short*>(base) + i));
}

__device__ __forceinline__ void LoadScales8(const uint8_t* base, bool fp32, uint64_t i, int n,
                                            float (&v)[8]) {
  if (n == 8) {
    if (fp32) {
      uint8_t b[32];
      LoadBytes<32>(base + 4 * i, b);
#pragma unroll
      for (int j = 0; j < 8; ++j) memcpy(&v[j], b + 4 * j, 4);
    } else {
      uint8_t b[16];
      LoadBytes<16>(base + 2 * i, b);
#pragma unroll
      for (int j = 0; j < 8; ++j) v[j] = Fp16BitsToFloat(b[2 * j] | (uint32_t{b[2 * j + 1]} << 8));
    }
    return;
  }
#pragma unroll
  for (int j = 0; j < 8; ++j) v[j] = j < n ? LoadScale(base, fp32, i + j) : 0.f;
}

// In-place normalized Walsh-Hadamard over heads of D (power of two, <= 256) values spread
// over D/8 consecutive lanes, 8 values per lane; the same butterflies in the same stage
// order as kernels/hadamard.cc, so the bits match.
__device__ __forceinline__ void HadamardChunk(float (&y)[8], uint32_t D, uint32_t ch) {
  for (uint32_t len = 1; len < 8 && len < D; len <<= 1) {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      if ((i & len) == 0) {
        const float a = y[i], b = y[i + len];
        y[i] = __fadd_rn(a, b);
        y[i + len] = __fsub_rn(a, b);
      }
    }
  }
  if (D > 8) {
    const uint32_t lanes = D / 8;  // 2..32, a power of two dividing 32
    const uint32_t lane = threadIdx.x % 32;
    const uint32_t mask =
        lanes == 32 ? 0xffffffffu : (((1u << lanes) - 1) << (lane & ~(lanes - 1)));
    for (uint32_t step = 1; step < lanes; step <<= 1) {
      const bool upper = (ch & step) != 0;
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const float other = __shfl_xor_sync(mask, y[i], step, 32);
        y[i] = upper ? __fsub_rn(other, y[i]) : __fadd_rn(y[i], other);
      }
    }
  }
  const float scale = HadamardScaleOf(D);
#pragma unroll
  for (int i = 0; i < 8; ++i) y[i] = __fmul_rn(y[i], scale);
}

struct KCache {  // a thread's K scales/mins for its chunk, reused across rows of a block
  int64_t block = -1;
  float s[8], m[8];
};

// Decodes chunk `ch` (elements [8ch, 8ch+n)) of compact row r of slab (kv, l).
__device__ __forceinline__ void DecodeChunk(const LaunchArgs& a, const EntryDesc& e, uint32_t kv,
                                            uint32_t l, uint32_t r, uint32_t ch, KCache& kc) {
  const uint32_t W = e.width;
  const uint32_t c0 = ch * 8;
  const int n = static_cast<int>(min(8u, W - c0));
  const uint32_t t = e.kept != nullptr ? e.kept[r] : r;
  const uint64_t slab = uint64_t{kv} * e.layers + l;
  const bool vrot = e.kind == Kind::kQuant && kv == 1 && e.hadamard && r >= e.sinks;
  if (vrot && e.big_hadamard) return;  // the shared-memory kernel writes these rows
  uint8_t* dst = RowOut(a, e, kv, l, t);
  // Rotated rows must join the shuffles even when their token is not written.
  if (dst == nullptr && !vrot) return;
  const uint32_t oes = DTypeBytes(e.out_dtype);
  const uint32_t ies = DTypeBytes(e.in_dtype);
  float y[8];
  switch (e.kind) {
    case Kind::kRaw: {
      const uint8_t* src = e.sec[0] + ((slab * e.rows + r) * W + c0) * ies;
      CopyChunk(src, e.in_dtype, dst + uint64_t{c0} * oes, e.out_dtype, n);
      return;
    }
    case Kind::kFp8: {
      const uint64_t row = slab * e.rows + r;
      const float scale = __uint_as_float(__ldg(reinterpret_cast<const uint32_t*>(e.sec[1]) + row));
      const uint8_t* codes = e.sec[0] + row * W + c0;
      if (n == 8) {
        uint8_t b[8];
        LoadBytes<8>(codes, b);
#pragma unroll
        for (int i = 0; i < 8; ++i) y[i] = __fmul_rn(E4M3ToFloat(b[i]), scale);
      } else {
#pragma unroll
        for (int i = 0; i < 8; ++i) y[i] = i < n ? __fmul_rn(E4M3ToFloat(__ldg(codes + i)), scale) : 0.f;
      }
      break;
    }
    case Kind::kQuant: {
      if (r < e.sinks) {
        const uint8_t* src = e.sec[6] + ((slab * e.sinks + r) * W + c0) * ies;
        CopyChunk(src, e.in_dtype, dst + uint64_t{c0} * oes, e.out_dtype, n);
        return;
      }
      const uint32_t tq = r - e.sinks;
      const uint32_t bits = kv == 0 ? e.k_bits : e.v_bits;
      const uint64_t rowb = kv == 0 ? e.krow : e.vrow;
      const uint8_t* codes = e.sec[kv] + (uint64_t{l} * e.qtokens + tq) * rowb + uint64_t{ch} * bits;
      const uint32_t nbytes = n == 8 ? bits : (n * bits + 7) / 8;
      const uint64_t w = LoadPacked(codes, nbytes);
      const uint32_t mask = (1u << bits) - 1;
      const bool fp32 = e.fp32_scales != 0;
      if (kv == 0) {
        const int64_t b = tq / e.group;
        if (b != kc.block) {
          const uint64_t si = (uint64_t{l} * e.blocks + b) * W + c0;
          LoadScales8(e.sec[2], fp32, si, n, kc.s);
          LoadScales8(e.sec[3], fp32, si, n, kc.m);
          kc.block = b;
        }
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          const float q = static_cast<float>(static_cast<uint32_t>(w >> (i * bits)) & mask);
          y[i] = __fadd_rn(__fmul_rn(q, kc.s[i]), kc.m[i]);
        }
      } else {
        const uint64_t base = (uint64_t{l} * e.qtokens + tq) * e.heads * e.vgroups;
        if (e.dim % 8 == 0) {  // a chunk lies inside one group
          const uint32_t head = c0 / e.dim, g = (c0 % e.dim) / e.vgroup;
          const float s = LoadScale(e.sec[4], fp32, base + head * e.vgroups + g);
          const float m = LoadScale(e.sec[5], fp32, base + head * e.vgroups + g);
#pragma unroll
          for (int i = 0; i < 8; ++i) {
            const float q = static_cast<float>(static_cast<uint32_t>(w >> (i * bits)) & mask);
            y[i] = __fadd_rn(__fmul_rn(q, s), m);
          }
        } else {
#pragma unroll
          for (int i = 0; i < 8; ++i) {
            const uint32_t c = min(c0 + i, W - 1);
            const uint32_t head = c / e.dim, g = (c % e.dim) / e.vgroup;
            const float s = LoadScale(e.sec[4], fp32, base + head * e.vgroups + g);
            const float m = LoadScale(e.sec[5], fp32, base + head * e.vgroups + g);
            const float q = static_cast<float>(static_cast<uint32_t>(w >> (i * bits)) & mask);
            y[i] = __fadd_rn(__fmul_rn(q, s), m);
          }
        }
        if (e.hadamard) HadamardChunk(y, e.dim, ch % (e.dim >= 8 ? e.dim / 8 : 1));
      }
      break;
    }
    default:
      return;
  }
  RoundThrough(e.in_dtype, e.out_dtype, y);
  if (dst != nullptr) StoreChunk(dst + uint64_t{c0} * oes, e.out_dtype, n, y);
}

// The hot path: full chunks of raw (2-byte dtypes), fp8 and quant rows (head_dim a
// multiple of 8, rotation in registers). Loads of kRowBatch rows are issued before any
// of them is used, so each thread keeps several independent loads in flight.
constexpr int kRowBatch = 2;

__device__ __forceinline__ bool FastPathEntry(const EntryDesc& e) {
  switch (e.kind) {
    case Kind::kRaw:
      return e.in_dtype == e.out_dtype && e.in_dtype != kFp32;
    case Kind::kFp8:
      return true;
    case Kind::kQuant:
      return e.dim % 8 == 0 && !e.big_hadamard;
    default:
      return false;
  }
}

__device__ __forceinline__ void FastRows(const LaunchArgs& a, const EntryDesc& e, uint32_t kv,
                                         uint32_t l, uint32_t r, uint32_t r1, uint32_t rp,
                                         uint32_t ch, KCache& kc) {
  const uint32_t W = e.width, c0 = ch * 8;
  const uint64_t slab = uint64_t{kv} * e.layers + l;
  const uint32_t oes = DTypeBytes(e.out_dtype);
  const bool fp32 = e.fp32_scales != 0;
  const uint32_t bits = kv == 0 ? e.k_bits : e.v_bits;
  const uint64_t rowb = kv == 0 ? e.krow : e.vrow;
  const uint32_t mask = (1u << bits) - 1;
  const uint32_t head = c0 / max(e.dim, 1u), g = (c0 % max(e.dim, 1u)) / max(e.vgroup, 1u);
  for (; r < r1; r += kRowBatch * rp) {
    uint8_t* dst[kRowBatch];
    uint64_t w[kRowBatch];
    uint4 raw[kRowBatch];
    float s[kRowBatch], m[kRowBatch];
#pragma unroll
    for (int b = 0; b < kRowBatch; ++b) {
      const uint32_t row = r + b * rp;
      dst[b] = nullptr;
      w[b] = 0;
      s[b] = m[b] = 0.f;
      if (row >= r1) continue;
      const uint32_t t = e.kept != nullptr ? e.kept[row] : row;
      dst[b] = RowOut(a, e, kv, l, t);
      if (e.kind == Kind::kRaw) {
        uint8_t buf[16];
        LoadBytes<16>(e.sec[0] + ((slab * e.rows + row) * W + c0) * 2, buf);
        memcpy(&raw[b], buf, 16);
      } else if (e.kind == Kind::kFp8) {
        const uint64_t rr = slab * e.rows + row;
        uint8_t buf[8];
        LoadBytes<8>(e.sec[0] + rr * W + c0, buf);
        memcpy(&w[b], buf, 8);
        s[b] = __uint_as_float(__ldg(reinterpret_cast<const uint32_t*>(e.sec[1]) + rr));
      } else {
        const uint32_t tq = row - e.sinks;
        w[b] = LoadPacked(e.sec[kv] + (uint64_t{l} * e.qtokens + tq) * rowb + uint64_t{ch} * bits, bits);
        if (kv == 1) {
          const uint64_t si = (uint64_t{l} * e.qtokens + tq) * e.heads * e.vgroups + head * e.vgroups + g;
          s[b] = LoadScale(e.sec[4], fp32, si);
          m[b] = LoadScale(e.sec[5], fp32, si);
        }
      }
    }
#pragma unroll
    for (int b = 0; b < kRowBatch; ++b) {
      const uint32_t row = r + b * rp;
      if (row >= r1) continue;
      uint8_t* out = dst[b] != nullptr ? dst[b] + uint64_t{c0} * oes : nullptr;
      if (e.kind == Kind::kRaw) {
        if (out != nullptr) {
          uint8_t buf[16];
          memcpy(buf, &raw[b], 16);
          StoreBytes<16>(out, buf);
        }
        continue;
      }
      float y[8];
      if (e.kind == Kind::kFp8) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {  // E4M3 -> fp16 -> fp32 are exact conversions
          const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(
              static_cast<__nv_fp8x2_storage_t>(w[b] >> (16 * i)), __NV_E4M3);
          const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&h));
          y[2 * i] = __fmul_rn(f.x, s[b]);
          y[2 * i + 1] = __fmul_rn(f.y, s[b]);
        }
      } else if (kv == 0) {
        const int64_t blk = (row - e.sinks) / e.group;
        if (blk != kc.block) {
          const uint64_t si = (uint64_t{l} * e.blocks + blk) * W + c0;
          LoadScales8(e.sec[2], fp32, si, 8, kc.s);
          LoadScales8(e.sec[3], fp32, si, 8, kc.m);
          kc.block = blk;
        }
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          const float q = CodeToFloat(static_cast<uint32_t>(w[b] >> (i * bits)) & mask);
          y[i] = __fadd_rn(__fmul_rn(q, kc.s[i]), kc.m[i]);
        }
      } else {
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          const float q = CodeToFloat(static_cast<uint32_t>(w[b] >> (i * bits)) & mask);
          y[i] = __fadd_rn(__fmul_rn(q, s[b]), m[b]);
        }
        if (e.hadamard) {  // sums of +-inf can make NaN: keep the CPU's NaN rule
          HadamardChunk(y, e.dim, ch % (e.dim / 8));
          RoundThrough(e.in_dtype, e.out_dtype, y);
          if (out != nullptr) StoreChunk(out, e.out_dtype, 8, y);
          continue;
        }
      }
      RoundThrough(e.in_dtype, e.out_dtype, y);
      if (out != nullptr) StoreHw(out, e.out_dtype, y);
    }
  }
}

#include "kernels/cuda/decode_staged.cuh"  // NOLINT(build/include): needs the helpers above

// Drop, contiguous mode: writes +0.0 over the rows of tokens not in the kept list.
__device__ void ZeroTile(const LaunchArgs& a, const EntryDesc& e, uint32_t local) {
  const uint32_t slab = local / e.zero_tiles, tile = local % e.zero_tiles;
  const uint32_t kv = slab / e.layers, l = slab % e.layers;
  const uint32_t t0 = tile * e.tile_rows, t1 = min(t0 + e.tile_rows, e.tokens);
  const uint32_t nch = (e.width + 7) / 8;
  const uint32_t oes = DTypeBytes(e.out_dtype);
  for (uint32_t t = t0; t < t1; ++t) {
    uint32_t lo = 0, hi = e.rows;  // binary search in the sorted kept list
    while (lo < hi) {
      const uint32_t mid = (lo + hi) / 2;
      if (e.kept[mid] < t) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    if (lo < e.rows && e.kept[lo] == t) continue;
    uint8_t* dst = RowOut(a, e, kv, l, t);
    const float z[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (uint32_t ch = threadIdx.x; ch < nch; ch += blockDim.x) {
      StoreChunk(dst + uint64_t{ch} * 8 * oes, e.out_dtype, static_cast<int>(min(8u, e.width - ch * 8)), z);
    }
  }
}

template <int kMinBlocks>
__global__ void __launch_bounds__(kRowsThreads, kMinBlocks) RowsKernel(const __grid_constant__ LaunchArgs a) {
  extern __shared__ __align__(16) uint8_t rows_smem[];
  const uint32_t task = blockIdx.x;
  const EntryDesc& e = a.e[FindEntry(a, task)];
  if (GateClosed(e)) return;
  const uint32_t local = task - e.task_begin;
  const uint32_t decode_tasks = 2 * e.layers * e.tiles;
  if (local >= decode_tasks) {
    ZeroTile(a, e, local - decode_tasks);
    return;
  }
  const uint32_t slab = local / e.tiles, tile = local % e.tiles;
  const uint32_t kv = slab / e.layers, l = slab % e.layers;
  const uint32_t r0 = tile * e.tile_rows, r1 = min(r0 + e.tile_rows, e.rows);
  if (e.staged) {
    StagedTile(a, e, kv, l, r0, r1, rows_smem);
    return;
  }
  const uint32_t nch = (e.width + 7) / 8;
  uint32_t ch, ch_step, rr, rp;
  if (nch <= blockDim.x) {
    rp = blockDim.x / nch;
    ch = threadIdx.x % nch;
    rr = threadIdx.x / nch;
    ch_step = nch;
    if (rr >= rp) return;
  } else {
    rp = 1;
    ch = threadIdx.x;
    rr = 0;
    ch_step = blockDim.x;
  }
  const bool fast = FastPathEntry(e);
  for (; ch < nch; ch += ch_step) {
    KCache kc;
    uint32_t r = r0 + rr;
    if (fast && ch * 8 + 8 <= e.width) {
      if (e.kind == Kind::kQuant) {
        for (; r < r1 && r < e.sinks; r += rp) DecodeChunk(a, e, kv, l, r, ch, kc);
      }
      FastRows(a, e, kv, l, r, r1, rp, ch, kc);
    } else {
      for (; r < r1; r += rp) DecodeChunk(a, e, kv, l, r, ch, kc);
    }
  }
}

// ---- quant V rotation for head_dim > 256: one block per (layer, token, head) ----

__global__ void __launch_bounds__(kHadamardThreads)
    BigHadamardKernel(const __grid_constant__ LaunchArgs a) {
  extern __shared__ float x[];  // [dim]
  const uint32_t task = blockIdx.x;
  const EntryDesc& e = a.e[FindEntry(a, task)];
  if (GateClosed(e)) return;
  uint32_t local = task - e.task_begin;
  const uint32_t qrows = e.rows - e.sinks;
  const uint32_t head = local % e.heads;
  local /= e.heads;
  const uint32_t tq = local % qrows;
  const uint32_t l = local / qrows;
  const uint32_t r = tq + e.sinks;
  const uint32_t D = e.dim;
  const bool fp32 = e.fp32_scales != 0;
  const uint32_t bits = e.v_bits, mask = (1u << bits) - 1;
  const uint8_t* codes = e.sec[1] + (uint64_t{l} * e.qtokens + tq) * e.vrow;
  const uint64_t sbase = (uint64_t{l} * e.qtokens + tq) * e.heads * e.vgroups + uint64_t{head} * e.vgroups;
  for (uint32_t d = threadIdx.x; d < D; d += blockDim.x) {
    const uint64_t bit = (uint64_t{head} * D + d) * bits;
    uint32_t v = codes[bit / 8];
    if ((bit % 8) + bits > 8) v |= uint32_t{codes[bit / 8 + 1]} << 8;
    const float q = static_cast<float>((v >> (bit % 8)) & mask);
    const uint32_t g = d / e.vgroup;
    x[d] = __fadd_rn(__fmul_rn(q, LoadScale(e.sec[4], fp32, sbase + g)),
                     LoadScale(e.sec[5], fp32, sbase + g));
  }
  __syncthreads();
  for (uint32_t len = 1; len < D; len <<= 1) {
    for (uint32_t p = threadIdx.x; p < D / 2; p += blockDim.x) {
      const uint32_t i = (p / len) * 2 * len + (p % len);
      const float u = x[i], w = x[i + len];
      x[i] = __fadd_rn(u, w);
      x[i + len] = __fsub_rn(u, w);
    }
    __syncthreads();
  }
  const uint32_t t = e.kept != nullptr ? e.kept[r] : r;
  uint8_t* dst = RowOut(a, e, 1, l, t);
  if (dst == nullptr) return;
  const float scale = HadamardScaleOf(D);
  for (uint32_t d = threadIdx.x; d < D; d += blockDim.x) {
    StoreElem(dst, e.out_dtype, uint64_t{head} * D + d, RoundThrough(e.in_dtype, e.out_dtype, __fmul_rn(x[d], scale)));
  }
}

// ---- lowrank: one block per (slab, head, token tile) ----

__device__ __forceinline__ uint32_t U8(const uint8_t* p) { return __ldg(p); }
__device__ __forceinline__ uint32_t U16(const uint8_t* p) { return U8(p) | (U8(p + 1) << 8); }
__device__ __forceinline__ uint32_t U32(const uint8_t* p) { return U16(p) | (U16(p + 2) << 16); }

__global__ void __launch_bounds__(kLowrankThreads)
    LowrankKernel(const __grid_constant__ LaunchArgs a) {
  extern __shared__ __align__(16) uint8_t smem[];
  __shared__ const uint8_t* g_pos;
  __shared__ uint32_t g_rank, g_row_bits, g_heads_per_group;
  const uint32_t task = blockIdx.x;
  const EntryDesc& e = a.e[FindEntry(a, task)];
  if (GateClosed(e)) return;
  uint32_t local = task - e.task_begin;
  const uint32_t tile = local % e.tiles;
  local /= e.tiles;
  const uint32_t h = local % e.heads;
  const uint32_t slab = local / e.heads;
  const uint32_t kv = slab / e.layers, l = slab % e.layers;
  const uint32_t T = e.tokens, H = e.heads, D = e.dim;
  const uint8_t* rec = e.sec[1] + U32(e.sec[0] + 8ull * slab);  // validated on the host
  const uint32_t kmax = e.lr_max_rank;
  // Shared memory: [kmax] prefix bits (u32), [kmax] steps, [kmax] widths (u32),
  // [D] means, [tile_rows][kmax] coefficients, then [kmax][D] basis when staged.
  uint32_t* prefix = reinterpret_cast<uint32_t*>(smem);
  float* steps = reinterpret_cast<float*>(prefix + kmax);
  uint32_t* widths = reinterpret_cast<uint32_t*>(steps + kmax);
  float* means = reinterpret_cast<float*>(widths + kmax);
  float* coef = means + D;
  float* basis = coef + size_t{e.tile_rows} * kmax;

  // Warp 0 walks the slab record to this head's group (docs/lowrank.md).
  if (threadIdx.x < 32) {
    const uint32_t lane = threadIdx.x;
    const uint32_t G = U16(rec);
    const uint32_t g = h / G;
    const uint8_t* pos = rec + 4 + 2ull * H * D;
    const uint64_t rows = uint64_t{T} * G;
    for (uint32_t gg = 0;; ++gg) {
      const uint32_t k = U16(pos);
      const uint8_t* bits = pos + 4;
      uint32_t carry = 0;
      for (uint32_t i0 = 0; i0 < k; i0 += 32) {
        const uint32_t i = i0 + lane;
        const uint32_t b = i < k ? U8(bits + i) : 0;
        uint32_t incl = b;
        for (uint32_t o = 1; o < 32; o <<= 1) {
          const uint32_t v = __shfl_up_sync(0xffffffffu, incl, o);
          if (lane >= o) incl += v;
        }
        if (gg == g && i < k) {
          prefix[i] = carry + incl - b;
          widths[i] = b;
          steps[i] = __uint_as_float(U32(pos + 4 + k + 4ull * i));
        }
        carry += __shfl_sync(0xffffffffu, incl, 31);
      }
      if (gg == g) {
        if (lane == 0) {
          g_pos = pos;
          g_rank = k;
          g_row_bits = carry;
          g_heads_per_group = G;
        }
        break;
      }
      pos += 4 + uint64_t{k} * (5 + 2ull * D) + (rows * carry + 7) / 8;
    }
  }
  for (uint32_t d = threadIdx.x; d < D; d += blockDim.x) {
    means[d] = Fp16BitsToFloat(U16(rec + 4 + 2 * (uint64_t{h} * D + d)));
  }
  __syncthreads();
  const uint32_t k = g_rank, G = g_heads_per_group, row_bits = g_row_bits;
  const uint8_t* basis_g = g_pos + 4 + 5ull * k;
  const uint8_t* codes = basis_g + 2ull * k * D;
  const bool staged = e.lr_stage_basis != 0;
  if (staged) {
    for (uint32_t i = threadIdx.x; i < k * D; i += blockDim.x) {
      basis[i] = Fp16BitsToFloat(U16(basis_g + 2ull * i));
    }
  }
  const uint32_t t0 = tile * e.tile_rows, nt = min(e.tile_rows, T - t0);
  const uint32_t j = h % G;
  for (uint32_t p = threadIdx.x; p < nt * k; p += blockDim.x) {
    const uint32_t tt = p / k, i = p % k;
    const uint64_t bit = (uint64_t{t0 + tt} * G + j) * row_bits + prefix[i];
    const uint32_t b = widths[i];
    uint32_t v = 0;
    for (uint64_t by = bit / 8; by <= (bit + b - 1) / 8; ++by) {
      v |= U8(codes + by) << (8 * (by - bit / 8));
    }
    const uint32_t code = (v >> (bit % 8)) & ((1u << b) - 1);
    const float top = static_cast<float>((1u << b) - 1);
    coef[tt * kmax + i] =
        __fmul_rn(__fsub_rn(static_cast<float>(code), __fmul_rn(0.5f, top)), steps[i]);
  }
  __syncthreads();
  const float out_max = e.in_dtype == kFp16 ? 65504.0f : __int_as_float(0x7f800000);
  for (uint32_t p = threadIdx.x; p < nt * D; p += blockDim.x) {
    const uint32_t tt = p / D, d = p % D;
    uint8_t* dst = RowOut(a, e, kv, l, t0 + tt);
    if (dst == nullptr) continue;
    float y = means[d];
    const float* c = coef + tt * kmax;
    if (staged) {
      for (uint32_t i = 0; i < k; ++i) y = __fadd_rn(y, __fmul_rn(c[i], basis[i * D + d]));
    } else {
      for (uint32_t i = 0; i < k; ++i) {
        y = __fadd_rn(y, __fmul_rn(c[i], Fp16BitsToFloat(U16(basis_g + 2 * (uint64_t{i} * D + d)))));
      }
    }
    y = y < -out_max ? -out_max : (out_max < y ? out_max : y);  // std::clamp
    StoreElem(dst, e.out_dtype, uint64_t{h} * D + d, RoundThrough(e.in_dtype, e.out_dtype, y));
  }
}

}  // namespace

int LaunchDecode(KernelKind kind, const LaunchArgs& args, void* stream) {
  if (args.entries == 0 || args.total_tasks == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  switch (kind) {
    case KernelKind::kRows: {
      // Register cap by what the launch decodes (measured on an H100, docs/cuda.md):
      // staged fp8 runs best at 2 blocks per SM (no spills), everything else at 4.
      // AC_CUDA_ROWS_MIN_BLOCKS=2, 3 or 4 forces one (benchmarking only).
      static const int forced = [] {
        const char* v = std::getenv("AC_CUDA_ROWS_MIN_BLOCKS");
        return v == nullptr ? 0 : (v[0] == '2' ? 2 : (v[0] == '3' ? 3 : (v[0] == '4' ? 4 : 0)));
      }();
      bool all_fp8 = true;
      for (uint32_t i = 0; i < args.entries; ++i) {
        all_fp8 = all_fp8 && args.e[i].kind == Kind::kFp8 && args.e[i].staged;
      }
      const int min_blocks = forced != 0 ? forced : (all_fp8 ? 2 : 4);
      const void* fn = min_blocks == 2   ? reinterpret_cast<const void*>(&RowsKernel<2>)
                       : min_blocks == 4 ? reinterpret_cast<const void*>(&RowsKernel<4>)
                                         : reinterpret_cast<const void*>(&RowsKernel<3>);
      const size_t smem = args.smem;
      if (smem > 48 * 1024) {
        cudaError_t err = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               static_cast<int>(smem));
        if (err != cudaSuccess) return err;
      }
      if (min_blocks == 2) {
        RowsKernel<2><<<args.total_tasks, kRowsThreads, smem, s>>>(args);
      } else if (min_blocks == 4) {
        RowsKernel<4><<<args.total_tasks, kRowsThreads, smem, s>>>(args);
      } else {
        RowsKernel<3><<<args.total_tasks, kRowsThreads, smem, s>>>(args);
      }
      break;
    }
    case KernelKind::kBigHadamard: {
      uint32_t dim = 0;
      for (uint32_t i = 0; i < args.entries; ++i) dim = max(dim, args.e[i].dim);
      const size_t smem = size_t{dim} * 4;
      if (smem > 48 * 1024) {
        cudaError_t err = cudaFuncSetAttribute(BigHadamardKernel,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               static_cast<int>(smem));
        if (err != cudaSuccess) return err;
      }
      BigHadamardKernel<<<args.total_tasks, kHadamardThreads, smem, s>>>(args);
      break;
    }
    case KernelKind::kLowrank: {
      const size_t smem = args.smem;
      if (smem > 48 * 1024) {
        cudaError_t err = cudaFuncSetAttribute(LowrankKernel,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               static_cast<int>(smem));
        if (err != cudaSuccess) return err;
      }
      LowrankKernel<<<args.total_tasks, kLowrankThreads, smem, s>>>(args);
      break;
    }
  }
  return cudaGetLastError();
}

}  // namespace adaptcache::cuda::internal
