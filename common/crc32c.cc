#include "common/crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__) && defined(__SSE4_2__)
#include <nmmintrin.h>
#define ADAPTCACHE_HW_CRC 1
#endif

namespace adaptcache {
namespace {

constexpr uint32_t kPoly = 0x82F63B78u;  // reflected Castagnoli polynomial

constexpr std::array<uint32_t, 256> MakeTable() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr auto kTable = MakeTable();

uint32_t MultModP(uint32_t a, uint32_t b) {  // a*b mod P, bit 31 = x^0
  uint32_t m = 1u << 31, p = 0;
  for (;;) {
    if (a & m) {
      p ^= b;
      if ((a & (m - 1)) == 0) break;
    }
    m >>= 1;
    b = (b & 1) ? (b >> 1) ^ kPoly : b >> 1;
  }
  return p;
}

uint32_t XPow8N(uint64_t n) {  // x^(8n) mod P
  static const auto kX2n = [] {
    std::array<uint32_t, 32> t{};
    uint32_t p = 1u << 30;  // x^1
    t[0] = p;
    for (int i = 1; i < 32; ++i) t[i] = p = MultModP(p, p);
    return t;
  }();
  uint32_t p = 1u << 31;
  for (unsigned k = 3; n != 0; n >>= 1, ++k) {
    if (n & 1) p = MultModP(kX2n[k & 31], p);
  }
  return p;
}

uint32_t ExtendSerial(uint32_t crc, const unsigned char* p, size_t n) {
  uint32_t c = ~crc;
#ifdef ADAPTCACHE_HW_CRC
  // ~8 bytes per 3 cycles: fast enough next to memory bandwidth for entry checksums.
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c = static_cast<uint32_t>(_mm_crc32_u64(c, v));
    p += 8;
    n -= 8;
  }
  while (n--) c = _mm_crc32_u8(c, *p++);
#else
  while (n--) c = kTable[(c ^ *p++) & 0xFF] ^ (c >> 8);
#endif
  (void)kTable;
  return ~c;
}

}  // namespace

uint32_t Crc32cCombine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b) {
  return MultModP(XPow8N(len_b), crc_a) ^ crc_b;
}

uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
#ifdef ADAPTCACHE_HW_CRC
  // One crc32 stream is bound by the instruction's latency; three independent streams
  // over thirds of the buffer, joined by Crc32cCombine, run ~3x faster.
  if (n >= 3 * 4096) {
    const size_t third = (n / 3) & ~size_t{7};
    const unsigned char* a = p;
    const unsigned char* b = p + third;
    const unsigned char* c = p + 2 * third;
    uint64_t ca = 0xFFFFFFFFu, cb = 0xFFFFFFFFu, cc = 0xFFFFFFFFu;
    for (size_t i = 0; i < third; i += 8) {
      uint64_t va, vb, vc;
      std::memcpy(&va, a + i, 8);
      std::memcpy(&vb, b + i, 8);
      std::memcpy(&vc, c + i, 8);
      ca = _mm_crc32_u64(ca, va);
      cb = _mm_crc32_u64(cb, vb);
      cc = _mm_crc32_u64(cc, vc);
    }
    const uint32_t crc_c = ExtendSerial(~static_cast<uint32_t>(cc), c + third, n - 3 * third);
    uint32_t out = Crc32cCombine(crc, ~static_cast<uint32_t>(ca), third);
    out = Crc32cCombine(out, ~static_cast<uint32_t>(cb), third);
    return Crc32cCombine(out, crc_c, n - 2 * third);
  }
#endif
  return ExtendSerial(crc, p, n);
}

}  // namespace adaptcache
