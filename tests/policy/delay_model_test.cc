#include "policy/delay_model.h"

#include <cmath>

#include "gtest/gtest.h"

namespace adaptcache::policy {
namespace {

TEST(DelayModelTest, FollowsTheFormula) {
  DelayModelOptions o;
  o.dram = {10e-6, 20e9};
  o.ssd = {100e-6, 4e9};
  o.recompute_s_per_token = 40e-6;
  o.decode_Bps[static_cast<int>(CodecId::kQuant)] = 5e11;
  o.decode_launch_s = 5e-6;
  auto m = DelayModel::Create(o);
  ASSERT_TRUE(m.ok());
  EXPECT_DOUBLE_EQ(m->LoadDelay(Tier::kDram, 20'000'000), 10e-6 + 1e-3);
  EXPECT_DOUBLE_EQ(m->LoadDelay(Tier::kSsd, 4'000'000), 100e-6 + 1e-3);
  EXPECT_DOUBLE_EQ(m->DecodeDelay(CodecId::kRaw, 1 << 30), 0);
  EXPECT_DOUBLE_EQ(m->DecodeDelay(CodecId::kQuant, 500'000'000), 5e-6 + 1e-3);
  EXPECT_DOUBLE_EQ(m->Delay(Tier::kDram, CodecId::kQuant, 20'000'000, 500'000'000),
                   10e-6 + 1e-3 + 5e-6 + 1e-3);
  EXPECT_DOUBLE_EQ(m->MissCost(256, 32ull << 20), 256 * 40e-6);
}

TEST(DelayModelTest, ARemoteTierThatHoldsEveryPutCapsTheMissCost) {
  DelayModelOptions o;
  o.recompute_s_per_token = 40e-6;
  o.remote = TierParams{200e-6, 2e9};
  auto m = DelayModel::Create(o);
  ASSERT_TRUE(m.ok());
  EXPECT_DOUBLE_EQ(m->LoadDelay(Tier::kRemote, 2'000'000), 200e-6 + 1e-3);
  EXPECT_DOUBLE_EQ(m->MissCost(256, 2'000'000), 256 * 40e-6);  // not backed: recompute
  o.remote_backs_misses = true;
  m = DelayModel::Create(o);
  ASSERT_TRUE(m.ok());
  EXPECT_DOUBLE_EQ(m->MissCost(256, 2'000'000), 200e-6 + 1e-3);
  // A remote load slower than the recompute is never the miss cost.
  EXPECT_DOUBLE_EQ(m->MissCost(8, 2'000'000'000), 8 * 40e-6);
  o.remote.bandwidth_Bps = 0;
  EXPECT_FALSE(DelayModel::Create(o).ok());
}

TEST(DelayModelTest, DefaultsOrderTheTiers) {
  DelayModel m;
  const uint64_t bytes = 32ull << 20;
  EXPECT_LT(m.LoadDelay(Tier::kDram, bytes), m.LoadDelay(Tier::kSsd, bytes));
  EXPECT_LT(m.LoadDelay(Tier::kSsd, bytes), m.MissCost(256, bytes));
}

TEST(DelayModelTest, RejectsBadOptions) {
  DelayModelOptions o;
  o.dram.bandwidth_Bps = 0;
  EXPECT_FALSE(DelayModel::Create(o).ok());
  o = {};
  o.ssd.latency_s = -1;
  EXPECT_FALSE(DelayModel::Create(o).ok());
  o = {};
  o.recompute_s_per_token = NAN;
  EXPECT_FALSE(DelayModel::Create(o).ok());
  o = {};
  o.decode_Bps[static_cast<int>(CodecId::kLowrank)] = INFINITY;
  EXPECT_FALSE(DelayModel::Create(o).ok());
  EXPECT_TRUE(DelayModel::Create({}).ok());
}

}  // namespace
}  // namespace adaptcache::policy
