#include <cstring>

#include "gtest/gtest.h"
#include "storage/ssd_admission.h"
#include "storage/ssd_format.h"
#include "storage/ssd_index.h"

namespace adaptcache {
namespace {

TEST(SsdFormat, RecordHeaderRoundTripAndCorruption) {
  RecordHeader h{};
  h.magic = kRecordMagic;
  h.version = kRecordFormatVersion;
  h.ns = 42;
  h.key_lo = 1;
  h.key_hi = 2;
  h.seq = 99;
  h.segment_id = 5;
  h.payload_bytes = 1000;
  h.payload_crc32c = 0xdeadbeef;
  h.nonce = 77;
  SealRecordHeader(h);
  std::byte block[kSsdBlock] = {};
  std::memcpy(block, &h, sizeof h);
  RecordHeader out;
  ASSERT_TRUE(ValidateRecordHeader(block, &out).ok());
  EXPECT_EQ(out.seq, 99u);
  EXPECT_EQ(out.nonce, 77u);
  for (size_t byte = 0; byte < sizeof h; ++byte) {
    block[byte] ^= std::byte{0x10};
    EXPECT_FALSE(ValidateRecordHeader(block, nullptr).ok()) << "flip at byte " << byte;
    block[byte] ^= std::byte{0x10};
  }
  EXPECT_FALSE(ValidateRecordHeader(std::span<const std::byte>(block, 10), nullptr).ok());
}

TEST(SsdFormat, SegmentHeaderValidates) {
  SegmentHeader h{};
  h.magic = kSegmentMagic;
  h.version = kSegmentFormatVersion;
  h.header_bytes = sizeof h;
  h.segment_id = 3;
  SealSegmentHeader(h);
  std::byte block[64];
  std::memcpy(block, &h, sizeof h);
  EXPECT_TRUE(ValidateSegmentHeader(block, nullptr).ok());
  block[16] ^= std::byte{1};
  EXPECT_FALSE(ValidateSegmentHeader(block, nullptr).ok());
  std::memset(block, 0, sizeof block);
  EXPECT_FALSE(ValidateSegmentHeader(block, nullptr).ok());
}

TEST(SsdFormat, RecordBytesArePaddedToBlocks) {
  EXPECT_EQ(RecordBytes(1), 2 * kSsdBlock);
  EXPECT_EQ(RecordBytes(kSsdBlock), 2 * kSsdBlock);
  EXPECT_EQ(RecordBytes(kSsdBlock + 1), 3 * kSsdBlock);
  EXPECT_EQ(RecordBytes(1 << 20), (1 << 20) + kSsdBlock);
}

TEST(SsdIndexCodec, LocationRoundTripAndRejectsGarbage) {
  SsdLocation l{3, 17, 8192, 12345, 0xabcdef01, 2, 1ull << 40};
  std::string v = SsdIndex::EncodeLocation(l);
  SsdLocation o;
  ASSERT_TRUE(SsdIndex::DecodeLocation(v, &o));
  EXPECT_EQ(o.slot, 3u);
  EXPECT_EQ(o.segment_id, 17u);
  EXPECT_EQ(o.offset, 8192u);
  EXPECT_EQ(o.payload_bytes, 12345u);
  EXPECT_EQ(o.payload_crc32c, 0xabcdef01u);
  EXPECT_EQ(o.codec, 2);
  EXPECT_EQ(o.seq, 1ull << 40);
  EXPECT_FALSE(SsdIndex::DecodeLocation(v.substr(1), &o));
  v[0] = 9;
  EXPECT_FALSE(SsdIndex::DecodeLocation(v, &o));
  // Keys sort by namespace first.
  EXPECT_LT(SsdIndex::EncodeKey(EntryKey{1, Key128{~0ull, ~0ull}}), SsdIndex::EncodeKey(EntryKey{2, Key128{0, 0}}));
}

TEST(SsdAdmission, TokenBucketRefillsWithClock) {
  int64_t now = 0;
  TokenBucket b(1000, 2000, [&] { return now; });
  EXPECT_TRUE(b.TryConsume(1500));
  EXPECT_FALSE(b.TryConsume(1000));  // 500 left
  now += 500'000'000;                // +0.5 s -> +500
  EXPECT_TRUE(b.TryConsume(1000));
  EXPECT_FALSE(b.TryConsume(1));
  now += 10'000'000'000;  // refill caps at burst
  EXPECT_NEAR(b.tokens(), 2000, 1e-6);
  // Larger than the burst: allowed only from a full bucket, then goes negative.
  EXPECT_TRUE(b.TryConsume(5000));
  EXPECT_FALSE(b.TryConsume(1));
  now += 3'000'000'000;
  EXPECT_FALSE(b.TryConsume(100));  // -3000 + 3000 = 0
  now += 1'000'000'000;
  EXPECT_TRUE(b.TryConsume(100));
}

TEST(SsdAdmission, UnlimitedBucketAlwaysAdmits) {
  TokenBucket b(0, 0, [] { return int64_t{0}; });
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(b.TryConsume(1ull << 40));
}

TEST(SsdAdmission, SketchCountsAndAges) {
  FrequencySketch s(64);
  EntryKey a{1, Key128{1, 1}}, b{1, Key128{2, 2}};
  EXPECT_EQ(s.Estimate(a), 0u);
  EXPECT_EQ(s.Increment(a), 1u);
  EXPECT_EQ(s.Increment(a), 2u);
  EXPECT_GE(s.Estimate(a), 2u);
  EXPECT_LE(s.Estimate(b), 2u);
  // Counters saturate at 255; 64 * 8 increments trigger a halving of every counter.
  for (int i = 2; i < 511; ++i) s.Increment(a);
  EXPECT_EQ(s.Estimate(a), 255u);
  EXPECT_EQ(s.agings(), 0u);
  s.Increment(a);
  EXPECT_EQ(s.agings(), 1u);
  EXPECT_EQ(s.Estimate(a), 127u);
  EXPECT_EQ(s.Estimate(b), 0u);
}

TEST(SsdAdmission, SecondAccessRuleAndBudget) {
  int64_t now = 0;
  AdmissionOptions o;
  o.admit_after_accesses = 2;
  o.write_budget_bytes_per_s = 100;
  o.write_budget_burst_bytes = 100;
  AdmissionController c(o, [&] { return now; });
  EntryKey k{1, Key128{5, 6}};
  EXPECT_EQ(c.Decide(k, 10), AdmissionController::Verdict::kTooCold);
  EXPECT_EQ(c.Decide(k, 10), AdmissionController::Verdict::kAdmit);
  EntryKey k2{1, Key128{7, 8}};
  c.NoteAccess(k2);  // e.g. a DRAM hit
  EXPECT_EQ(c.Decide(k2, 90), AdmissionController::Verdict::kAdmit);
  EXPECT_EQ(c.Decide(k, 10), AdmissionController::Verdict::kOverBudget);
  c.ChargeInternal(1000);
  now += 1'000'000'000;
  EXPECT_EQ(c.Decide(k, 10), AdmissionController::Verdict::kOverBudget);  // still in debt
  now += 10'000'000'000;
  EXPECT_EQ(c.Decide(k, 10), AdmissionController::Verdict::kAdmit);
}

}  // namespace
}  // namespace adaptcache
