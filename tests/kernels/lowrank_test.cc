#include "kernels/lowrank.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "common/crc32c.h"
#include "common/half.h"
#include "kernels/codec.h"
#include "kernels/container.h"
#include "tests/kernels/kv_test_util.h"

namespace adaptcache {
namespace {

using testing::RelativeError;
using testing::Reseal;
using testing::SyntheticKv;

CodecConfig Lowrank(int ratio) {
  CodecConfig c;
  c.family = CodecId::kLowrank;
  c.lowrank_ratio = uint8_t(ratio);
  return c;
}

absl::StatusOr<std::vector<std::byte>> Encode(const CodecConfig& cfg, const KvShape& s,
                                              const std::vector<std::byte>& raw) {
  std::vector<std::byte> out(LowrankMaxBytes(cfg, s));
  auto n = EncodeLowrank(cfg, s, raw, out);
  if (!n.ok()) return n.status();
  out.resize(*n);
  return out;
}

absl::Status Decode(const std::vector<std::byte>& blob, std::vector<std::byte>& out) {
  auto view = ParseContainer(blob);
  if (!view.ok()) return view.status();
  return DecodeLowrank(*view, out);
}

// Offset of the data section (slab records) in a blob.
uint64_t DataOffset(const std::vector<std::byte>& blob) {
  auto view = ParseContainer(blob);
  EXPECT_TRUE(view.ok());
  auto data = view->Find(2);
  EXPECT_TRUE(data.ok());
  return uint64_t(data->data() - blob.data());
}

const KvShape kShape{2, 128, 4, 64, DType::kBF16};

TEST(Lowrank, RoundTripAllDtypesErrorFallsWithRatio) {
  for (DType dt : {DType::kBF16, DType::kFP16, DType::kFP32}) {
    KvShape s = kShape;
    s.dtype = dt;
    const auto raw = SyntheticKv(s, 1);
    double prev = 0;
    for (int ratio : {8, 14, 20}) {
      auto blob = Encode(Lowrank(ratio), s, raw);
      ASSERT_TRUE(blob.ok()) << blob.status();
      std::vector<std::byte> out(s.Bytes());
      ASSERT_TRUE(Decode(*blob, out).ok());
      const double k_err = RelativeError(raw, out, dt, 0, s.Elements() / 2);
      const double v_err = RelativeError(raw, out, dt, s.Elements() / 2, s.Elements());
      const double err = RelativeError(raw, out, dt, 0, s.Elements());
      SCOPED_TRACE(::testing::Message() << DTypeName(dt) << " r" << ratio << " err " << err
                                        << " k " << k_err << " v " << v_err);
      EXPECT_LT(k_err, 0.3);
      EXPECT_LT(v_err, 0.6);
      EXPECT_GT(err, prev);  // fewer bytes, more error
      prev = err;
    }
  }
}

TEST(Lowrank, AchievedRatioWithinTenPercent) {
  for (const KvShape& s : {kShape, KvShape{1, 256, 8, 128, DType::kFP16},
                           KvShape{1, 200, 2, 96, DType::kFP32}}) {
    const auto raw = SyntheticKv(s, 2);
    for (int ratio = kLowrankMinRatio; ratio <= kLowrankMaxRatio; ratio += 3) {
      auto blob = Encode(Lowrank(ratio), s, raw);
      ASSERT_TRUE(blob.ok()) << blob.status();
      const double achieved = double(s.Bytes()) / double(blob->size());
      EXPECT_GE(achieved, 0.9 * ratio) << s.DebugString() << " r" << ratio;
      EXPECT_LE(achieved, 1.1 * ratio) << s.DebugString() << " r" << ratio;
      EXPECT_LE(blob->size(), LowrankMaxBytes(Lowrank(ratio), s));
    }
  }
}

TEST(Lowrank, Deterministic) {
  const auto raw = SyntheticKv(kShape, 3);
  auto a = Encode(Lowrank(10), kShape, raw);
  auto b = Encode(Lowrank(10), kShape, raw);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  std::vector<std::byte> o1(kShape.Bytes()), o2(kShape.Bytes());
  ASSERT_TRUE(Decode(*a, o1).ok());
  ASSERT_TRUE(Decode(*a, o2).ok());
  EXPECT_EQ(o1, o2);
}

TEST(Lowrank, LowRankDataIsNearlyExact) {
  // Rank-2 data per head: a handful of components reconstruct it almost exactly.
  const KvShape s{1, 256, 2, 64, DType::kFP32};
  std::vector<std::byte> raw(s.Bytes());
  for (uint64_t i = 0; i < s.Elements(); ++i) {
    const uint64_t d = i % 64, t = (i / 128) % 256;
    const float v = std::sin(0.1f * t) * std::cos(0.3f * d) + 0.5f * std::cos(0.05f * t) * (d % 5);
    StoreFromFloat(raw.data(), s.dtype, i, v);
  }
  auto blob = Encode(Lowrank(8), s, raw);
  ASSERT_TRUE(blob.ok());
  std::vector<std::byte> out(s.Bytes());
  ASSERT_TRUE(Decode(*blob, out).ok());
  EXPECT_LT(RelativeError(raw, out, s.dtype, 0, s.Elements()), 0.01);
}

TEST(Lowrank, EdgeShapes) {
  for (const KvShape& s : {KvShape{1, 1, 1, 1, DType::kBF16}, KvShape{2, 3, 3, 5, DType::kFP16},
                           KvShape{1, 7, 1, 128, DType::kFP32}, KvShape{1, 40, 6, 2, DType::kBF16}}) {
    const auto raw = SyntheticKv(s, 4);
    for (int ratio : {8, 20}) {
      auto blob = Encode(Lowrank(ratio), s, raw);
      ASSERT_TRUE(blob.ok()) << s.DebugString() << blob.status();
      EXPECT_LE(blob->size(), LowrankMaxBytes(Lowrank(ratio), s));
      std::vector<std::byte> out(s.Bytes());
      ASSERT_TRUE(Decode(*blob, out).ok()) << s.DebugString();
      for (uint64_t i = 0; i < s.Elements(); ++i) {
        ASSERT_TRUE(std::isfinite(LoadAsFloat(out.data(), s.dtype, i)));
      }
    }
  }
}

TEST(Lowrank, ConstantInputKeepsMean) {
  const KvShape s{1, 64, 2, 16, DType::kBF16};
  std::vector<std::byte> raw(s.Bytes());
  for (uint64_t i = 0; i < s.Elements(); ++i) StoreFromFloat(raw.data(), s.dtype, i, 1.5f);
  auto blob = Encode(Lowrank(8), s, raw);
  ASSERT_TRUE(blob.ok());
  std::vector<std::byte> out(s.Bytes());
  ASSERT_TRUE(Decode(*blob, out).ok());
  EXPECT_EQ(out, raw);
}

// Rank-deficient, nearly constant input (found by fuzz_rpc): the eigen-solver must converge.
TEST(Lowrank, NearlyConstantRankDeficientInputEncodes) {
  const KvShape s{1, 2, 1, 32, DType::kFP16};
  std::vector<std::byte> raw(s.Bytes());
  for (uint64_t i = 0; i < s.Elements(); ++i) {
    const uint16_t bits = static_cast<uint16_t>(0x3C00 + i % 97);  // 1.0 + (i % 97) ulp
    std::memcpy(raw.data() + 2 * i, &bits, 2);
  }
  for (int ratio : {8, 12, 16, 20}) {
    auto blob = Encode(Lowrank(ratio), s, raw);
    ASSERT_TRUE(blob.ok()) << "ratio " << ratio << ": " << blob.status();
    std::vector<std::byte> out(s.Bytes());
    ASSERT_TRUE(Decode(*blob, out).ok());
    EXPECT_LT(RelativeError(raw, out, s.dtype, 0, s.Elements()), 0.05) << ratio;
  }
}

TEST(Lowrank, RejectsBadArguments) {
  const auto raw = SyntheticKv(kShape, 5);
  std::vector<std::byte> out(LowrankMaxBytes(Lowrank(8), kShape));
  EXPECT_FALSE(EncodeLowrank(Lowrank(7), kShape, raw, out).ok());
  EXPECT_FALSE(EncodeLowrank(Lowrank(21), kShape, raw, out).ok());
  CodecConfig not_lowrank;
  EXPECT_FALSE(EncodeLowrank(not_lowrank, kShape, raw, out).ok());
  EXPECT_FALSE(EncodeLowrank(Lowrank(8), kShape, std::span(raw).first(raw.size() - 2), out).ok());
  std::vector<std::byte> small(100);
  EXPECT_FALSE(EncodeLowrank(Lowrank(8), kShape, raw, small).ok());
  KvShape bad = kShape;
  bad.tokens = 0;
  EXPECT_FALSE(EncodeLowrank(Lowrank(8), bad, raw, out).ok());
  // Non-finite or out-of-fp16-range input is refused, not silently mangled.
  for (float v : {NAN, INFINITY, 1e6f}) {
    auto bad_raw = raw;
    StoreFromFloat(bad_raw.data(), kShape.dtype, 1234, v);
    auto st = EncodeLowrank(Lowrank(8), kShape, bad_raw, out);
    EXPECT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument) << v;
  }
}

TEST(Lowrank, ThroughPublicCodecApi) {
  auto cfg = ParseCodecConfig("lowrank-r12");
  ASSERT_TRUE(cfg.ok());
  EXPECT_EQ(cfg->lowrank_ratio, 12);
  const auto raw = SyntheticKv(kShape, 8);
  auto blob = EncodeToVector(*cfg, kShape, raw);
  ASSERT_TRUE(blob.ok()) << blob.status();
  auto direct = Encode(*cfg, kShape, raw);
  ASSERT_TRUE(direct.ok());
  EXPECT_EQ(*blob, *direct);
  std::vector<std::byte> out(kShape.Bytes());
  ASSERT_TRUE(adaptcache::Decode(*blob, out).ok());
  auto view = ParseContainer(*blob);
  ASSERT_TRUE(view.ok());
  auto back = ConfigOf(*view);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, *cfg);
}

class CorruptBlob : public ::testing::Test {
 protected:
  void SetUp() override {
    raw_ = SyntheticKv(kShape, 6);
    auto blob = Encode(Lowrank(12), kShape, raw_);
    ASSERT_TRUE(blob.ok());
    blob_ = *blob;
    data_ = DataOffset(blob_);
  }
  // Expects a DataLoss error and an untouched output buffer.
  void ExpectRejected(std::vector<std::byte> blob, bool reseal = true) {
    if (reseal) Reseal(blob);
    std::vector<std::byte> out(kShape.Bytes(), std::byte{0x5a});
    auto st = Decode(blob, out);
    EXPECT_FALSE(st.ok());
    EXPECT_TRUE(std::all_of(out.begin(), out.end(), [](std::byte b) { return b == std::byte{0x5a}; }));
  }
  template <typename T>
  void Poke(std::vector<std::byte>& b, uint64_t off, T v) {
    std::memcpy(b.data() + off, &v, sizeof(v));
  }
  std::vector<std::byte> raw_, blob_;
  uint64_t data_ = 0;
};

TEST_F(CorruptBlob, Truncated) {
  for (size_t n : {size_t{0}, size_t{10}, size_t{64}, blob_.size() / 2, blob_.size() - 1}) {
    ExpectRejected(std::vector<std::byte>(blob_.begin(), blob_.begin() + n), false);
  }
}

TEST_F(CorruptBlob, HeaderAndIndexFields) {
  auto b = blob_;
  Poke<uint8_t>(b, offsetof(ContainerHeader, params), 7);  // ratio outside range
  ExpectRejected(b);
  b = blob_;
  Poke<uint8_t>(b, offsetof(ContainerHeader, params) + 1, 2);  // unknown layout revision
  ExpectRejected(b);
  b = blob_;
  Poke<uint8_t>(b, offsetof(ContainerHeader, params) + 9, 1);  // reserved
  ExpectRejected(b);
  // Index: second slab's offset moved, first slab's length grown.
  auto view = ParseContainer(blob_);
  const uint64_t index = uint64_t(view->Find(1)->data() - blob_.data());
  b = blob_;
  Poke<uint32_t>(b, index + 8, 4);
  ExpectRejected(b);
  b = blob_;
  Poke<uint32_t>(b, index + 4, 0xffffff00u);
  ExpectRejected(b);
  // A shape edit makes every size inconsistent.
  b = blob_;
  Poke<uint32_t>(b, offsetof(ContainerHeader, tokens), kShape.tokens + 1);
  ExpectRejected(b);
  b = blob_;
  Poke<uint32_t>(b, offsetof(ContainerHeader, head_dim), kShape.head_dim / 2);
  ExpectRejected(b);
}

TEST_F(CorruptBlob, SlabFields) {
  const uint64_t means_end = data_ + 4 + 2ull * kShape.kv_heads * kShape.head_dim;
  auto b = blob_;
  Poke<uint16_t>(b, data_, 3);  // heads_per_group not dividing kv_heads
  ExpectRejected(b);
  b = blob_;
  Poke<uint16_t>(b, data_, 0);
  ExpectRejected(b);
  b = blob_;
  Poke<uint16_t>(b, data_ + 2, 1);  // reserved
  ExpectRejected(b);
  b = blob_;
  Poke<uint16_t>(b, data_ + 4, 0x7c00);  // mean = +inf
  ExpectRejected(b);
  b = blob_;
  Poke<uint16_t>(b, means_end, kShape.head_dim + 1);  // rank > head_dim
  ExpectRejected(b);
  b = blob_;
  Poke<uint16_t>(b, means_end, 0);  // rank 0: record no longer adds up
  ExpectRejected(b);
  for (uint8_t w : {0, 13, 255}) {  // first component's bit width
    b = blob_;
    Poke<uint8_t>(b, means_end + 4, w);
    ExpectRejected(b);
  }
  uint16_t rank;
  std::memcpy(&rank, blob_.data() + means_end, 2);
  ASSERT_GT(rank, 0);
  for (float st : {0.f, -1.f, NAN, INFINITY}) {  // first step
    b = blob_;
    Poke<float>(b, means_end + 4 + rank, st);
    ExpectRejected(b);
  }
}

TEST_F(CorruptBlob, RandomEditsNeverCrash) {
  // Resealed random edits: the decoder either rejects them or writes a full tensor; under
  // ASan this also proves it stays in bounds.
  std::mt19937 rng(9);
  const uint64_t header_end = sizeof(ContainerHeader);
  int rejected = 0;
  for (int trial = 0; trial < 80; ++trial) {
    auto b = blob_;
    const int edits = 1 + trial % 4;
    for (int e = 0; e < edits; ++e) {
      const uint64_t pos = header_end + rng() % (b.size() - header_end);
      b[pos] = std::byte(rng());
    }
    Reseal(b);
    std::vector<std::byte> out(kShape.Bytes());
    rejected += !Decode(b, out).ok();
  }
  EXPECT_GT(rejected, 0);
}

}  // namespace
}  // namespace adaptcache
