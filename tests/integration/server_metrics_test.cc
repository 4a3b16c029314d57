// Stats and /metrics reflect the requests the daemon served.
#include <httplib.h>

#include <gtest/gtest.h>

#include "tests/integration/daemon_fixture.h"
#include "tests/integration/server_test_util.h"
#include "tests/server/prom_text.h"

namespace adaptcache::testing {
namespace {

using grpc::StatusCode;

class ServerMetricsTest : public DaemonTest {
 protected:
  PromText Scrape() {
    httplib::Client http("127.0.0.1", daemon_->metrics_port());
    auto res = http.Get("/metrics");
    PromText parsed;
    EXPECT_TRUE(res);
    if (!res) return parsed;
    EXPECT_EQ(res->status, 200);
    EXPECT_NE(res->get_header_value("Content-Type").find("text/plain"), std::string::npos);
    EXPECT_EQ(ParsePromText(res->body, &parsed), "") << res->body;
    return parsed;
  }
};

TEST_F(ServerMetricsTest, StatsAndMetricsCountRequests) {
  const std::string data = RandomBytes(ShapeBytes(SmallShape()), 11);
  constexpr int kPuts = 3;
  for (int i = 0; i < kPuts; ++i) {
    ASSERT_TRUE(PutBytes(stub_.get(), Header("m", TestKey(i)), data).ok());
  }
  // Two rejected puts (short stream) and one Get miss.
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(PutBytes(stub_.get(), Header("m", TestKey(50)), data.substr(1)).error_code(),
              StatusCode::INVALID_ARGUMENT);
  }
  std::string c;
  EXPECT_EQ(GetStream(stub_.get(), "m", TestKey(99), &c).error_code(), StatusCode::NOT_FOUND);
  ASSERT_TRUE(GetStream(stub_.get(), "m", TestKey(0), &c).ok());
  v1::GetResponse shm;
  ASSERT_TRUE(GetShm(stub_.get(), "m", TestKey(1), 60000, &shm).ok());  // lease left open
  {
    grpc::ClientContext ctx;
    v1::LookupRequest req;
    req.set_namespace_("m");
    for (int k : {0, 1, 2, 77}) req.add_keys(TestKey(k));
    v1::LookupResponse resp;
    ASSERT_TRUE(stub_->Lookup(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.prefix_hits(), 3u);
  }

  grpc::ClientContext sctx;
  v1::StatsResponse stats;
  ASSERT_TRUE(stub_->Stats(&sctx, v1::StatsRequest(), &stats).ok());
  EXPECT_EQ(stats.puts(), static_cast<uint64_t>(kPuts));
  ASSERT_EQ(stats.tiers_size(), 1);
  EXPECT_EQ(stats.tiers(0).tier(), v1::TIER_DRAM);
  EXPECT_EQ(stats.tiers(0).entries(), static_cast<uint64_t>(kPuts));
  EXPECT_EQ(stats.tiers(0).capacity_bytes(), 64ull << 20);
  EXPECT_EQ(stats.lookups(), 4u + 3u);  // 4 keys + 3 Gets
  EXPECT_EQ(stats.tiers(0).hits(), 3u + 2u);
  EXPECT_EQ(stats.misses(), 2u);
  EXPECT_EQ(stats.leases_outstanding(), 1u);
  EXPECT_EQ(stats.entries_by_codec().at("raw"), static_cast<uint64_t>(kPuts));
  EXPECT_EQ(stats.bytes_by_codec().at("raw"), kPuts * c.size());
  EXPECT_EQ(stats.version(), "0.1.0");

  PromText m = Scrape();
  EXPECT_EQ(m.types["adaptcache_requests_total"], "counter");
  EXPECT_EQ(m.Sum("adaptcache_requests_total", {{"op", "put"}, {"code", "OK"}}), kPuts);
  EXPECT_EQ(m.Sum("adaptcache_requests_total", {{"op", "put"}, {"code", "INVALID_ARGUMENT"}}), 2);
  EXPECT_EQ(m.Sum("adaptcache_requests_total", {{"op", "get"}, {"code", "NOT_FOUND"}}), 1);
  EXPECT_EQ(m.Sum("adaptcache_requests_total", {{"op", "get"}, {"code", "OK"}}), 2);
  EXPECT_EQ(m.Sum("adaptcache_request_duration_seconds_count", {{"op", "put"}}), kPuts + 2);
  EXPECT_EQ(m.Sum("adaptcache_lookup_keys_total", {{"result", "hit"}}), 3);
  EXPECT_EQ(m.Sum("adaptcache_lookup_keys_total", {{"result", "miss"}}), 1);
  EXPECT_EQ(m.Sum("adaptcache_gets_total", {{"result", "miss"}}), 1);
  EXPECT_EQ(m.Sum("adaptcache_pool_entries"), kPuts);
  EXPECT_EQ(m.Sum("adaptcache_pool_entries_by_codec", {{"codec", "raw"}}), kPuts);
  EXPECT_EQ(m.Sum("adaptcache_pool_entry_bytes_by_codec", {{"codec", "raw"}}), kPuts * c.size());
  EXPECT_EQ(m.Sum("adaptcache_leases_outstanding"), 1);
  EXPECT_EQ(m.Sum("adaptcache_pool_capacity_bytes"), 64 << 20);
  EXPECT_EQ(m.Sum("adaptcache_put_bytes_total", {{"kind", "raw"}}), kPuts * data.size());
  EXPECT_TRUE(m.Has("adaptcache_pool_mlocked"));
  EXPECT_TRUE(m.Has("adaptcache_pool_huge_pages"));
  EXPECT_TRUE(m.Has("adaptcache_evictions_total"));
  EXPECT_TRUE(m.Has("adaptcache_reservations_outstanding"));

  httplib::Client http("127.0.0.1", daemon_->metrics_port());
  auto health = http.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  auto missing = http.Get("/nope");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
}

TEST_F(ServerMetricsTest, EvictionsShowWhenThePoolFills) {
  // 64 MiB pool, 1 MiB entries: 100 puts must evict.
  v1::KvShape shape = SmallShape();
  shape.set_tokens(4096);  // 2*2*4096*2*64*2 = 4 MiB
  const std::string data = RandomBytes(ShapeBytes(shape), 12);
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(PutBytes(stub_.get(), Header("e", TestKey(i), shape), data, 1 << 20).ok()) << i;
  }
  PromText m = Scrape();
  EXPECT_GT(m.Sum("adaptcache_evictions_total"), 0);
  EXPECT_LE(m.Sum("adaptcache_pool_used_bytes"), 64 << 20);
  // The newest entry survives and is intact.
  std::string container;
  v1::EntryInfo info;
  ASSERT_TRUE(GetStream(stub_.get(), "e", TestKey(39), &container, &info).ok());
  EXPECT_EQ(container.size(), info.stored_bytes());
}

}  // namespace
}  // namespace adaptcache::testing
