// SSD write admission (storage/ssd_admission.h): the write budget's token bucket, the
// frequency sketch and the controller that combines them, on an injected clock.
#include "storage/ssd_admission.h"

#include "gtest/gtest.h"

namespace adaptcache {
namespace {

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
