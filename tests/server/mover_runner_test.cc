// PolicyRunner + Mover over a real (DRAM-only) TierManager: cycles run by hand
// (interval 0). Static policies must transcode every estimated, unleased entry into
// containers that decode close to the original; leases and budgets hold moves back;
// bad options are refused.
#include <cmath>
#include <cstring>
#include <random>

#include <gtest/gtest.h>

#include "common/crc32c.h"
#include "kernels/codec.h"
#include "server/metrics.h"
#include "server/policy_runner.h"
#include "storage/tier_manager.h"
#include "tests/storage/ssd_test_util.h"
#include "tests/testing/kv_data.h"

namespace adaptcache::server {
namespace {

const KvShape kShape{2, 32, 2, 64, DType::kBF16};
constexpr int kN = 8;

EntryKey KeyOf(int i) { return EntryKey{7, Key128{uint64_t(i) * 977 + 3, uint64_t(i)}}; }

std::vector<std::byte> Tensor(int seed) { return testing::GaussianBf16(kShape.Elements(), seed); }

double RelError(const std::vector<std::byte>& a, const std::vector<std::byte>& b) {
  return testing::RelativeError(a, b, DType::kBF16, 0, a.size() / 2);
}

class MoverRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TierManagerOptions o;
    o.dram.capacity_bytes = 1 << 20;
    o.dram.huge_pages = false;
    o.dram.mlock = false;
    o.dram.name = "ac-mover-test";
    auto t = TierManager::Create(std::move(o));
    ASSERT_TRUE(t.ok()) << t.status();
    tm_ = std::move(*t);
    for (int i = 0; i < kN; ++i) Put(i);
  }
  void Put(int i) { PutKey(KeyOf(i), i); }
  void PutKey(const EntryKey& key, int seed, bool durable = false) {
    auto c = EncodeToVector(*ParseCodecConfig("raw"), kShape, Tensor(seed));
    ASSERT_TRUE(c.ok());
    auto e = tm_->Allocate(c->size());
    ASSERT_TRUE(e.ok());
    std::memcpy(tm_->Bytes(*e).data(), c->data(), c->size());
    EntryMeta m;
    m.shape = kShape;
    m.codec = "raw";
    m.raw_bytes = kShape.Bytes();
    m.crc32c = Crc32c(c->data(), c->size());
    m.stored_bytes = c->size();
    TierPutOptions po;
    po.durable = durable;
    auto r = tm_->CommitPut(key, Extent{e->offset, c->size()}, m, po);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->durable, durable) << r->ssd_status;
  }
  std::unique_ptr<PolicyRunner> Runner(const std::string& policy, uint64_t cpu_budget = 0,
                                       MetricsRegistry* reg = nullptr) {
    PolicyRunnerOptions o;
    o.policy = policy;
    o.configs = {"fp8"};
    o.interval = std::chrono::milliseconds(0);
    o.mover.cpu_bytes_per_s = cpu_budget;
    auto r = PolicyRunner::Create(o, tm_.get(), reg);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? std::move(*r) : nullptr;
  }
  // Reads entry i and decodes it; returns the relative error against what was put.
  double ReadError(int i, std::string* codec) {
    auto l = tm_->Get(KeyOf(i), 1000);
    EXPECT_TRUE(l.ok()) << l.status();
    if (!l.ok()) return 1e9;
    ConstByteSpan b = tm_->Bytes(l->lease.extent);
    EXPECT_EQ(Crc32c(b.data(), b.size()), l->lease.meta.crc32c);
    *codec = l->lease.meta.codec;
    std::vector<std::byte> raw(kShape.Bytes());
    auto st = Decode(b, raw);
    tm_->Release(l->lease.id);
    EXPECT_TRUE(st.ok()) << st;
    return st.ok() ? RelError(Tensor(i), raw) : 1e9;
  }

  std::unique_ptr<TierManager> tm_;
};

TEST_F(MoverRunnerTest, StaticPolicyTranscodesEveryEntry) {
  MetricsRegistry reg;
  auto runner = Runner("static:quant-k4v4-g64", 0, &reg);
  ASSERT_NE(runner, nullptr);
  for (int i = 0; i < kN; ++i) runner->OnAccess(KeyOf(i));
  EXPECT_EQ(runner->access_stats()->size(), uint64_t{kN});
  auto r = runner->RunOnce();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->estimated, uint64_t{kN});
  EXPECT_EQ(r->pinned, 0u);
  const int transcode = static_cast<int>(policy::MoveKind::kTranscode);
  EXPECT_EQ(r->moves.counts[transcode][static_cast<int>(MoveResult::kDone)], uint64_t{kN});
  for (int i = 0; i < kN; ++i) {
    const Location loc = tm_->Locate(KeyOf(i));
    EXPECT_EQ(loc.meta.codec, "quant-k4v4-g64");
    EXPECT_GT(loc.meta.est_quality_loss, 0.f);
    EXPECT_LT(loc.meta.stored_bytes, kShape.Bytes() / 2);
    std::string codec;
    EXPECT_LT(ReadError(i, &codec), 0.3) << i;
    EXPECT_EQ(codec, "quant-k4v4-g64");
  }
  // Nothing left to do: the next plan lists no moves and needs no new estimates.
  auto again = runner->RunOnce();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->estimated, 0u);
  EXPECT_EQ(again->totals.moves_by_kind[transcode], 0u);
  const std::string text = reg.Render();
  EXPECT_NE(text.find("adaptcache_mover_moves_total{kind=\"transcode\",result=\"done\"} 8"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("adaptcache_mover_plans_total{result=\"ok\"} 2"), std::string::npos);
}

TEST_F(MoverRunnerTest, LeasedEntryIsLeftAlone) {
  auto runner = Runner("static:fp8");
  ASSERT_NE(runner, nullptr);
  auto lease = tm_->Get(KeyOf(3), 60'000);
  ASSERT_TRUE(lease.ok());
  auto r = runner->RunOnce();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->pinned, 1u);
  EXPECT_EQ(tm_->Locate(KeyOf(3)).meta.codec, "raw");
  EXPECT_EQ(tm_->Locate(KeyOf(2)).meta.codec, "fp8");
  tm_->Release(lease->lease.id);
  ASSERT_TRUE(runner->RunOnce().ok());
  EXPECT_EQ(tm_->Locate(KeyOf(3)).meta.codec, "fp8");
  std::string codec;
  EXPECT_LT(ReadError(3, &codec), 0.1);
}

TEST_F(MoverRunnerTest, CpuBudgetDefersWork) {
  auto runner = Runner("static:fp8", /*cpu_budget=*/1);  // 1 byte/s: one entry, then debt
  ASSERT_NE(runner, nullptr);
  auto r = runner->RunOnce();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->estimated, 1u);
  EXPECT_EQ(r->pinned, uint64_t{kN - 1});
  const int transcode = static_cast<int>(policy::MoveKind::kTranscode);
  EXPECT_EQ(r->moves.counts[transcode][static_cast<int>(MoveResult::kBudget)], 1u);
  EXPECT_EQ(r->moves.counts[transcode][static_cast<int>(MoveResult::kDone)], 0u);
  for (int i = 0; i < kN; ++i) EXPECT_EQ(tm_->Locate(KeyOf(i)).meta.codec, "raw");
}

TEST_F(MoverRunnerTest, PutTranscodingConvertsNewPutsBeforeTheNextPlan) {
  MetricsRegistry reg;
  auto runner = Runner("static:fp8", 0, &reg);
  ASSERT_NE(runner, nullptr);
  // Before any plan there is no put rule: a put is not even queued.
  Put(kN);
  runner->OnPut(KeyOf(kN), kShape, CodecId::kRaw);
  EXPECT_EQ(runner->RunPutTranscodes(), 0u);
  EXPECT_EQ(tm_->Locate(KeyOf(kN)).meta.codec, "raw");
  ASSERT_TRUE(runner->RunOnce().ok());
  EXPECT_EQ(tm_->Locate(KeyOf(kN)).meta.codec, "fp8");  // the plan itself

  // After the plan: new raw puts are transcoded by RunPutTranscodes alone, except a leased
  // one and one that is not raw.
  Put(kN + 1);
  Put(kN + 2);
  Put(kN + 3);
  auto lease = tm_->Get(KeyOf(kN + 2), 60'000);
  ASSERT_TRUE(lease.ok());
  for (int i = kN + 1; i <= kN + 3; ++i) runner->OnPut(KeyOf(i), kShape, CodecId::kRaw);
  runner->OnPut(KeyOf(0), kShape, CodecId::kFp8);  // not raw: ignored
  EXPECT_EQ(runner->RunPutTranscodes(), 2u);
  for (int i : {kN + 1, kN + 3}) {
    const Location loc = tm_->Locate(KeyOf(i));
    EXPECT_EQ(loc.meta.codec, "fp8") << i;
    EXPECT_GT(loc.meta.est_quality_loss, 0.f) << i;  // the class's median estimate
    std::string codec;
    EXPECT_LT(ReadError(i, &codec), 0.1) << i;
  }
  EXPECT_EQ(tm_->Locate(KeyOf(kN + 2)).meta.codec, "raw");
  tm_->Release(lease->lease.id);
  const std::string text = reg.Render();
  EXPECT_NE(text.find("adaptcache_mover_admissions_total{result=\"done\"} 2"), std::string::npos) << text;
  EXPECT_NE(text.find("adaptcache_mover_admissions_total{result=\"leased\"} 1"), std::string::npos);
  EXPECT_NE(text.find("adaptcache_mover_admission_shapes 1"), std::string::npos);
}

TEST_F(MoverRunnerTest, LruAndDisabledPutTranscodingLeavePutsRaw) {
  {
    auto runner = Runner("lru-raw");
    ASSERT_NE(runner, nullptr);
    ASSERT_TRUE(runner->RunOnce().ok());
    Put(kN);
    runner->OnPut(KeyOf(kN), kShape, CodecId::kRaw);
    EXPECT_EQ(runner->RunPutTranscodes(), 0u);
    EXPECT_EQ(tm_->Locate(KeyOf(kN)).meta.codec, "raw");
  }
  PolicyRunnerOptions o;
  o.policy = "static:fp8";
  o.configs = {"fp8"};
  o.interval = std::chrono::milliseconds(0);
  o.transcode_puts = false;
  auto r = PolicyRunner::Create(o, tm_.get(), nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE((*r)->RunOnce().ok());
  Put(kN + 1);
  (*r)->OnPut(KeyOf(kN + 1), kShape, CodecId::kRaw);
  EXPECT_EQ((*r)->RunPutTranscodes(), 0u);
  EXPECT_EQ(tm_->Locate(KeyOf(kN + 1)).meta.codec, "raw");
}

TEST_F(MoverRunnerTest, LossyCopyIsNeverRelabelledRaw) {
  // A plan may list "back to raw" for an entry whose master copy was lost since the
  // snapshot; the only copy left is lossy, and a raw label would promise exact bytes.
  Mover mover(tm_.get(), MoverOptions{});
  MoverReport report;
  ASSERT_TRUE(mover.Transcode(KeyOf(1), "fp8", Tier::kDram, 0.01f, std::nullopt, &report).ok());
  const uint32_t crc = tm_->Locate(KeyOf(1)).meta.crc32c;
  auto st = mover.Transcode(KeyOf(1), "raw", Tier::kDram, 0.f, std::nullopt, &report);
  EXPECT_TRUE(absl::IsAborted(st)) << st;
  const Location loc = tm_->Locate(KeyOf(1));
  EXPECT_EQ(loc.meta.codec, "fp8");
  EXPECT_EQ(loc.meta.crc32c, crc);
  // Lossy to smaller lossy is still allowed.
  EXPECT_TRUE(mover.Transcode(KeyOf(1), "quant-k4v4-g64", Tier::kDram, 0.05f, std::nullopt, &report).ok());
}

TEST_F(MoverRunnerTest, DurableCopyIsKeptAsTheMasterWhenCompressing) {
  // With an SSD tier and keep_master off (the default), compressing an entry keeps the
  // lossless SSD copy a durable Put already wrote (as the master) and writes none for
  // the others; put transcoding does the same.
  testing::TempDir dir;
  TierManagerOptions o;
  o.dram.capacity_bytes = 1 << 20;
  o.dram.huge_pages = false;
  o.dram.mlock = false;
  o.dram.name = "ac-mover-test-ssd";
  o.ssd = testing::SmallOptions(dir.path());
  tm_.reset();
  auto t = TierManager::Create(std::move(o));
  ASSERT_TRUE(t.ok()) << t.status();
  tm_ = std::move(*t);
  PutKey(KeyOf(0), 0, /*durable=*/true);
  PutKey(KeyOf(1), 1);
  ASSERT_TRUE(tm_->Locate(KeyOf(0)).on_ssd);
  auto runner = Runner("static:fp8");
  ASSERT_NE(runner, nullptr);
  ASSERT_TRUE(runner->RunOnce().ok());
  Location d = tm_->Locate(KeyOf(0));
  EXPECT_EQ(d.meta.codec, "fp8");
  EXPECT_TRUE(d.on_ssd);
  EXPECT_TRUE(d.ssd_master);
  auto best = tm_->ReadBest(KeyOf(0));
  ASSERT_TRUE(best.ok()) << best.status();
  EXPECT_EQ(best->meta.codec, "raw");  // the exact bytes are still there
  const Location n = tm_->Locate(KeyOf(1));
  EXPECT_EQ(n.meta.codec, "fp8");
  EXPECT_FALSE(n.on_ssd);
  // Put transcoding of a new durable put keeps its SSD copy too.
  PutKey(KeyOf(2), 2, /*durable=*/true);
  runner->OnPut(KeyOf(2), kShape, CodecId::kRaw);
  EXPECT_EQ(runner->RunPutTranscodes(), 1u);
  d = tm_->Locate(KeyOf(2));
  EXPECT_EQ(d.meta.codec, "fp8");
  EXPECT_TRUE(d.ssd_master);
  std::string codec;
  EXPECT_LT(ReadError(2, &codec), 0.1);
  runner.reset();
  tm_.reset();  // before the SSD directory goes
}

// A tenant's DRAM quota bounds the plan: the runner fits it before the mover runs.
TEST_F(MoverRunnerTest, PlansKeepATenantWithinItsQuota) {
  PolicyRunnerOptions o;
  o.policy = "lru-raw";
  o.configs = {"fp8"};
  o.interval = std::chrono::milliseconds(0);
  const uint64_t entry = tm_->Locate(KeyOf(0)).meta.stored_bytes;
  o.group_caps = {policy::GroupCapacity{3 * entry, 0}};
  o.groups = [] { return absl::flat_hash_map<uint64_t, int32_t>{{7, 0}}; };  // KeyOf's namespace
  auto r = PolicyRunner::Create(o, tm_.get(), nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  auto rep = (*r)->RunOnce();
  ASSERT_TRUE(rep.ok()) << rep.status();
  EXPECT_GE(rep->quota_moves, static_cast<uint64_t>(kN - 3));
  int in_dram = 0;
  for (int i = 0; i < kN; ++i) in_dram += tm_->Locate(KeyOf(i)).tier == Tier::kDram ? 1 : 0;
  EXPECT_LE(in_dram, 3) << "the plan kept more than the tenant's quota in DRAM";
  EXPECT_GT(in_dram, 0);
}

TEST_F(MoverRunnerTest, BadOptionsAreRefused) {
  ServerConfig cfg;
  cfg.policy = "bogus";
  EXPECT_FALSE(PolicyRunnerOptionsFrom(cfg).ok());
  cfg.policy = "adaptive";
  cfg.policy_alpha = "x";
  EXPECT_FALSE(PolicyRunnerOptionsFrom(cfg).ok());
  cfg.policy_alpha = "0.5";
  cfg.policy_configs = "fp8, not-a-config";
  EXPECT_FALSE(PolicyRunnerOptionsFrom(cfg).ok());
  cfg.policy_configs = "fp8, quant-k4v4-g64";
  auto o = PolicyRunnerOptionsFrom(cfg);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->configs.size(), 2u);
  EXPECT_DOUBLE_EQ(o->budget.alpha, 0.5);
  EXPECT_TRUE(o->remote_latency_auto && o->remote_bandwidth_auto);
  EXPECT_FALSE(o->delay.remote_backs_misses) << "no remote tier configured";
  {
    ServerConfig rc = cfg;
    rc.remote_nodes = "127.0.0.1:6379";
    rc.policy_remote_gbps = "2";
    auto ro = PolicyRunnerOptionsFrom(rc);
    ASSERT_TRUE(ro.ok()) << ro.status();
    EXPECT_TRUE(ro->delay.remote_backs_misses);
    EXPECT_FALSE(ro->remote_bandwidth_auto);
    EXPECT_DOUBLE_EQ(ro->delay.remote.bandwidth_Bps, 2e9);
    rc.remote_write_mode = "off";
    EXPECT_FALSE(PolicyRunnerOptionsFrom(rc)->delay.remote_backs_misses);
    rc.policy_remote_gbps = "0";
    EXPECT_FALSE(PolicyRunnerOptionsFrom(rc).ok());
  }
  o->calibration_file = "/nonexistent/calibration.json";
  o->interval = std::chrono::milliseconds(0);
  EXPECT_FALSE(PolicyRunner::Create(*o, tm_.get(), nullptr).ok());
  o->calibration_file = "";
  o->policy = "static:nope";
  EXPECT_FALSE(PolicyRunner::Create(*o, tm_.get(), nullptr).ok());
  // The failed attempts leave nothing behind: a valid runner still starts.
  o->policy = "adaptive";
  EXPECT_TRUE(PolicyRunner::Create(*o, tm_.get(), nullptr).ok());
}

TEST_F(MoverRunnerTest, NamespaceBudgetsApplyToTheirEntries) {
  // Entries 0..3 move to namespace "strict" (floor 0: nothing lossy); the rest keep the
  // default budget, so static:fp8 compresses only them.
  auto strict = [](int i) { return EntryKey{NamespaceId("strict"), KeyOf(i).key}; };
  for (int i = 0; i < 4; ++i) {
    PutKey(strict(i), i);
    ASSERT_TRUE(tm_->Evict(KeyOf(i)).ok());
  }
  ServerConfig cfg;
  cfg.policy = "static:fp8";
  cfg.policy_configs = "fp8";
  cfg.namespaces["strict"].max_loss = "0";
  cfg.namespaces["loose"].alpha = "0.1";  // a budget for a namespace with no entries
  auto o = PolicyRunnerOptionsFrom(cfg);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->ns_budgets.size(), 2u);
  EXPECT_EQ(o->ns_budgets[NamespaceId("strict")].max_loss, 0.0);
  o->interval = std::chrono::milliseconds(0);
  auto r = PolicyRunner::Create(*o, tm_.get(), nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  auto rep = (*r)->RunOnce();
  ASSERT_TRUE(rep.ok()) << rep.status();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(tm_->Locate(strict(i)).meta.codec, "raw") << i;
  for (int i = 4; i < kN; ++i) EXPECT_EQ(tm_->Locate(KeyOf(i)).meta.codec, "fp8") << i;
  // Put transcoding follows the namespace too: a new strict entry stays raw, a default one not.
  PutKey(strict(kN), kN);
  Put(kN + 1);
  (*r)->OnPut(strict(kN), kShape, CodecId::kRaw);
  (*r)->OnPut(KeyOf(kN + 1), kShape, CodecId::kRaw);
  EXPECT_EQ((*r)->RunPutTranscodes(), 1u);
  EXPECT_EQ(tm_->Locate(strict(kN)).meta.codec, "raw");
  EXPECT_EQ(tm_->Locate(KeyOf(kN + 1)).meta.codec, "fp8");
  cfg.namespaces["strict"].max_loss = "-1";
  EXPECT_FALSE(PolicyRunnerOptionsFrom(cfg).ok());
}

TEST_F(MoverRunnerTest, DelayModelComesFromTheConfig) {
  ServerConfig cfg;
  cfg.policy = "adaptive";
  cfg.policy_dram_gbps = "12.5";
  cfg.policy_ssd_latency_us = "80";
  cfg.policy_recompute_us_per_token = "25";
  auto o = PolicyRunnerOptionsFrom(cfg);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_DOUBLE_EQ(o->delay.dram.bandwidth_Bps, 12.5e9);
  EXPECT_DOUBLE_EQ(o->delay.ssd.latency_s, 80e-6);
  EXPECT_DOUBLE_EQ(o->delay.recompute_s_per_token, 25e-6);
  for (const char* bad : {"0", "-1", "x", "inf"}) {
    ServerConfig c = cfg;
    c.policy_ssd_gbps = bad;
    EXPECT_FALSE(PolicyRunnerOptionsFrom(c).ok()) << bad;
  }
  // Decode speeds: the median of each family's measured configs.
  const std::string csv = ::testing::TempDir() + "/decode.csv";
  {
    std::FILE* f = std::fopen(csv.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("device,X\nconfig,ratio,decode_ms,decode_gbs\nraw,1,1,2000\nfp8,0.5,1,2500\n"
               "quant-k4v4-g64,0.27,1,2000\nquant-k2v2-g64,0.15,1,2400\nquant-k2v2-g32,0.16,1,bad\n",
               f);
    std::fclose(f);
  }
  cfg.policy_decode_csv = csv;
  o = PolicyRunnerOptionsFrom(cfg);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_DOUBLE_EQ(o->delay.decode_Bps[static_cast<size_t>(CodecId::kFp8)], 2500e9);
  EXPECT_DOUBLE_EQ(o->delay.decode_Bps[static_cast<size_t>(CodecId::kQuant)], 2400e9);  // upper median
  EXPECT_DOUBLE_EQ(o->delay.decode_Bps[static_cast<size_t>(CodecId::kLowrank)],
                   policy::DelayModelOptions{}.decode_Bps[static_cast<size_t>(CodecId::kLowrank)]);
  cfg.policy_decode_csv = ::testing::TempDir() + "/missing.csv";
  EXPECT_FALSE(PolicyRunnerOptionsFrom(cfg).ok());
}

}  // namespace
}  // namespace adaptcache::server
