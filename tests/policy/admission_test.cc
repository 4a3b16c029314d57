// Admission tables (policy/types.h): what a policy wants new entries stored as between plans.
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

TEST(AdmissionTest, MedianClassLossSkipsPinnedAndEmptyClasses) {
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

TEST(AdmissionTest, BaselinesKeepOrUseTheirConfig) {
  std::mt19937_64 rng(1);
  PolicyInput in = RandomInstance(rng, 200, 4, 0.1, 0.3);
  LruPolicy lru;
  auto p = lru.Plan(in);
  ASSERT_TRUE(p.ok());
  for (ConfigIndex c : lru.Admission(in, *p)) EXPECT_EQ(c, kNoConfig);
  StaticPolicy st("c2");
  p = st.Plan(in);
  ASSERT_TRUE(p.ok());
  const AdmissionTable t = st.Admission(in, *p);
  ASSERT_EQ(t.size(), in.classes.size());
  for (ConfigIndex c : t) EXPECT_EQ(c, 2);
  // No unpinned entry of a class: no quality to go on, no admission (Plan() would not
  // transcode such entries either).
  {
    PolicyInput pinned = in;
    for (EntryInput& e : pinned.entries) e.flags |= kPinned;
    for (ConfigIndex c : st.Admission(pinned, *p)) EXPECT_EQ(c, kNoConfig);
  }
  // A floor below the config's loss: the static policy admits nothing lossy either.
  in.namespaces[0].max_loss = 1e-6;
  for (ConfigIndex c : st.Admission(in, *p)) EXPECT_EQ(c, kNoConfig);
}

TEST(AdmissionTest, GreedyAdmitsWhatItGaveMostOfTheClassInDram) {
  std::mt19937_64 rng(5);
  PolicyInput in = RandomInstance(rng, 400, 6, 0.05, 0.3);
  in.namespaces[0].alpha = 1e-3;
  GreedyDowngrader g;
  auto p = g.Plan(in);
  ASSERT_TRUE(p.ok());
  const AdmissionTable t = g.Admission(in, *p);
  ASSERT_EQ(t, ModalAdmission(in, *p));
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
  // An empty plan (nothing in DRAM) admits nothing.
  PlacementPlan none;
  none.target.assign(in.entries.size(), Placement{});
  for (ConfigIndex c : ModalAdmission(in, none)) EXPECT_EQ(c, kNoConfig);
}

TEST(AdmissionTest, OptimizerAdmitsRawWhenDramIsFreeAndCompressesWhenItIsTight) {
  std::mt19937_64 rng(3);
  // Ample DRAM and a quality weight that makes any loss expensive: raw (index 0).
  PolicyInput in = RandomInstance(rng, 500, 6, 2.0, 2.0);
  in.namespaces[0].alpha = 1e3;
  AdaptiveOptimizer opt;
  auto p = opt.Plan(in);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->totals.lambda_dram, 0);
  for (ConfigIndex c : opt.Admission(in, *p)) EXPECT_EQ(c, 0);

  // 2% of the raw bytes fit in DRAM and loss is cheap: the price is positive and new
  // entries are admitted smaller than raw.
  PolicyInput tight = RandomInstance(rng, 500, 6, 0.02, 0.2);
  tight.namespaces[0].alpha = 1e-3;
  AdaptiveOptimizer opt2;
  p = opt2.Plan(tight);
  ASSERT_TRUE(p.ok());
  EXPECT_GT(p->totals.lambda_dram, 0);
  const AdmissionTable t = opt2.Admission(tight, *p);
  for (size_t cl = 0; cl < t.size(); ++cl) {
    ASSERT_NE(t[cl], kNoConfig);
    EXPECT_LT(tight.classes[cl].bytes[t[cl]], tight.classes[cl].bytes[0]) << "class " << cl;
  }
  // It is the priced rule itself, and it honours the floor.
  EXPECT_EQ(t, PricedAdmission(tight, p->totals.lambda_dram, opt2.last_alpha()));
  // A new entry is priced at the class's median frequency (default) or at a given one:
  // when every entry is hot, the median admits larger (higher-fidelity) configs than 1.
  PolicyInput hot = tight;
  for (EntryInput& e : hot.entries) e.freq = 1000.f;
  const AdmissionTable at1 = PricedAdmission(hot, p->totals.lambda_dram, opt2.last_alpha(), 1.0);
  const AdmissionTable atm = PricedAdmission(hot, p->totals.lambda_dram, opt2.last_alpha());
  bool larger = false;
  for (size_t cl = 0; cl < at1.size(); ++cl) {
    EXPECT_GE(hot.classes[cl].bytes[atm[cl]], hot.classes[cl].bytes[at1[cl]]) << cl;
    larger |= hot.classes[cl].bytes[atm[cl]] > hot.classes[cl].bytes[at1[cl]];
  }
  EXPECT_TRUE(larger);
  tight.namespaces[0].max_loss = 0;
  for (ConfigIndex c : PricedAdmission(tight, p->totals.lambda_dram, opt2.last_alpha())) {
    EXPECT_EQ(c, 0);
  }
}

}  // namespace
}  // namespace adaptcache::policy
