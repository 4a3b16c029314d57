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
