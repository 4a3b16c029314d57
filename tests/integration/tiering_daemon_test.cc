// The daemon with an SSD tier: overflow beyond the DRAM pool stays readable from SSD,
// Lookup reports tiers, /metrics and Stats show per-tier figures, and restarts (SIGTERM
// and SIGKILL) come back warm.
#include <httplib.h>
#include <signal.h>

#include <map>

#include "tiering_test_util.h"

namespace adaptcache::testing {
namespace {

constexpr char kNs[] = "tier-it";

double MetricValue(const std::string& text, const std::string& series) {
  auto pos = text.find("\n" + series + " ");
  if (pos == std::string::npos) return -1;
  return std::atof(text.c_str() + pos + series.size() + 2);
}

class TieringDaemonTest : public ::testing::Test {
 protected:
  void Start(std::vector<std::string> more = {}) {
    daemon_ = std::make_unique<DaemonProcess>(TieredOptions(ssd_.path(), std::move(more)));
    ASSERT_EQ(daemon_->Start(), "");
    stub_ = daemon_->NewStub();
  }
  void Restart(bool crash) {
    ASSERT_EQ(daemon_->Restart(crash), "");
    stub_ = daemon_->NewStub();
  }
  v1::PutResponse Put(int i, bool durable = false) {
    v1::PutHeader h = Header(kNs, TestKey(i));
    h.set_durable(durable);
    v1::PutResponse resp;
    auto st = PutBytes(stub_.get(), h, RandomBytes(ShapeBytes(SmallShape()), i), 64 << 10, &resp);
    EXPECT_TRUE(st.ok()) << i << ": " << st.error_message();
    return resp;
  }
  std::map<int, v1::Tier> LookupTiers(int n) {
    v1::LookupRequest req;
    req.set_namespace_(kNs);
    for (int i = 0; i < n; ++i) req.add_keys(TestKey(i));
    grpc::ClientContext ctx;
    WithDeadline(&ctx);
    v1::LookupResponse resp;
    EXPECT_TRUE(stub_->Lookup(&ctx, req, &resp).ok());
    std::map<int, v1::Tier> out;
    for (int i = 0; i < resp.entries_size(); ++i) out[i] = resp.entries(i).tier();
    return out;
  }

  SsdDir ssd_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<v1::AdaptCache::Stub> stub_;
};

TEST_F(TieringDaemonTest, OverflowIsServedFromSsdAndReported) {
  ASSERT_FALSE(ssd_.path().empty());
  Start();
  constexpr int kN = 600;  // ~3x the DRAM pool
  for (int i = 0; i < kN; ++i) Put(i);
  auto tiers = LookupTiers(kN);
  int dram = 0, ssd = 0;
  for (auto& [i, t] : tiers) {
    dram += t == v1::TIER_DRAM;
    ssd += t == v1::TIER_SSD;
  }
  EXPECT_GT(dram, 50);
  EXPECT_GT(ssd, 300);
  EXPECT_EQ(dram + ssd, kN);  // nothing lost
  int from_ssd = 0;
  for (int i = 0; i < kN; ++i) {
    std::string raw;
    v1::EntryInfo info;
    auto st = GetRaw(stub_.get(), kNs, TestKey(i), &raw, &info);
    ASSERT_TRUE(st.ok()) << i << ": " << st.error_message();
    ASSERT_EQ(raw, RandomBytes(ShapeBytes(SmallShape()), i)) << i;
    from_ssd += info.tier() == v1::TIER_SSD;
  }
  EXPECT_GT(from_ssd, 300);
  // SHM Gets of SSD entries work too (lease on a DRAM extent the SSD read filled).
  v1::GetResponse shm;
  ASSERT_TRUE(GetShm(stub_.get(), kNs, TestKey(0), 5000, &shm).ok());
  EXPECT_NE(shm.lease_id(), 0u);

  grpc::ClientContext ctx;
  WithDeadline(&ctx);
  v1::StatsResponse stats;
  ASSERT_TRUE(stub_->Stats(&ctx, v1::StatsRequest(), &stats).ok());
  bool saw_ssd = false;
  for (const auto& t : stats.tiers()) {
    if (t.tier() != v1::TIER_SSD) continue;
    saw_ssd = true;
    EXPECT_GE(t.entries(), 300u);
    EXPECT_GE(t.hits(), static_cast<uint64_t>(from_ssd));
    EXPECT_EQ(t.capacity_bytes(), 16ull * (8 << 20));
  }
  EXPECT_TRUE(saw_ssd);

  httplib::Client http("127.0.0.1", daemon_->metrics_port());
  auto res = http.Get("/metrics");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  const std::string& m = res->body;
  EXPECT_GE(MetricValue(m, "adaptcache_tier_hits_total{tier=\"ssd\"}"), from_ssd);
  EXPECT_GT(MetricValue(m, "adaptcache_tier_hits_total{tier=\"dram\"}"), 0);
  EXPECT_GE(MetricValue(m, "adaptcache_tier_entries{tier=\"ssd\"}"), 300);
  EXPECT_GT(MetricValue(m, "adaptcache_tier_demotions_total{result=\"done\"}"), 300);
  EXPECT_GT(MetricValue(m, "adaptcache_ssd_written_bytes_total{kind=\"user\"}"), 300 * 16384);
  EXPECT_GT(MetricValue(m, "adaptcache_ssd_read_bytes_total"), 0);
  EXPECT_GT(MetricValue(m, "adaptcache_ssd_latency_seconds{op=\"write\",quantile=\"0.5\"}"), 0);
  EXPECT_EQ(MetricValue(m, "adaptcache_tier_evictions_lost_total"), 0);
}

TEST_F(TieringDaemonTest, DeleteRemovesSsdCopies) {
  Start();
  for (int i = 0; i < 400; ++i) Put(i);
  v1::DeleteRequest req;
  req.set_namespace_(kNs);
  for (int i = 0; i < 400; ++i) req.add_keys(TestKey(i));
  grpc::ClientContext ctx;
  WithDeadline(&ctx);
  v1::DeleteResponse resp;
  ASSERT_TRUE(stub_->Delete(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.deleted(), 400u);
  for (auto& [i, t] : LookupTiers(400)) EXPECT_EQ(t, v1::TIER_NONE) << i;
  Restart(/*crash=*/false);
  for (auto& [i, t] : LookupTiers(400)) EXPECT_EQ(t, v1::TIER_NONE) << i;
}

TEST_F(TieringDaemonTest, SigtermRestartIsWarm) {
  Start();
  constexpr int kN = 500;
  for (int i = 0; i < kN; ++i) Put(i);
  auto before = LookupTiers(kN);
  int dram_only = 0;
  for (auto& [i, t] : before) dram_only += t == v1::TIER_DRAM;
  EXPECT_GT(dram_only, 50);  // the shutdown flush has something to do
  Restart(/*crash=*/false);
  auto after = LookupTiers(kN);
  // [ssd] flush_on_shutdown (default on) wrote the DRAM-only entries to SSD: every
  // entry survives the clean stop, now on SSD (DRAM starts empty).
  for (int i = 0; i < kN; ++i) {
    ASSERT_EQ(after[i], v1::TIER_SSD) << i << " was " << v1::Tier_Name(before[i]);
    std::string raw;
    auto st = GetRaw(stub_.get(), kNs, TestKey(i), &raw);
    ASSERT_TRUE(st.ok()) << i << ": " << st.error_message();
    EXPECT_EQ(raw, RandomBytes(ShapeBytes(SmallShape()), i)) << i;
  }
}

TEST_F(TieringDaemonTest, SigtermWithoutShutdownFlushLosesDramOnlyEntries) {
  Start({"--ssd-flush-on-shutdown", "false"});
  constexpr int kN = 500;
  for (int i = 0; i < kN; ++i) Put(i);
  auto before = LookupTiers(kN);
  Restart(/*crash=*/false);
  auto after = LookupTiers(kN);
  int lost = 0;
  for (int i = 0; i < kN; ++i) {
    if (before[i] == v1::TIER_SSD) EXPECT_EQ(after[i], v1::TIER_SSD) << i;
    if (after[i] == v1::TIER_NONE) {
      ++lost;
      continue;
    }
    std::string raw;
    auto st = GetRaw(stub_.get(), kNs, TestKey(i), &raw);
    ASSERT_TRUE(st.ok()) << i << ": " << st.error_message();
    EXPECT_EQ(raw, RandomBytes(ShapeBytes(SmallShape()), i)) << i;
  }
  EXPECT_GT(lost, 50);  // the DRAM-only ones (demotions in flight are still completed)
}

TEST_F(TieringDaemonTest, ShutdownFlushAfterDeleteDoesNotResurrect) {
  Start();
  for (int i = 0; i < 300; ++i) Put(i);
  v1::DeleteRequest req;
  req.set_namespace_(kNs);
  for (int i = 0; i < 300; i += 2) req.add_keys(TestKey(i));
  grpc::ClientContext ctx;
  WithDeadline(&ctx);
  v1::DeleteResponse resp;
  ASSERT_TRUE(stub_->Delete(&ctx, req, &resp).ok());
  Restart(/*crash=*/false);
  for (auto& [i, t] : LookupTiers(300)) {
    EXPECT_EQ(t, i % 2 == 0 ? v1::TIER_NONE : v1::TIER_SSD) << i;
  }
}

TEST_F(TieringDaemonTest, SigkillRestartKeepsDurablePuts) {
  Start();
  constexpr int kN = 120;
  for (int i = 0; i < kN; ++i) {
    auto r = Put(i, /*durable=*/true);
    EXPECT_TRUE(r.durable()) << i;
  }
  Restart(/*crash=*/true);
  {
    // Before any Get: Lookup reads the container header from SSD and reports the shape.
    v1::LookupRequest req;
    req.set_namespace_(kNs);
    for (int i = 0; i < kN; ++i) req.add_keys(TestKey(i));
    grpc::ClientContext ctx;
    WithDeadline(&ctx);
    v1::LookupResponse resp;
    ASSERT_TRUE(stub_->Lookup(&ctx, req, &resp).ok());
    ASSERT_EQ(resp.entries_size(), kN);
    for (int i = 0; i < kN; ++i) {
      EXPECT_EQ(resp.entries(i).tier(), v1::TIER_SSD) << i;
      EXPECT_EQ(resp.entries(i).shape().tokens(), SmallShape().tokens()) << i;
      EXPECT_EQ(resp.entries(i).shape().layers(), SmallShape().layers()) << i;
      EXPECT_EQ(resp.entries(i).raw_bytes(), ShapeBytes(SmallShape())) << i;
      EXPECT_EQ(resp.entries(i).codec(), "raw") << i;
    }
  }
  for (int i = 0; i < kN; ++i) {
    std::string raw;
    v1::EntryInfo info;
    auto st = GetRaw(stub_.get(), kNs, TestKey(i), &raw, &info);
    ASSERT_TRUE(st.ok()) << i << ": " << st.error_message();
    EXPECT_EQ(raw, RandomBytes(ShapeBytes(SmallShape()), i)) << i;
    EXPECT_EQ(info.tier(), v1::TIER_SSD);
  }
  // Metadata is learned on read: Lookup now reports the shape and codec name.
  v1::LookupRequest req;
  req.set_namespace_(kNs);
  req.add_keys(TestKey(0));
  grpc::ClientContext ctx;
  WithDeadline(&ctx);
  v1::LookupResponse resp;
  ASSERT_TRUE(stub_->Lookup(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.entries_size(), 1);
  EXPECT_EQ(resp.entries(0).codec(), "raw");
  EXPECT_EQ(resp.entries(0).shape().tokens(), SmallShape().tokens());
}

TEST_F(TieringDaemonTest, DurableWithoutSsdSaysNotDurable) {
  daemon_ = std::make_unique<DaemonProcess>(DaemonOptions{});
  ASSERT_EQ(daemon_->Start(), "");
  stub_ = daemon_->NewStub();
  auto r = Put(1, /*durable=*/true);
  EXPECT_FALSE(r.durable());
  EXPECT_EQ(r.entry().tier(), v1::TIER_DRAM);
}

}  // namespace
}  // namespace adaptcache::testing
