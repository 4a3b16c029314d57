#include "policy/baselines.h"

#include <random>

#include "gtest/gtest.h"
#include "policy/optimizer.h"
#include "tests/policy/policy_test_util.h"

namespace adaptcache::policy {
namespace {

// One shape; configs raw (100 B), fp8 (50 B), quant (25 B).
PolicyInput Tiny(int entries) {
  PolicyInput in;
  in.configs = {{"raw", CodecId::kRaw}, {"fp8", CodecId::kFp8}, {"quant", CodecId::kQuant}};
  in.classes = {SizeClass{256, 100, {100, 50, 25}}};
  in.namespaces = {QualityBudget{}};
  for (int i = 0; i < entries; ++i) {
    EntryInput e;
    e.freq = 1.f + i;
    e.last_access_ns = 1000 - i;  // entry 0 most recent
    e.config = 0;
    e.tier = Tier::kSsd;
    e.flags = kHasMaster;
    in.entries.push_back(e);
    in.qloss.insert(in.qloss.end(), {0.f, 0.01f, 0.05f});
  }
  return in;
}

TEST(LruPolicyTest, RawByRecencyThenSsdThenEvict) {
  PolicyInput in = Tiny(5);
  in.dram_capacity = 250;
  in.ssd_capacity = 200;
  LruPolicy lru;
  auto plan = lru.Plan(in);
  ASSERT_TRUE(plan.ok());
  const Placement want[] = {{0, Tier::kDram}, {0, Tier::kDram}, {0, Tier::kSsd}, {0, Tier::kSsd}, {}};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(plan->target[i], want[i]) << i;
  EXPECT_TRUE(CheckPlan(in, *plan).ok());
  EXPECT_EQ(lru.Name(), "lru-raw");
}

TEST(StaticPolicyTest, OneConfigTieredByFrequency) {
  PolicyInput in = Tiny(5);
  in.dram_capacity = 120;
  in.ssd_capacity = 100;
  StaticPolicy st("fp8");
  auto plan = st.Plan(in);
  ASSERT_TRUE(plan.ok());
  // Frequencies grow with the index: 4 and 3 to DRAM, 2 and 1 to SSD, 0 evicted.
  const Placement want[] = {{}, {1, Tier::kSsd}, {1, Tier::kSsd}, {1, Tier::kDram}, {1, Tier::kDram}};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(plan->target[i], want[i]) << i;
  EXPECT_EQ(st.Name(), "static-fp8");
  EXPECT_EQ(StaticPolicy("nope").Plan(in).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(StaticPolicyTest, FloorKeepsEntriesOutOfTheConfig) {
  PolicyInput in = Tiny(3);
  in.dram_capacity = 1000;
  in.ssd_capacity = 1000;
  in.namespaces[0].max_loss = 0.02;
  auto plan = StaticPolicy("quant").Plan(in);
  ASSERT_TRUE(plan.ok());
  for (const Placement& p : plan->target) EXPECT_EQ(p.config, 0);  // quant is over the floor
  EXPECT_TRUE(CheckPlan(in, *plan).ok());
}

TEST(GreedyDowngraderTest, MovesToSsdWhenCompressionCostsMoreQuality) {
  PolicyInput in;
  in.configs = {{"raw", CodecId::kRaw}, {"fp8", CodecId::kFp8}};
  const uint64_t raw = 32ull << 20;
  in.classes = {SizeClass{256, raw, {raw, raw / 2}}};
  in.namespaces = {QualityBudget{0.1}};
  for (float f : {10.f, 1.f}) {
    EntryInput e;
    e.freq = f;
    e.config = 0;
    e.tier = Tier::kDram;
    in.entries.push_back(e);
    in.qloss.insert(in.qloss.end(), {0.f, 0.05f});  // fp8 costs 5 ms of quality per access
  }
  in.dram_capacity = raw + raw / 2;
  in.ssd_capacity = 4 * raw;
  auto plan = GreedyDowngrader().Plan(in);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->target[0], (Placement{0, Tier::kDram}));
  EXPECT_EQ(plan->target[1], (Placement{0, Tier::kSsd}));
  // With plenty of DRAM nothing moves.
  in.dram_capacity = 4 * raw;
  plan = GreedyDowngrader().Plan(in);
  ASSERT_TRUE(plan.ok());
  EXPECT_TRUE(plan->moves.empty());
}

TEST(BaselinesTest, FeasibleAndNeverBetterThanTheOptimizerOnSmallInstances) {
  std::mt19937_64 rng(21);
  for (int trial = 0; trial < 60; ++trial) {
    PolicyInput in = testing::RandomInstance(rng, 3 + trial % 4, 4, 0.1 + 0.05 * (trial % 8), 0.5);
    const EntryInput& e0 = in.entries[0];
    const uint64_t cap0 = e0.tier == Tier::kDram ? in.dram_capacity : in.ssd_capacity;
    if (trial % 3 == 0 && in.classes[e0.size_class].bytes[e0.config] <= cap0) {
      in.entries[0].flags |= kPinned;
    }
    AdaptiveOptimizer opt;
    auto best = opt.Plan(in);
    ASSERT_TRUE(best.ok());
    const double optimum = testing::BruteForceOptimum(in);
    LruPolicy lru;
    StaticPolicy s1("c1"), s2("c2");
    GreedyDowngrader greedy;
    for (Policy* p : std::initializer_list<Policy*>{&lru, &s1, &s2, &greedy}) {
      auto plan = p->Plan(in);
      ASSERT_TRUE(plan.ok()) << p->Name();
      EXPECT_TRUE(CheckPlan(in, *plan).ok()) << p->Name() << ": " << CheckPlan(in, *plan);
      EXPECT_GE(plan->totals.objective, optimum * (1 - 1e-9)) << p->Name();
      EXPECT_GE(plan->totals.objective, best->totals.objective * (1 - 1e-9)) << p->Name();
    }
  }
}

}  // namespace
}  // namespace adaptcache::policy
