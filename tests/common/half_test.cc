#include "common/half.h"

#include <gtest/gtest.h>

#include <cmath>

namespace adaptcache {
namespace {

TEST(HalfTest, Fp16RoundTripsEveryValue) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    float f = Fp16ToFloat(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(Fp16ToFloat(FloatToFp16(f))));
      continue;
    }
    EXPECT_EQ(FloatToFp16(f), h) << std::hex << h;
  }
}

TEST(HalfTest, Bf16RoundTripsEveryValue) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    float f = Bf16ToFloat(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(FloatToBf16(f), h) << std::hex << h;
  }
}

TEST(HalfTest, RoundsToNearestEven) {
  EXPECT_EQ(FloatToFp16(1.0f + 1.0f / 2048), 0x3c00);  // tie -> even
  EXPECT_EQ(FloatToFp16(1.0f + 3.0f / 2048), 0x3c02);
  EXPECT_EQ(FloatToFp16(70000.f), 0x7c00);
  EXPECT_EQ(FloatToBf16(1.0f + 1.0f / 256), 0x3f80);
  EXPECT_NEAR(Fp16ToFloat(FloatToFp16(3.14159f)), 3.14159f, 2e-3);
}

}  // namespace
}  // namespace adaptcache
