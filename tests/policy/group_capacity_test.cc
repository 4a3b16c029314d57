// FitGroupCapacities: a tenant's DRAM and SSD quotas applied to an optimizer plan.
#include "policy/group_capacity.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "policy/optimizer.h"
#include "tests/policy/policy_test_util.h"

namespace adaptcache::policy {
namespace {

using testing::RandomInstance;

struct GroupUse {
  uint64_t dram = 0, ssd = 0;
};

std::vector<GroupUse> UseOf(const PolicyInput& in, const PlacementPlan& plan, const std::vector<int32_t>& group,
                            size_t groups) {
  std::vector<GroupUse> u(groups);
  for (size_t i = 0; i < in.entries.size(); ++i) {
    const Placement p = plan.target[i];
    if (group[i] < 0 || p.tier == Tier::kNone) continue;
    const uint64_t b = in.classes[in.entries[i].size_class].bytes[p.config];
    (p.tier == Tier::kDram ? u[group[i]].dram : u[group[i]].ssd) += b;
  }
  return u;
}

TEST(GroupCapacityTest, OverQuotaGroupsMoveDownOthersStay) {
  std::mt19937_64 rng(11);
  PolicyInput in = RandomInstance(rng, 1500, 6, 0.2, 0.5);
  AdaptiveOptimizer opt;
  auto plan = opt.Plan(in);
  ASSERT_TRUE(plan.ok());
  std::vector<int32_t> group(in.entries.size());
  for (size_t i = 0; i < group.size(); ++i) group[i] = static_cast<int32_t>(i % 3) - 1;  // -1, 0, 1
  const auto before = UseOf(in, *plan, group, 2);
  ASSERT_GT(before[0].dram, 0u);
  ASSERT_GT(before[1].ssd, 0u);
  std::vector<GroupCapacity> caps(2);
  caps[0].dram_bytes = before[0].dram / 4;  // group 0: a quarter of what the plan gave it
  caps[1].ssd_bytes = before[1].ssd / 3;    // group 1: a third of its SSD bytes
  const PlacementPlan original = *plan;
  const size_t moved = FitGroupCapacities(in, group, caps, &*plan);
  EXPECT_GT(moved, 0u);
  const auto after = UseOf(in, *plan, group, 2);
  EXPECT_LE(after[0].dram, caps[0].dram_bytes);
  EXPECT_LE(after[1].ssd, caps[1].ssd_bytes);
  EXPECT_EQ(after[1].dram, before[1].dram) << "a group within its DRAM quota keeps its DRAM";
  for (size_t i = 0; i < group.size(); ++i) {
    if (group[i] < 0) EXPECT_EQ(plan->target[i], original.target[i]) << "entry " << i << " of no group moved";
  }
  EXPECT_LE(plan->totals.dram_bytes, in.dram_capacity);
  EXPECT_LE(plan->totals.ssd_bytes, in.ssd_capacity);
  EXPECT_TRUE(CheckPlan(in, *plan).ok()) << CheckPlan(in, *plan);
  EXPECT_GE(plan->totals.objective, original.totals.objective) << "a tighter plan cannot cost less";
}

TEST(GroupCapacityTest, PinnedEntriesStayAndNoCapsChangeNothing) {
  std::mt19937_64 rng(12);
  PolicyInput in = RandomInstance(rng, 300, 6, 0.3, 0.5);
  for (size_t i = 0; i < in.entries.size(); i += 2) in.entries[i].flags |= kPinned;
  AdaptiveOptimizer opt;
  auto plan = opt.Plan(in);
  ASSERT_TRUE(plan.ok());
  std::vector<int32_t> group(in.entries.size(), 0);
  const PlacementPlan original = *plan;
  EXPECT_EQ(FitGroupCapacities(in, group, std::vector<GroupCapacity>(1), &*plan), 0u);
  EXPECT_EQ(plan->target, original.target);
  std::vector<GroupCapacity> caps(1);
  caps[0].dram_bytes = 1;
  caps[0].ssd_bytes = 1;
  FitGroupCapacities(in, group, caps, &*plan);
  for (size_t i = 0; i < in.entries.size(); ++i) {
    if (in.entries[i].flags & kPinned) {
      EXPECT_EQ(plan->target[i], original.target[i]) << "pinned entry " << i << " moved";
    } else {
      EXPECT_EQ(plan->target[i].tier, Tier::kNone) << "entry " << i << " still stored";
    }
  }
}

}  // namespace
}  // namespace adaptcache::policy
