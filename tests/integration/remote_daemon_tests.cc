// Two daemons ("hosts") sharing a real Redis Cluster (3 masters, 3 replicas on loopback)
// as their remote tier: a Put on A is a hit on B, deletes propagate, a killed master
// never makes either serve wrong bytes, and with the cluster gone both keep serving
// their local entries. Skipped without Debian's redis-server.
#include <chrono>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <httplib.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/client.h"
#include "kernels/codec.h"
#include "storage/redis_cluster.h"
#include "tests/integration/daemon_fixture.h"
#include "tests/testing/kv_data.h"
#include "tests/testing/redis_cluster.h"

namespace adaptcache::client {
namespace {

using ::adaptcache::testing::DaemonOptions;
using ::adaptcache::testing::DaemonProcess;
using ::adaptcache::testing::LocalRedisCluster;
using Clock = std::chrono::steady_clock;

constexpr char kNs[] = "it/remote/llama/bf16";
const KvShape kShape{4, 256, 2, 64, DType::kBF16};  // 512 KiB raw

Key128 KeyOf(uint64_t i) { return Key128{0xabc0 + i, 0x5150 + i}; }

class RemoteDaemonTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!::adaptcache::testing::RedisServerAvailable()) return;
    auto c = LocalRedisCluster::Start({});
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = std::move(*c).release();
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  void SetUp() override {
    if (!::adaptcache::testing::RedisServerAvailable()) {
      GTEST_SKIP() << ::adaptcache::testing::kRedisMissingMessage;
    }
    ASSERT_NE(cluster_, nullptr);
    const std::string prefix = absl::StrCat("it", ++counter_, ":");
    for (int i = 0; i < 2; ++i) {
      DaemonOptions o;
      o.pool_bytes = 64ull << 20;
      o.extra_args = {"--remote-nodes", absl::StrJoin(cluster_->Seeds(), ","),
                      "--remote-key-prefix", prefix, "--remote-timeout-ms", "200",
                      "--max-entry-bytes", "16MiB"};
      hosts_[i] = std::make_unique<DaemonProcess>(o);
      const std::string err = hosts_[i]->Start();
      ASSERT_EQ(err, "") << err;
      auto c = Client::Connect(hosts_[i]->target());
      ASSERT_TRUE(c.ok()) << c.status();
      clients_[i] = std::move(*c);
    }
  }
  void TearDown() override {
    for (auto& c : clients_) c.reset();
    for (auto& h : hosts_) h.reset();
  }

  PutSpec Spec(uint64_t i, const std::string& codec = "") {
    PutSpec s;
    s.ns = kNs;
    s.key = KeyOf(i);
    s.shape = kShape;
    s.codec = codec;
    return s;
  }
  // Waits until host `h` sees key i in the remote tier (the write-through is async).
  bool WaitRemote(int h, uint64_t i) {
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    const Key128 k[] = {KeyOf(i)};
    while (Clock::now() < deadline) {
      auto r = clients_[h]->Lookup(kNs, k);
      if (r.ok() && r->entries[0].tier == Tier::kRemote) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
  double Metric(int h, const std::string& name) {
    httplib::Client http("127.0.0.1", hosts_[h]->metrics_port());
    auto res = http.Get("/metrics");
    if (!res || res->status != 200) return -1;
    std::istringstream in(res->body);
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
    }
    return -1;
  }

  static LocalRedisCluster* cluster_;
  static int counter_;
  std::unique_ptr<DaemonProcess> hosts_[2];
  std::unique_ptr<Client> clients_[2];
};
LocalRedisCluster* RemoteDaemonTest::cluster_ = nullptr;
int RemoteDaemonTest::counter_ = 0;

TEST_F(RemoteDaemonTest, APutOnAIsAHitAndAByteIdenticalGetOnB) {
  const auto raw = ::adaptcache::testing::SyntheticKv(kShape, 1);
  const char* codecs[] = {"raw", "quant-k4v4-g64", "fp8"};
  for (uint64_t i = 0; i < std::size(codecs); ++i) {
    SCOPED_TRACE(codecs[i]);
    auto put = clients_[0]->Put(Spec(i, i == 0 ? "" : codecs[i]), raw);
    ASSERT_TRUE(put.ok()) << put.status();
    ASSERT_TRUE(WaitRemote(1, i)) << "B never saw A's Put in the remote tier";
    const Key128 k[] = {KeyOf(i)};
    auto lk = clients_[1]->Lookup(kNs, k);
    ASSERT_TRUE(lk.ok());
    EXPECT_EQ(lk->prefix_hits, 1u);
    EXPECT_EQ(lk->entries[0].stored_bytes, put->stored_bytes) << "lossy entries stay compressed";
    EXPECT_EQ(lk->entries[0].shape, kShape);

    auto on_a = clients_[0]->Get(kNs, KeyOf(i));
    ASSERT_TRUE(on_a.ok()) << on_a.status();
    auto on_b = clients_[1]->Get(kNs, KeyOf(i));
    ASSERT_TRUE(on_b.ok()) << on_b.status();
    EXPECT_TRUE(*on_a == *on_b) << "B's bytes differ from A's";
    // The remote hit was promoted: B now serves it from DRAM, also through shm.
    auto lk2 = clients_[1]->Lookup(kNs, k);
    ASSERT_TRUE(lk2.ok());
    EXPECT_EQ(lk2->entries[0].tier, Tier::kDram);
    auto shm = clients_[1]->GetShm(kNs, KeyOf(i));
    ASSERT_TRUE(shm.ok()) << shm.status();
    EXPECT_TRUE(std::equal(shm->bytes().begin(), shm->bytes().end(), on_a->begin(), on_a->end()));
    std::vector<std::byte> decoded(raw.size());
    ASSERT_TRUE(Decode(*on_b, decoded).ok());
    if (i == 0) EXPECT_TRUE(decoded == raw);
  }
  EXPECT_GE(Metric(1, "adaptcache_remote_hits_total"), 3);
  EXPECT_EQ(Metric(0, "adaptcache_remote_up"), 1);
  EXPECT_GE(Metric(0, "adaptcache_remote_write_bytes_total"), 1);
}

TEST_F(RemoteDaemonTest, ADeleteOnAIsGoneOnB) {
  const auto raw = ::adaptcache::testing::SyntheticKv(kShape, 2);
  ASSERT_TRUE(clients_[0]->Put(Spec(10), raw).ok());
  ASSERT_TRUE(WaitRemote(1, 10));
  const Key128 k[] = {KeyOf(10)};
  auto n = clients_[0]->Delete(kNs, k);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 1u);
  auto lk = clients_[1]->Lookup(kNs, k);
  ASSERT_TRUE(lk.ok());
  EXPECT_EQ(lk->entries[0].tier, Tier::kNone) << "Delete returns after the remote DEL";
  EXPECT_EQ(clients_[1]->Get(kNs, KeyOf(10)).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(RemoteDaemonTest, AKilledMasterNeverMakesADaemonServeWrongBytes) {
  std::vector<std::vector<std::byte>> want;
  for (uint64_t i = 0; i < 16; ++i) {
    const auto raw = ::adaptcache::testing::SyntheticKv(kShape, 100 + static_cast<uint32_t>(i));
    auto put = clients_[0]->Put(Spec(20 + i, i % 2 ? "quant-k2v2-g64" : ""), raw);
    ASSERT_TRUE(put.ok()) << put.status();
    auto bytes = clients_[0]->Get(kNs, KeyOf(20 + i));
    ASSERT_TRUE(bytes.ok());
    want.push_back(*bytes);
  }
  for (uint64_t i = 0; i < 16; ++i) ASSERT_TRUE(WaitRemote(1, 20 + i));
  // Kill the master holding the first key while B reads.
  const std::string first = absl::StrCat("it", counter_, ":", absl::StrFormat("%016x", NamespaceId(kNs)),
                                         ":", KeyOf(20).ToHex());
  auto killed = cluster_->KillMasterOfSlot(RedisKeySlot(first));
  ASSERT_TRUE(killed.ok()) << killed.status();
  int hits = 0, misses = 0;
  for (int round = 0; round < 3; ++round) {
    for (uint64_t i = 0; i < 16; ++i) {
      auto got = clients_[1]->Get(kNs, KeyOf(20 + i));
      if (!got.ok()) {
        EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound) << got.status();
        ++misses;
        continue;
      }
      ASSERT_TRUE(*got == want[i]) << "wrong bytes for entry " << i;
      ++hits;
    }
  }
  EXPECT_GT(hits, 0);
  // A's own copies are local and untouched.
  for (uint64_t i = 0; i < 16; ++i) {
    auto got = clients_[0]->Get(kNs, KeyOf(20 + i));
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_TRUE(*got == want[i]);
  }
}

TEST_F(RemoteDaemonTest, WithTheClusterStoppedBothDaemonsKeepServingLocalEntries) {
  // Runs last: it stops the suite's cluster.
  const auto raw = ::adaptcache::testing::SyntheticKv(kShape, 3);
  ASSERT_TRUE(clients_[0]->Put(Spec(40), raw).ok());
  ASSERT_TRUE(clients_[1]->Put(Spec(41), raw).ok());
  cluster_->StopAll();
  const auto t0 = Clock::now();
  for (int i = 0; i < 2; ++i) {
    auto got = clients_[i]->Get(kNs, KeyOf(40 + i));
    ASSERT_TRUE(got.ok()) << got.status();
    std::vector<std::byte> decoded(raw.size());
    ASSERT_TRUE(Decode(*got, decoded).ok());
    EXPECT_TRUE(decoded == raw);
    // A miss, a lookup and a put still answer (the remote part times out or is skipped).
    EXPECT_EQ(clients_[i]->Get(kNs, KeyOf(99)).status().code(), absl::StatusCode::kNotFound);
    const Key128 k[] = {KeyOf(40 + i), KeyOf(98)};
    auto lk = clients_[i]->Lookup(kNs, k);
    ASSERT_TRUE(lk.ok()) << lk.status();
    EXPECT_EQ(lk->prefix_hits, 1u);
    ASSERT_TRUE(clients_[i]->Put(Spec(50 + i), raw).ok());
    auto h = clients_[i]->Health();
    ASSERT_TRUE(h.ok()) << h.status();
  }
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_LT(s, 5.0) << "the local tiers must not wait on a dead cluster for long";
  const auto deadline = Clock::now() + std::chrono::seconds(15);
  while (Clock::now() < deadline && Metric(0, "adaptcache_remote_up") != 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(Metric(0, "adaptcache_remote_up"), 0);
  EXPECT_NE(hosts_[0]->Log().find("serving the local tiers"), std::string::npos)
      << "one rate-limited log line says the remote tier is down";
}

}  // namespace
}  // namespace adaptcache::client
