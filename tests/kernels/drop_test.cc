#include "kernels/drop.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "kernels/codec.h"
#include "tests/kernels/kv_test_util.h"

namespace adaptcache {
namespace {

CodecConfig Drop(uint16_t permille, int k = 0, int v = 0, int g = 0, bool h = false) {
  CodecConfig c;
  c.family = CodecId::kDrop;
  c.keep_permille = permille;
  c.k_bits = k;
  c.v_bits = v;
  c.group = g;
  c.hadamard = h;
  return c;
}

TEST(DropTest, KeepCountRoundsUpAndCoversSinksAndWindow) {
  EXPECT_EQ(DropKeepCount(256, 500, 4, 8), 128u);
  EXPECT_EQ(DropKeepCount(256, 330, 4, 8), 85u);  // ceil(84.48)
  EXPECT_EQ(DropKeepCount(256, 100, 4, 8), 26u);
  EXPECT_EQ(DropKeepCount(50, 100, 4, 8), 12u);   // forced tokens dominate
  EXPECT_EQ(DropKeepCount(5, 100, 4, 8), 5u);
  EXPECT_EQ(DropKeepCount(1, 100, 4, 8), 1u);
}

TEST(DropTest, KeepsSinksWindowAndCountForEveryRatio) {
  const KvShape s{2, 100, 2, 32, DType::kBF16};
  const auto raw = testing::MakeKv(s);
  for (uint16_t p : {750, 500, 330, 250, 100}) {
    auto blob = EncodeToVector(Drop(p), s, raw);
    ASSERT_TRUE(blob.ok()) << blob.status();
    auto kept = DecodeKeptTokens(*blob);
    ASSERT_TRUE(kept.ok());
    EXPECT_EQ(kept->size(), DropKeepCount(100, p, kDropSinks, kDropWindow));
    EXPECT_TRUE(std::is_sorted(kept->begin(), kept->end()));
    for (uint32_t t = 0; t < kDropSinks; ++t) EXPECT_EQ((*kept)[t], t);
    for (uint32_t i = 0; i < kDropWindow; ++i) {
      EXPECT_EQ((*kept)[kept->size() - 1 - i], 99 - i);
    }
    // Kept tokens are exact, dropped ones are zero.
    std::vector<std::byte> out(s.Bytes());
    ASSERT_TRUE(Decode(*blob, out).ok());
    const uint64_t row = uint64_t(s.kv_heads) * s.head_dim * 2;
    for (uint64_t slab = 0; slab < 2 * s.layers; ++slab) {
      for (uint32_t t = 0; t < s.tokens; ++t) {
        const bool k = std::binary_search(kept->begin(), kept->end(), t);
        const uint64_t off = (slab * s.tokens + t) * row;
        for (uint64_t b = 0; b < row; ++b) {
          ASSERT_EQ(out[off + b], k ? raw[off + b] : std::byte{0}) << "slab " << slab << " t " << t;
        }
      }
    }
  }
}

TEST(DropTest, EngineImportanceDecides) {
  const KvShape s{1, 40, 1, 16, DType::kFP16};
  const auto raw = testing::MakeKv(s);
  std::vector<float> imp(40, 0.f);
  for (uint32_t t : {10u, 20u, 21u, 7u}) imp[t] = 5.f + t;
  SideData side;
  side.token_importance = imp;
  auto blob = EncodeToVector(Drop(250), s, raw, side);  // keeps 12 = 4 sinks + 8 window
  ASSERT_TRUE(blob.ok());
  EXPECT_EQ(DecodeKeptTokens(*blob)->size(), 12u);
  auto blob2 = EncodeToVector(Drop(500), s, raw, side);  // 20: + 8 scored
  auto kept = *DecodeKeptTokens(*blob2);
  for (uint32_t t : {7u, 10u, 20u, 21u}) {
    EXPECT_TRUE(std::binary_search(kept.begin(), kept.end(), t)) << t;
  }
  // Ties (all zero) go to lower indices: 4, 5, 6, 8.
  for (uint32_t t : {4u, 5u, 6u, 8u}) {
    EXPECT_TRUE(std::binary_search(kept.begin(), kept.end(), t)) << t;
  }
  std::vector<float> bad(39, 1.f);
  side.token_importance = bad;
  EXPECT_EQ(EncodeToVector(Drop(500), s, raw, side).status().code(),
            absl::StatusCode::kInvalidArgument);
  imp[3] = NAN;
  side.token_importance = imp;
  EXPECT_EQ(EncodeToVector(Drop(500), s, raw, side).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(DropTest, KeyNormProxyPrefersLowNormKeys) {
  const KvShape s{2, 30, 2, 8, DType::kFP32};
  std::vector<float> x(s.Elements(), 1.f);
  const uint32_t w = s.kv_heads * s.head_dim;
  for (uint32_t l = 0; l < s.layers; ++l) {
    for (uint32_t c = 0; c < w; ++c) x[(uint64_t(l) * s.tokens + 13) * w + c] = 0.1f;  // low norm
  }
  auto scores = KeyNormScores(s, std::as_bytes(std::span(x)));
  EXPECT_EQ(std::max_element(scores.begin(), scores.end()) - scores.begin(), 13);
  auto kept = *SelectKeptTokens(s, std::as_bytes(std::span(x)), 500, {});  // 3 scored slots
  EXPECT_TRUE(std::binary_search(kept.begin(), kept.end(), 13u));
}

TEST(DropTest, QuantizedKeptTokensMatchQuantOfTheKeptTensor) {
  const KvShape s{2, 90, 2, 32, DType::kBF16};
  const auto raw = testing::MakeKv(s, 4);
  const CodecConfig cfg = Drop(500, 4, 2, 32, false);
  auto blob = *EncodeToVector(cfg, s, raw);
  const auto kept = *DecodeKeptTokens(blob);
  // Gather kept rows into a compact tensor and quant-encode it directly.
  KvShape cs = s;
  cs.tokens = kept.size();
  std::vector<std::byte> compact(cs.Bytes());
  const uint64_t row = uint64_t(s.kv_heads) * s.head_dim * 2;
  for (uint64_t slab = 0; slab < 2 * s.layers; ++slab) {
    for (size_t i = 0; i < kept.size(); ++i) {
      std::memcpy(compact.data() + (slab * kept.size() + i) * row,
                  raw.data() + (slab * s.tokens + kept[i]) * row, row);
    }
  }
  CodecConfig q = cfg;
  q.family = CodecId::kQuant;
  q.keep_permille = 0;
  auto qblob = *EncodeToVector(q, cs, compact);
  std::vector<std::byte> qout(cs.Bytes()), out(s.Bytes());
  ASSERT_TRUE(Decode(qblob, qout).ok());
  ASSERT_TRUE(Decode(blob, out).ok());
  for (uint64_t slab = 0; slab < 2 * s.layers; ++slab) {
    for (size_t i = 0; i < kept.size(); ++i) {
      ASSERT_EQ(0, std::memcmp(out.data() + (slab * s.tokens + kept[i]) * row,
                               qout.data() + (slab * kept.size() + i) * row, row));
    }
  }
  auto view = ParseContainer(blob);
  EXPECT_EQ(*ConfigOf(*view), cfg);
  EXPECT_LT(blob.size(), qblob.size() + 4 * kept.size());
}

TEST(DropTest, DecoderRejectsBadIndexLists) {
  const KvShape s{1, 40, 1, 16, DType::kBF16};
  const auto raw = testing::MakeKv(s);
  const auto blob = *EncodeToVector(Drop(500), s, raw);
  std::vector<std::byte> out(s.Bytes());
  const uint64_t idx = testing::SectionAt(blob, 0).offset;
  auto set_index = [&](size_t i, uint16_t v) {
    auto b = blob;
    std::memcpy(b.data() + idx + 2 * i, &v, 2);
    testing::Reseal(b);
    return b;
  };
  EXPECT_EQ(Decode(set_index(5, 40), out).code(), absl::StatusCode::kDataLoss);  // out of range
  EXPECT_EQ(Decode(set_index(6, 5), out).code(), absl::StatusCode::kDataLoss);   // not sorted
  EXPECT_EQ(Decode(set_index(0, 1), out).code(), absl::StatusCode::kDataLoss);   // sink missing
  EXPECT_EQ(Decode(set_index(19, 30), out).code(), absl::StatusCode::kDataLoss); // window missing
  {
    auto b = blob;
    auto h = testing::HeaderOf(b);
    h.params[0] = 0xee;  // keep ratio off grid
    testing::SetHeader(b, h);
    EXPECT_EQ(Decode(b, out).code(), absl::StatusCode::kDataLoss);
    h.params[0] = 0xf4;  // 500 -> 500 again, but inner codec claims quant with zero params
    h.params[1] = 0x01;
    h.params[4] = 2;
    testing::SetHeader(b, h);
    EXPECT_EQ(Decode(b, out).code(), absl::StatusCode::kDataLoss);
  }
  {
    auto b = blob;
    auto h = testing::HeaderOf(b);
    h.params[0] = 0xee;  // 750: count no longer matches the index section
    h.params[1] = 0x02;
    testing::SetHeader(b, h);
    EXPECT_EQ(Decode(b, out).code(), absl::StatusCode::kDataLoss);
  }
}

}  // namespace
}  // namespace adaptcache
