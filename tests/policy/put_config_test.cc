// Put config tables (policy/types.h): what a policy wants new entries stored as between plans.
#include <algorithm>
#include <cmath>
#include <random>

#include "gtest/gtest.h"
#include "policy/baselines.h"
#include "policy/optimizer.h"
#include "tests/policy/policy_test_util.h"

namespace adaptcache::policy {
namespace {

using testing::RandomInstance;

TEST(PutConfigTest, MedianClassLossSkipsPinnedAndEmptyClasses) {
  std::mt19937_64 rng(7);
  PolicyInput in = RandomInstance(rng, 3, 3, 1.0, 1.0, 2);
  for (EntryInput& e : in.entries) e.size_class = 0;
  in.entries[0].flags |= kPinned;
  in.qloss = {0, 0.5f, 0.9f,  // pinned: ignored
              0, 0.1f, 0.2f,  //
              0, 0.3f, 0.4f};
  const std::vector<float> q = MedianClassLoss(in);
  ASSERT_EQ(q.size(), 2u * 3u);
  EXPECT_FLOAT_EQ(q[1], 0.3f);  // median of {0.1, 0.3}: the upper one
  EXPECT_FLOAT_EQ(q[2], 0.4f);
  EXPECT_TRUE(std::isnan(q[3 + 1]));  // class 1 has no entries
}

TEST(PutConfigTest, BaselinesKeepOrUseTheirConfig) {
  std::mt19937_64 rng(1);
  PolicyInput in = RandomInstance(rng, 200, 4, 0.1, 0.3);
  LruPolicy lru;
  auto p = lru.Plan(in);
  ASSERT_TRUE(p.ok());
  for (ConfigIndex c : lru.PutConfigs(in, *p)) EXPECT_EQ(c, kNoConfig);
  StaticPolicy st("c2");
  p = st.Plan(in);
  ASSERT_TRUE(p.ok());
  const PutConfigTable t = st.PutConfigs(in, *p);
  ASSERT_EQ(t.size(), in.classes.size());
  for (ConfigIndex c : t) EXPECT_EQ(c, 2);
  // No unpinned entry of a class: no quality to go on, no put config (Plan() would not
  // transcode such entries either).
  {
    PolicyInput pinned = in;
    for (EntryInput& e : pinned.entries) e.flags |= kPinned;
    for (ConfigIndex c : st.PutConfigs(pinned, *p)) EXPECT_EQ(c, kNoConfig);
  }
  // A floor below the config's loss: the static policy puts nothing lossy either.
  in.namespaces[0].max_loss = 1e-6;
  for (ConfigIndex c : st.PutConfigs(in, *p)) EXPECT_EQ(c, kNoConfig);
}

TEST(PutConfigTest, GreedyPutsWhatItGaveMostOfTheClassInDram) {
  std::mt19937_64 rng(5);
  PolicyInput in = RandomInstance(rng, 400, 6, 0.05, 0.3);
  in.namespaces[0].alpha = 1e-3;
  GreedyDowngrader g;
  auto p = g.Plan(in);
  ASSERT_TRUE(p.ok());
  const PutConfigTable t = g.PutConfigs(in, *p);
  ASSERT_EQ(t, ModalPutConfigs(in, *p));
  for (size_t cl = 0; cl < in.classes.size(); ++cl) {
    std::vector<int> n(in.configs.size(), 0);
    for (size_t i = 0; i < in.entries.size(); ++i) {
      if (in.entries[i].size_class == cl && p->target[i].tier == Tier::kDram) ++n[p->target[i].config];
    }
    const int most = *std::max_element(n.begin(), n.end());
    if (most == 0) {
      EXPECT_EQ(t[cl], kNoConfig);
    } else {
      EXPECT_EQ(n[t[cl]], most) << "class " << cl;
    }
  }
  // An empty plan (nothing in DRAM) gives no put config.
  PlacementPlan none;
  none.target.assign(in.entries.size(), Placement{});
  for (ConfigIndex c : ModalPutConfigs(in, none)) EXPECT_EQ(c, kNoConfig);
}

TEST(PutConfigTest, OptimizerPutsRawWhenDramIsFreeAndCompressesWhenItIsTight) {
  std::mt19937_64 rng(3);
  // Ample DRAM and a quality weight that makes any loss expensive: raw (index 0).
  PolicyInput in = RandomInstance(rng, 500, 6, 2.0, 2.0);
  in.namespaces[0].alpha = 1e3;
  AdaptiveOptimizer opt;
  auto p = opt.Plan(in);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->totals.lambda_dram, 0);
  for (ConfigIndex c : opt.PutConfigs(in, *p)) EXPECT_EQ(c, 0);

  // 2% of the raw bytes fit in DRAM and loss is cheap: the price is positive and new
  // entries are put smaller than raw.
  PolicyInput tight = RandomInstance(rng, 500, 6, 0.02, 0.2);
  tight.namespaces[0].alpha = 1e-3;
  AdaptiveOptimizer opt2;
  p = opt2.Plan(tight);
  ASSERT_TRUE(p.ok());
  EXPECT_GT(p->totals.lambda_dram, 0);
  const PutConfigTable t = opt2.PutConfigs(tight, *p);
  for (size_t cl = 0; cl < t.size(); ++cl) {
    ASSERT_NE(t[cl], kNoConfig);
    EXPECT_LT(tight.classes[cl].bytes[t[cl]], tight.classes[cl].bytes[0]) << "class " << cl;
  }
  // It is the priced rule itself, and it honours the floor.
  EXPECT_EQ(t, PricedPutConfigs(tight, p->totals.lambda_dram, opt2.last_alpha()));
  // A new entry is priced at the class's median frequency (default) or at a given one:
  // when every entry is hot, the median puts larger (higher-fidelity) configs than 1.
  PolicyInput hot = tight;
  for (EntryInput& e : hot.entries) e.freq = 1000.f;
  const PutConfigTable at1 = PricedPutConfigs(hot, p->totals.lambda_dram, opt2.last_alpha(), 1.0);
  const PutConfigTable atm = PricedPutConfigs(hot, p->totals.lambda_dram, opt2.last_alpha());
  bool larger = false;
  for (size_t cl = 0; cl < at1.size(); ++cl) {
    EXPECT_GE(hot.classes[cl].bytes[atm[cl]], hot.classes[cl].bytes[at1[cl]]) << cl;
    larger |= hot.classes[cl].bytes[atm[cl]] > hot.classes[cl].bytes[at1[cl]];
  }
  EXPECT_TRUE(larger);
  tight.namespaces[0].max_loss = 0;
  for (ConfigIndex c : PricedPutConfigs(tight, p->totals.lambda_dram, opt2.last_alpha())) {
    EXPECT_EQ(c, 0);
  }
}

}  // namespace
}  // namespace adaptcache::policy
