// CRC32C arithmetic shared by the host (common/crc32c.cc) and the GPU verifier
// (kernels/cuda/verify_kernels.cu), so both combine checksums by the same rule.
//
// Polynomials are reflected (bit 31 = x^0). For standard (pre- and post-inverted) CRC32C
// values, Crc32c(A || B) = MultModP(XPow8N(|B|), Crc32c(A)) ^ Crc32c(B); by induction the
// CRC of A_1 || ... || A_n is the XOR over i of MultModP(XPow8N(bytes after A_i), Crc32c(A_i)).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define AC_CRC_HD __host__ __device__
#else
#define AC_CRC_HD
#endif

namespace adaptcache::crc32c_math {

inline constexpr uint32_t kPoly = 0x82F63B78u;  // reflected Castagnoli polynomial

// a * b mod P, in a fixed 32 steps (no data-dependent loop: GPU warps stay converged).
AC_CRC_HD constexpr uint32_t MultModP(uint32_t a, uint32_t b) {
  uint32_t p = 0;
  for (int i = 0; i < 32; ++i) {
    p ^= (a & (0x80000000u >> i)) ? b : 0u;
    b = (b & 1u) ? (b >> 1) ^ kPoly : b >> 1;
  }
  return p;
}

// x^(2^k) mod P for k = 0..63.
struct X2nTable {
  uint32_t v[64];
};
constexpr X2nTable MakeX2nTable() {
  X2nTable t{};
  uint32_t p = 1u << 30;  // x^1
  t.v[0] = p;
  for (int i = 1; i < 64; ++i) t.v[i] = p = MultModP(p, p);
  return t;
}

// x^(8n) mod P.
AC_CRC_HD constexpr uint32_t XPow8N(const X2nTable& t, uint64_t n) {
  uint32_t p = 1u << 31;  // x^0
  for (unsigned k = 3; n != 0; n >>= 1, ++k) {
    if (n & 1) p = MultModP(t.v[k], p);
  }
  return p;
}

}  // namespace adaptcache::crc32c_math
