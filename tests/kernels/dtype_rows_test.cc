#include "kernels/dtype_rows.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <random>
#include <vector>

#include "common/half.h"
#include "kernels/simd.h"

namespace adaptcache {
namespace {

TEST(DtypeRowsTest, HalfToFloatMatchesCommonForEveryValue) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const auto b = static_cast<uint16_t>(h);
    EXPECT_EQ(std::bit_cast<uint32_t>(Fp16BitsToFloat(b)), std::bit_cast<uint32_t>(Fp16ToFloat(b)))
        << std::hex << h;
    EXPECT_EQ(std::bit_cast<uint32_t>(Bf16BitsToFloat(b)), std::bit_cast<uint32_t>(Bf16ToFloat(b)));
  }
}

TEST(DtypeRowsTest, FloatToHalfMatchesCommonOnSweepAndEdges) {
  std::vector<uint32_t> bits;
  for (uint64_t u = 0; u < (1ull << 32); u += 65521) bits.push_back(static_cast<uint32_t>(u));
  for (uint32_t base : {0x38800000u, 0x33000000u, 0x477ff000u, 0x7f800000u, 0x47800000u,
                        0x387fc000u, 0x3f800000u}) {
    for (int d = -64; d <= 64; ++d) bits.push_back(base + d);
  }
  for (uint32_t u : bits) {
    for (uint32_t s : {0u, 0x80000000u}) {
      const float f = std::bit_cast<float>(u | s);
      EXPECT_EQ(FloatToFp16Bits(f), FloatToFp16(f)) << std::hex << (u | s);
      EXPECT_EQ(FloatToBf16Bits(f), FloatToBf16(f)) << std::hex << (u | s);
    }
  }
}

TEST(DtypeRowsTest, RowsRoundTripAndVariantsAgree) {
  std::mt19937 rng(3);
  std::normal_distribution<float> n(0.f, 100.f);
  std::vector<float> x(1003);
  for (auto& v : x) v = n(rng);
  x[5] = 1e-7f;  // fp16 subnormal
  x[6] = 7e4f;   // fp16 overflow
  for (DType d : {DType::kBF16, DType::kFP16, DType::kFP32}) {
    std::vector<std::byte> a(x.size() * DTypeSize(d)), b(a.size());
    SetAvx2EnabledForTesting(true);
    StoreRow(x.data(), x.size(), d, a.data());
    SetAvx2EnabledForTesting(false);
    StoreRow(x.data(), x.size(), d, b.data());
    SetAvx2EnabledForTesting(true);
    EXPECT_EQ(a, b);
    std::vector<float> y(x.size());
    LoadRow(a.data(), d, x.size(), y.data());
    for (size_t i = 0; i < x.size(); ++i) {
      EXPECT_EQ(std::bit_cast<uint32_t>(y[i]),
                std::bit_cast<uint32_t>(LoadAsFloat(a.data(), d, i)));
    }
  }
}

TEST(DtypeRowsTest, MaxAbsBitsFlagsNonFinite) {
  std::vector<float> x = {1.f, -3.f, 2.f};
  std::vector<std::byte> b(6);
  StoreRow(x.data(), 3, DType::kBF16, b.data());
  EXPECT_EQ(MaxAbsBits(b.data(), DType::kBF16, 3), AbsBitsOf(3.f, DType::kBF16));
  x[1] = -INFINITY;
  StoreRow(x.data(), 3, DType::kFP16, b.data());
  EXPECT_GE(MaxAbsBits(b.data(), DType::kFP16, 3), NonFiniteAbsBits(DType::kFP16));
  x[1] = NAN;
  std::vector<std::byte> f(12);
  StoreRow(x.data(), 3, DType::kFP32, f.data());
  EXPECT_GE(MaxAbsBits(f.data(), DType::kFP32, 3), NonFiniteAbsBits(DType::kFP32));
}

}  // namespace
}  // namespace adaptcache
