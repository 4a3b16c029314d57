#include "common/crc32c.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace adaptcache {
namespace {

uint32_t BitwiseCrc(const unsigned char* p, size_t n) {
  uint32_t c = ~0u;
  for (size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
  }
  return ~c;
}

TEST(Crc32cTest, KnownValues) {
  EXPECT_EQ(Crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(Crc32c("", 0), 0u);
  std::vector<unsigned char> zeros(32, 0);
  EXPECT_EQ(Crc32c(zeros.data(), 32), 0x8A9136AAu);  // RFC 3720 B.4
}

TEST(Crc32cTest, MatchesBitwiseAndExtends) {
  std::mt19937 rng(7);
  std::vector<unsigned char> buf(100'003);
  for (auto& b : buf) b = rng();
  for (size_t n : {0u, 1u, 7u, 8u, 9u, 4096u, 100'003u}) {
    EXPECT_EQ(Crc32c(buf.data(), n), BitwiseCrc(buf.data(), n)) << n;
  }
  uint32_t part = Crc32cExtend(Crc32c(buf.data(), 1000), buf.data() + 1000, buf.size() - 1000);
  EXPECT_EQ(part, Crc32c(buf.data(), buf.size()));
}

}  // namespace
}  // namespace adaptcache

namespace adaptcache {
namespace {

TEST(Crc32cTest, CombineJoinsIndependentCrcs) {
  std::mt19937 rng(11);
  std::vector<unsigned char> buf(70'000);
  for (auto& b : buf) b = rng();
  for (size_t split : {0u, 1u, 4095u, 12288u, 40'000u, 70'000u}) {
    uint32_t a = Crc32c(buf.data(), split);
    uint32_t b = Crc32c(buf.data() + split, buf.size() - split);
    EXPECT_EQ(Crc32cCombine(a, b, buf.size() - split), Crc32c(buf.data(), buf.size())) << split;
  }
}

}  // namespace
}  // namespace adaptcache

#include "common/crc32c_math.h"

namespace adaptcache {
namespace {

// The GPU verifier's rule (kernels/cuda/verify_kernels.cu): the CRC of a container is the
// XOR of each slice's CRC shifted by the bytes after that slice, with the shift split as
// the kernel splits it (within the 32 KiB unit, then the unit's own place).
TEST(Crc32cTest, ShiftedSliceCrcsXorToTheWholeCrc) {
  namespace cm = crc32c_math;
  constexpr auto x2n = cm::MakeX2nTable();
  std::mt19937 rng(13);
  std::vector<unsigned char> buf(200'000);
  for (auto& b : buf) b = rng();
  for (size_t n : {1u, 127u, 128u, 129u, 32767u, 32768u, 32769u, 65536u + 77u, 200'000u}) {
    constexpr uint64_t kSlice = 128, kUnit = 256 * kSlice;
    uint32_t acc = 0;
    for (uint64_t us = 0; us < n; us += kUnit) {
      const uint64_t ue = std::min<uint64_t>(us + kUnit, n);
      uint32_t unit = 0;
      for (uint64_t s = us; s < ue; s += kSlice) {
        const uint64_t e = std::min<uint64_t>(s + kSlice, n);
        const uint32_t c = Crc32c(buf.data() + s, e - s);
        unit ^= ue - us == kUnit ? cm::MultModP(cm::XPow8N(x2n, ue - e), c)
                                 : cm::MultModP(cm::XPow8N(x2n, n - e), c);
      }
      acc ^= cm::MultModP(cm::XPow8N(x2n, n - ue), unit);
    }
    EXPECT_EQ(acc, Crc32c(buf.data(), n)) << n;
  }
  for (int k = 1; k < 64; ++k) EXPECT_EQ(x2n.v[k], cm::MultModP(x2n.v[k - 1], x2n.v[k - 1]));
}

}  // namespace
}  // namespace adaptcache
