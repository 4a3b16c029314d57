#include "kernels/fp8.h"

#include <gtest/gtest.h>

#include <cmath>

#include "kernels/codec.h"
#include "tests/kernels/kv_test_util.h"

namespace adaptcache {
namespace {

TEST(Fp8Test, E4M3ValuesFollowTheOcpDefinition) {
  EXPECT_EQ(E4M3ToFloat(0x00), 0.f);
  EXPECT_EQ(E4M3ToFloat(0x01), std::ldexp(1.f, -9));  // smallest subnormal
  EXPECT_EQ(E4M3ToFloat(0x07), 7 * std::ldexp(1.f, -9));
  EXPECT_EQ(E4M3ToFloat(0x08), std::ldexp(1.f, -6));  // smallest normal
  EXPECT_EQ(E4M3ToFloat(0x38), 1.f);
  EXPECT_EQ(E4M3ToFloat(0x7e), 448.f);
  EXPECT_EQ(E4M3ToFloat(0xfe), -448.f);
  EXPECT_TRUE(std::isnan(E4M3ToFloat(0x7f)));
  EXPECT_TRUE(std::isnan(E4M3ToFloat(0xff)));
}

TEST(Fp8Test, EveryCodeRoundTripsAndRoundingIsNearestEven) {
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7f) == 0x7f) continue;
    const float v = E4M3ToFloat(static_cast<uint8_t>(c));
    if (c == 0x80) {
      EXPECT_EQ(FloatToE4M3(v), 0x80);  // -0 keeps its sign
      continue;
    }
    EXPECT_EQ(FloatToE4M3(v), c) << c;
  }
  // Exhaustive against brute force nearest (ties to even code) on a fine grid.
  for (int i = 0; i <= 460 * 512; ++i) {
    const float x = i / 512.f;
    int best = 0;
    float bd = INFINITY;
    for (int c = 0; c < 0x7f; ++c) {
      const float d = std::fabs(E4M3ToFloat(static_cast<uint8_t>(c)) - x);
      if (d < bd || (d == bd && (c & 1) == 0)) {
        best = c;
        bd = d;
      }
    }
    ASSERT_EQ(FloatToE4M3(x), best) << x;
    ASSERT_EQ(FloatToE4M3(-x), best | 0x80) << -x;
  }
  EXPECT_EQ(FloatToE4M3(1e30f), 0x7e);  // saturates
}

TEST(Fp8Test, RoundTripWithinRelativeBound) {
  for (DType d : {DType::kBF16, DType::kFP16, DType::kFP32}) {
    const KvShape s{3, 37, 2, 64, d};
    const auto raw = testing::MakeKv(s, 11);
    CodecConfig cfg;
    cfg.family = CodecId::kFp8;
    auto blob = EncodeToVector(cfg, s, raw);
    ASSERT_TRUE(blob.ok()) << blob.status();
    EXPECT_EQ(blob->size(), MaxEncodedBytes(cfg, s));
    std::vector<std::byte> out(s.Bytes());
    ASSERT_TRUE(Decode(*blob, out).ok());
    const uint64_t w = s.kv_heads * s.head_dim;
    for (uint64_t r = 0; r < s.Elements() / w; ++r) {
      float amax = 0;
      for (uint64_t c = 0; c < w; ++c) amax = std::max(amax, std::fabs(testing::At(raw, d, r * w + c)));
      const float scale = amax / 448;
      for (uint64_t c = 0; c < w; ++c) {
        const float x = testing::At(raw, d, r * w + c), y = testing::At(out, d, r * w + c);
        // E4M3 has 3 mantissa bits: relative error <= 2^-4 for normals; below 2^-6 * scale
        // the absolute step is 2^-9 * scale.
        const float bound = std::max(std::fabs(x) / 16, scale * std::ldexp(1.f, -10)) +
                            std::fabs(x) * 2 * testing::HalfUlp(d) + 1e-30f;
        ASSERT_LE(std::fabs(y - x), bound * 1.001f) << "row " << r << " col " << c;
      }
    }
  }
}

TEST(Fp8Test, DecoderRejectsNanCodesAndBadScales) {
  const KvShape s{1, 4, 1, 8, DType::kBF16};
  const auto raw = testing::MakeKv(s, 2);
  CodecConfig cfg;
  cfg.family = CodecId::kFp8;
  auto blob = *EncodeToVector(cfg, s, raw);
  std::vector<std::byte> out(s.Bytes());
  {
    auto b = blob;
    b[testing::SectionAt(b, 0).offset + 3] = std::byte{0x7f};
    testing::Reseal(b);
    EXPECT_EQ(Decode(b, out).code(), absl::StatusCode::kDataLoss);
  }
  {
    auto b = blob;
    const float neg = -1.f;
    std::memcpy(b.data() + testing::SectionAt(b, 1).offset + 4, &neg, 4);
    testing::Reseal(b);
    EXPECT_EQ(Decode(b, out).code(), absl::StatusCode::kDataLoss);
  }
  {
    auto b = blob;
    auto h = testing::HeaderOf(b);
    h.params[0] = 1;
    testing::SetHeader(b, h);
    EXPECT_EQ(Decode(b, out).code(), absl::StatusCode::kDataLoss);
  }
}

TEST(Fp8Test, RejectsNonFiniteInput) {
  const KvShape s{1, 2, 1, 4, DType::kFP32};
  std::vector<float> x(s.Elements(), 1.f);
  x[3] = NAN;
  CodecConfig cfg;
  cfg.family = CodecId::kFp8;
  auto r = EncodeToVector(cfg, s, std::as_bytes(std::span(x)));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace adaptcache
