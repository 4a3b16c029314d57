#include "kernels/bitpack.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "kernels/simd.h"

namespace adaptcache {
namespace {

TEST(BitpackTest, RoundTripsEveryWidthAndLength) {
  std::mt19937 rng(7);
  for (int bits : {2, 3, 4, 8}) {
    for (size_t n = 0; n <= 70; ++n) {
      std::vector<uint8_t> codes(n), back(n);
      for (auto& c : codes) c = static_cast<uint8_t>(rng() & ((1u << bits) - 1));
      std::vector<uint8_t> packed(PackedBytes(n, bits) + 1, 0xAB);  // guard byte
      PackBits(codes.data(), n, bits, packed.data());
      EXPECT_EQ(packed.back(), 0xAB) << "wrote past the packed row";
      UnpackBits(packed.data(), n, bits, back.data());
      EXPECT_EQ(codes, back) << "bits=" << bits << " n=" << n;
    }
  }
}

TEST(BitpackTest, LayoutIsLsbFirstLittleEndian) {
  // 3-bit codes 0..7: stream bits 000 100 010 110 001 101 011 111 (LSB first).
  std::vector<uint8_t> codes = {0, 1, 2, 3, 4, 5, 6, 7};
  std::vector<uint8_t> p(3);
  PackBits(codes.data(), 8, 3, p.data());
  const uint32_t w = 0 | 1 << 3 | 2 << 6 | 3 << 9 | 4 << 12 | 5 << 15 | 6 << 18 | 7 << 21;
  EXPECT_EQ(p, (std::vector<uint8_t>{uint8_t(w), uint8_t(w >> 8), uint8_t(w >> 16)}));
  // Tail: 3 codes of 3 bits -> 2 bytes, high bits zero.
  std::vector<uint8_t> t(2, 0xff);
  PackBits(codes.data() + 5, 3, 3, t.data());
  EXPECT_EQ(t[0], uint8_t(5 | 6 << 3 | (7 << 6)));
  EXPECT_EQ(t[1], uint8_t(7 >> 2));
  uint8_t four[1];
  const uint8_t c4[2] = {0x3, 0xC};
  PackBits(c4, 2, 4, four);
  EXPECT_EQ(four[0], 0xC3);
  uint8_t two[1];
  const uint8_t c2[4] = {1, 2, 3, 0};
  PackBits(c2, 4, 2, two);
  EXPECT_EQ(two[0], 1 | 2 << 2 | 3 << 4);
}

TEST(BitpackTest, VariantsAgree) {
  std::mt19937 rng(9);
  for (int bits : {2, 3, 4}) {
    std::vector<uint8_t> codes(1029);
    for (auto& c : codes) c = static_cast<uint8_t>(rng() & ((1u << bits) - 1));
    std::vector<uint8_t> a(PackedBytes(codes.size(), bits)), b(a.size());
    PackBits(codes.data(), codes.size(), bits, a.data());
    SetAvx2EnabledForTesting(false);
    PackBits(codes.data(), codes.size(), bits, b.data());
    SetAvx2EnabledForTesting(true);
    EXPECT_EQ(a, b);
  }
}

}  // namespace
}  // namespace adaptcache
