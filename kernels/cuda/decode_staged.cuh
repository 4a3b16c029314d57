// Internal to decode_kernels.cu (included inside its anonymous namespace, after
// RowOut, StoreChunk, StoreHw, CodeToFloat, KCache and DecodeChunk): the staged-tile path of the
// rows kernel (docs/cuda.md, v4). Not a standalone header.
#pragma once

// ---- staged tiles (v4): the tile's compressed bytes go to shared memory by cp.async
// (no registers held while the loads are in flight, the whole tile in flight at once),
// then each thread decodes 16-element chunks from shared memory. ----

__device__ __forceinline__ void CpAsync16(uint8_t* dst, const uint8_t* src) {
  const uint32_t d = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d), "l"(src) : "memory");
}
__device__ __forceinline__ void CpAsync8(uint8_t* dst, const uint8_t* src) {
  const uint32_t d = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(d), "l"(src) : "memory");
}
__device__ __forceinline__ void CpAsync4(uint8_t* dst, const uint8_t* src) {
  const uint32_t d = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(d), "l"(src) : "memory");
}

// Copies n bytes at src to shared memory at dst (16-byte aligned), all threads of the
// block, with the widest cp.async src's alignment allows; a tail the width does not
// divide (and a source not 4-byte aligned) goes byte by byte.
__device__ __forceinline__ void StageRange(uint8_t* dst, const uint8_t* src, uint32_t n) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(src);
  const uint32_t tid = threadIdx.x, nt = blockDim.x;
  uint32_t done = 0;
  if (a % 16 == 0) {
    done = n & ~15u;
    for (uint32_t i = tid * 16; i < done; i += nt * 16) CpAsync16(dst + i, src + i);
  } else if (a % 8 == 0) {
    done = n & ~7u;
    for (uint32_t i = tid * 8; i < done; i += nt * 8) CpAsync8(dst + i, src + i);
  } else if (a % 4 == 0) {
    done = n & ~3u;
    for (uint32_t i = tid * 4; i < done; i += nt * 4) CpAsync4(dst + i, src + i);
  }
  for (uint32_t i = done + tid; i < n; i += nt) dst[i] = __ldg(src + i);
}

__device__ __forceinline__ uint32_t Align16(uint32_t n) { return (n + 15) & ~15u; }

// Values that may hold NaN (Hadamard sums of +-inf): the CPU's NaN rule, in software only
// when a NaN is there.
__device__ __forceinline__ void Store16MaybeNan(uint8_t* dst, uint8_t dtype, const float (&y)[16]) {
  bool nan = false;
#pragma unroll
  for (int i = 0; i < 16; ++i) nan |= y[i] != y[i];
  if (!nan || dtype == kFp32) {
    StoreHw(dst, dtype, y);
    return;
  }
  float h[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) h[i] = y[i];
  StoreChunk(dst, dtype, 8, h);
#pragma unroll
  for (int i = 0; i < 8; ++i) h[i] = y[8 + i];
  StoreChunk(dst + 8 * DTypeBytes(dtype), dtype, 8, h);
}

// The normalized Walsh-Hadamard of HadamardChunk over 16 values per lane, D/16 lanes per
// head (D a power of two, 16..256): same butterflies, same stage order as the CPU.
__device__ __forceinline__ void HadamardChunk16(float (&y)[16], uint32_t D, uint32_t ch) {
#pragma unroll
  for (uint32_t len = 1; len < 16; len <<= 1) {
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      if ((i & len) == 0) {
        const float a = y[i], b = y[i + len];
        y[i] = __fadd_rn(a, b);
        y[i + len] = __fsub_rn(a, b);
      }
    }
  }
  const uint32_t lanes = D / 16;  // 1..16
  if (lanes > 1) {
    const uint32_t lane = threadIdx.x % 32;
    const uint32_t mask = ((1u << lanes) - 1) << (lane & ~(lanes - 1));
    for (uint32_t step = 1; step < lanes; step <<= 1) {
      const bool upper = (ch & step) != 0;
#pragma unroll
      for (int i = 0; i < 16; ++i) {
        const float other = __shfl_xor_sync(mask, y[i], step, 32);
        y[i] = upper ? __fsub_rn(other, y[i]) : __fadd_rn(y[i], other);
      }
    }
  }
  const float scale = HadamardScaleOf(D);
#pragma unroll
  for (int i = 0; i < 16; ++i) y[i] = __fmul_rn(y[i], scale);
}

// Code i of a 16-code chunk of BITS-bit codes held in w (little-endian stream).
template <int BITS>
__device__ __forceinline__ uint32_t CodeOf(const uint32_t (&w)[4], uint64_t w64, int i) {
  if constexpr (BITS == 3) {
    return static_cast<uint32_t>(w64 >> (3 * i)) & 7u;
  } else {
    constexpr int kPerWord = 32 / BITS;
    return (w[i / kPerWord] >> (BITS * (i % kPerWord))) & ((1u << BITS) - 1);
  }
}

// Loads the 2*BITS code bytes of chunk ch of a staged row (row bytes W*BITS/8, W % 16 == 0,
// so the chunk is aligned to its size for 2, 4 and 8 bits and to 2 bytes for 3).
template <int BITS>
__device__ __forceinline__ void LoadCodes16(const uint8_t* row, uint32_t ch, uint32_t (&w)[4],
                                            uint64_t& w64) {
  const uint8_t* p = row + ch * (2 * BITS);
  if constexpr (BITS == 2) {
    w[0] = *reinterpret_cast<const uint32_t*>(p);
  } else if constexpr (BITS == 4) {
    const uint2 v = *reinterpret_cast<const uint2*>(p);
    w[0] = v.x;
    w[1] = v.y;
  } else if constexpr (BITS == 8) {
    const uint4 v = *reinterpret_cast<const uint4*>(p);
    w[0] = v.x;
    w[1] = v.y;
    w[2] = v.z;
    w[3] = v.w;
  } else {
    const uint16_t* h = reinterpret_cast<const uint16_t*>(p);
    w64 = uint64_t{h[0]} | (uint64_t{h[1]} << 16) | (uint64_t{h[2]} << 32);
  }
}

__device__ __forceinline__ float SmemScale(const uint8_t* base, bool fp32, uint32_t i) {
  if (fp32) return reinterpret_cast<const float*>(base)[i];
  return Fp16BitsToFloat(reinterpret_cast<const uint16_t*>(base)[i]);
}

// Quant rows [qr0, r1) of slab (kv, l) from the staged tile.
template <int BITS>
__device__ __forceinline__ void StagedQuantRows(const EntryDesc& e, uint32_t kv, uint32_t qr0,
                                                uint32_t r1, uint8_t* const* rowptr,
                                                const uint8_t* codes, const uint8_t* ss,
                                                const uint8_t* ms, uint32_t kb0, uint32_t ch,
                                                uint32_t rr, uint32_t rp) {
  const uint32_t W = e.width, c0 = ch * 16;
  const uint32_t oes = DTypeBytes(e.out_dtype);
  const bool fp32 = e.fp32_scales != 0;
  const uint32_t rowb = kv == 0 ? e.krow : e.vrow;
  if (kv == 0) {
    // K scales and mins are fp32 in shared memory (converted once per tile), read per row
    // rather than held in 32 registers.
    const float* sf = reinterpret_cast<const float*>(ss);
    const float* mf = reinterpret_cast<const float*>(ms);
    for (uint32_t r = qr0 + rr; r < r1; r += rp) {
      uint8_t* dst = rowptr[r - qr0];
      if (dst == nullptr) continue;
      const uint32_t si = ((r - e.sinks) / e.group - kb0) * W + c0;
      uint32_t w[4] = {0, 0, 0, 0};
      uint64_t w64 = 0;
      LoadCodes16<BITS>(codes + (r - qr0) * rowb, ch, w, w64);
      float y[16];
#pragma unroll
      for (int h = 0; h < 16; h += 4) {
        const float4 s4 = *reinterpret_cast<const float4*>(sf + si + h);
        const float4 m4 = *reinterpret_cast<const float4*>(mf + si + h);
        const float s[4] = {s4.x, s4.y, s4.z, s4.w}, m[4] = {m4.x, m4.y, m4.z, m4.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          y[h + i] = __fadd_rn(__fmul_rn(CodeToFloat(CodeOf<BITS>(w, w64, h + i)), s[i]), m[i]);
        }
      }
      RoundThrough(e.in_dtype, e.out_dtype, y);
      StoreHw(dst + uint64_t{c0} * oes, e.out_dtype, y);
    }
    return;
  }
  const uint32_t head = c0 / e.dim, g = (c0 % e.dim) / e.vgroup;
  const uint32_t per_row = e.heads * e.vgroups, sj = head * e.vgroups + g;
  for (uint32_t r = qr0 + rr; r < r1; r += rp) {
    uint8_t* dst = rowptr[r - qr0];
    // Rotated rows join the shuffles even when their token is not written.
    if (dst == nullptr && !e.hadamard) continue;
    const float s = SmemScale(ss, fp32, (r - qr0) * per_row + sj);
    const float m = SmemScale(ms, fp32, (r - qr0) * per_row + sj);
    uint32_t w[4] = {0, 0, 0, 0};
    uint64_t w64 = 0;
    LoadCodes16<BITS>(codes + (r - qr0) * rowb, ch, w, w64);
    float y[16];
#pragma unroll
    for (int i = 0; i < 16; ++i) y[i] = __fadd_rn(__fmul_rn(CodeToFloat(CodeOf<BITS>(w, w64, i)), s), m);
    if (e.hadamard) {
      HadamardChunk16(y, e.dim, ch % (e.dim / 16));
      RoundThrough(e.in_dtype, e.out_dtype, y);
      if (dst != nullptr) Store16MaybeNan(dst + uint64_t{c0} * oes, e.out_dtype, y);
    } else {
      RoundThrough(e.in_dtype, e.out_dtype, y);
      StoreHw(dst + uint64_t{c0} * oes, e.out_dtype, y);
    }
  }
}

// One staged tile: rows [r0, r1) of slab (kv, l) of an fp8 or quant entry (e.staged).
__device__ void StagedTile(const LaunchArgs& a, const EntryDesc& e, uint32_t kv, uint32_t l,
                           uint32_t r0, uint32_t r1, uint8_t* smem) {
  const uint32_t W = e.width, T = e.tile_rows;
  const uint64_t slab = uint64_t{kv} * e.layers + l;
  const bool quant = e.kind == Kind::kQuant;
  const uint32_t qr0 = quant ? max(r0, min(e.sinks, r1)) : r0;
  const uint32_t nq = r1 - qr0;
  const uint32_t ssz = quant && e.fp32_scales ? 4u : 2u;
  const uint32_t rowb = e.kind == Kind::kFp8 ? W : (kv == 0 ? e.krow : e.vrow);
  uint8_t** rowptr = reinterpret_cast<uint8_t**>(smem);
  uint8_t* codes = smem + Align16(8 * T);
  uint8_t* ss = codes + Align16(T * rowb);
  uint8_t* ms = nullptr;
  uint32_t kb0 = 0;
  if (nq > 0) {
    if (!quant) {
      const uint64_t row = slab * e.rows + r0;
      StageRange(codes, e.sec[0] + row * W, nq * W);
      StageRange(ss, e.sec[1] + row * 4, nq * 4);
    } else {
      const uint32_t tq0 = qr0 - e.sinks;
      StageRange(codes, e.sec[kv] + (uint64_t{l} * e.qtokens + tq0) * rowb, nq * rowb);
      uint32_t n;
      uint64_t first;
      if (kv == 0) {
        kb0 = tq0 / e.group;
        const uint32_t kb1 = (r1 - 1 - e.sinks) / e.group;
        n = (kb1 - kb0 + 1) * W * ssz;
        first = (uint64_t{l} * e.blocks + kb0) * W;
        ms = ss + Align16(n);
        StageRange(ss, e.sec[2] + first * ssz, n);
        StageRange(ms, e.sec[3] + first * ssz, n);
      } else {
        n = nq * e.heads * e.vgroups * ssz;
        first = (uint64_t{l} * e.qtokens + tq0) * e.heads * e.vgroups;
        ms = ss + Align16(n);
        StageRange(ss, e.sec[4] + first * ssz, n);
        StageRange(ms, e.sec[5] + first * ssz, n);
      }
    }
    asm volatile("cp.async.commit_group;\n" ::: "memory");
    // Output row addresses (paged: the slot lookups) once per row, while the copies fly.
    for (uint32_t i = threadIdx.x; i < nq; i += blockDim.x) {
      const uint32_t r = qr0 + i;
      rowptr[i] = RowOut(a, e, kv, l, e.kept != nullptr ? e.kept[r] : r);
    }
  }
  // Quant sink rows of this tile: the unstaged path (8-element chunks).
  if (qr0 > r0) {
    const uint32_t nch8 = (W + 7) / 8;
    for (uint32_t p = threadIdx.x; p < (qr0 - r0) * nch8; p += blockDim.x) {
      KCache kc;
      DecodeChunk(a, e, kv, l, r0 + p / nch8, p % nch8, kc);
    }
  }
  if (nq == 0) return;
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
  __syncthreads();
  if (quant && kv == 0 && ssz == 2) {  // fp16 K scales and mins -> fp32 (exact)
    const uint32_t n = ((r1 - 1 - e.sinks) / e.group - kb0 + 1) * W;
    float* sf = reinterpret_cast<float*>(ms + Align16(2 * n));
    float* mf = sf + Align16(4 * n) / 4;
    const uint16_t* sh = reinterpret_cast<const uint16_t*>(ss);
    const uint16_t* mh = reinterpret_cast<const uint16_t*>(ms);
    for (uint32_t i = threadIdx.x; i < n; i += blockDim.x) {
      sf[i] = Fp16BitsToFloat(sh[i]);
      mf[i] = Fp16BitsToFloat(mh[i]);
    }
    ss = reinterpret_cast<uint8_t*>(sf);
    ms = reinterpret_cast<uint8_t*>(mf);
    __syncthreads();
  }
  const uint32_t nch = W / 16;
  uint32_t ch0, ch_step, rr, rp;
  if (nch <= blockDim.x) {
    rp = blockDim.x / nch;
    ch0 = threadIdx.x % nch;
    rr = threadIdx.x / nch;
    ch_step = nch;
    if (rr >= rp) return;
  } else {
    rp = 1;
    ch0 = threadIdx.x;
    rr = 0;
    ch_step = blockDim.x;
  }
  const uint32_t oes = DTypeBytes(e.out_dtype);
  for (uint32_t ch = ch0; ch < nch; ch += ch_step) {
    if (!quant) {
      const float* sc = reinterpret_cast<const float*>(ss);
      for (uint32_t r = r0 + rr; r < r1; r += rp) {
        uint8_t* dst = rowptr[r - r0];
        if (dst == nullptr) continue;
        const uint4 c = *reinterpret_cast<const uint4*>(codes + (r - r0) * W + ch * 16);
        const uint32_t w[4] = {c.x, c.y, c.z, c.w};
        const float scale = sc[r - r0];
        float y[16];
#pragma unroll
        for (int i = 0; i < 8; ++i) {  // E4M3 -> fp16 -> fp32 are exact conversions
          const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(
              static_cast<__nv_fp8x2_storage_t>(w[i / 2] >> (16 * (i % 2))), __NV_E4M3);
          const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&h));
          y[2 * i] = __fmul_rn(f.x, scale);
          y[2 * i + 1] = __fmul_rn(f.y, scale);
        }
        RoundThrough(e.in_dtype, e.out_dtype, y);
        StoreHw(dst + uint64_t{ch} * 16 * oes, e.out_dtype, y);
      }
      continue;
    }
    switch (kv == 0 ? e.k_bits : e.v_bits) {
      case 2:
        StagedQuantRows<2>(e, kv, qr0, r1, rowptr, codes, ss, ms, kb0, ch, rr, rp);
        break;
      case 3:
        StagedQuantRows<3>(e, kv, qr0, r1, rowptr, codes, ss, ms, kb0, ch, rr, rp);
        break;
      case 4:
        StagedQuantRows<4>(e, kv, qr0, r1, rowptr, codes, ss, ms, kb0, ch, rr, rp);
        break;
      default:
        StagedQuantRows<8>(e, kv, qr0, r1, rowptr, codes, ss, ms, kb0, ch, rr, rp);
        break;
    }
  }
}

