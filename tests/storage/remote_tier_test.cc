// The Redis Cluster client and the remote tier against a real Redis Cluster on loopback
// (3 masters, 3 replicas, from Debian's redis-server; skipped without it).
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <set>
#include <thread>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "kernels/codec.h"
#include "storage/redis_cluster.h"
#include "storage/remote_tier.h"
#include "tests/testing/kv_data.h"
#include "tests/testing/redis_cluster.h"

namespace adaptcache {
namespace {

using testing::LocalRedisCluster;
using Clock = std::chrono::steady_clock;

std::vector<std::byte> Container(uint32_t seed, const char* config = "raw", uint32_t tokens = 64) {
  const KvShape shape{2, tokens, 2, 64, DType::kBF16};
  auto cfg = ParseCodecConfig(config);
  EXPECT_TRUE(cfg.ok());
  auto c = EncodeToVector(*cfg, shape, testing::SyntheticKv(shape, seed));
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

EntryKey KeyOf(uint64_t i) { return EntryKey{0x5eed, Key128{0x1000 + i, 0xfeed0000 + i}}; }

// A loopback port nothing listens on.
int ClosedPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

TEST(RedisKeySlotTest, MatchesRedis) {
  EXPECT_EQ(RedisKeySlot("foo"), 12182);  // CLUSTER KEYSLOT foo
  EXPECT_EQ(RedisKeySlot("123456789"), 0x31C3 % kRedisSlots);
  EXPECT_EQ(RedisKeySlot("{user1000}.following"), RedisKeySlot("{user1000}.followers"));
  EXPECT_EQ(RedisKeySlot("{}x"), RedisKeySlot("{}x"));
  EXPECT_NE(RedisKeySlot("{}a"), RedisKeySlot("{}b")) << "an empty tag hashes the whole key";
}

class RemoteTierTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!testing::RedisServerAvailable()) return;
    auto c = LocalRedisCluster::Start({});
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = std::move(*c).release();
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  void SetUp() override {
    if (!testing::RedisServerAvailable()) GTEST_SKIP() << testing::kRedisMissingMessage;
    ASSERT_NE(cluster_, nullptr);
  }
  RemoteTierOptions Opts() {
    RemoteTierOptions o;
    o.nodes = {cluster_->Seeds().front()};  // one seed: the rest comes from CLUSTER SLOTS
    o.key_prefix = absl::StrCat("t", ++prefix_counter_, ":");
    o.measure = false;
    return o;
  }
  std::string CliGet(const std::string& key) {
    auto r = cluster_->Cli(cluster_->MasterPorts().front(), {"-c", "GET", key});
    return r.ok() ? *r : "<error>";
  }

  static LocalRedisCluster* cluster_;
  static int prefix_counter_;
};
LocalRedisCluster* RemoteTierTest::cluster_ = nullptr;
int RemoteTierTest::prefix_counter_ = 0;

TEST_F(RemoteTierTest, PipelinedBatchSpansEveryMaster) {
  RedisClusterOptions co;
  co.seeds = cluster_->Seeds();
  auto rc = RedisCluster::Create(co);
  ASSERT_TRUE(rc.ok()) << rc.status();
  const auto st = (*rc)->Stats();
  EXPECT_TRUE(st.up);
  EXPECT_EQ(st.nodes, 3u);
  std::vector<std::string> keys, vals;
  std::set<int> slots_seen;
  for (int i = 0; i < 200; ++i) {
    keys.push_back(absl::StrCat("batch:", i));
    vals.push_back(std::string(static_cast<size_t>(i) * 37 + 1, static_cast<char>('a' + i % 26)));
    slots_seen.insert(RedisKeySlot(keys.back()) / 5462);  // roughly which master
  }
  EXPECT_GE(slots_seen.size(), 3u);
  std::vector<RedisCommand> sets, gets;
  for (int i = 0; i < 200; ++i) {
    sets.push_back({{"SET", keys[i], vals[i]}, keys[i]});
    gets.push_back({{"GET", keys[i]}, keys[i]});
  }
  for (const auto& r : (*rc)->Execute(sets)) ASSERT_TRUE(r.ok()) << r.status;
  auto got = (*rc)->Execute(gets);
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(got[i].ok()) << got[i].status;
    EXPECT_EQ(got[i].str(), vals[i]) << keys[i];
  }
  RedisCommand missing{{"GET", "batch:none"}, "batch:none"};
  auto m = (*rc)->Execute(std::span<const RedisCommand>(&missing, 1));
  ASSERT_TRUE(m[0].ok());
  EXPECT_TRUE(m[0].nil());
  // An error reply is that command's error, not the batch's.
  std::vector<RedisCommand> mixed = {{{"INCR", keys[1]}, keys[1]}, {{"GET", keys[2]}, keys[2]}};
  auto mr = (*rc)->Execute(mixed);
  EXPECT_FALSE(mr[0].ok());
  EXPECT_TRUE(mr[1].ok());
  EXPECT_EQ(mr[1].str(), vals[2]);
}

TEST_F(RemoteTierTest, FollowsMovedWhenASlotChangesOwner) {
  RedisClusterOptions co;
  co.seeds = cluster_->Seeds();
  auto rc = RedisCluster::Create(co);
  ASSERT_TRUE(rc.ok()) << rc.status();
  // An empty slot is reassigned by CLUSTER SETSLOT ... NODE on every master; the
  // client's slot map is then stale and the old owner answers MOVED.
  std::string key;
  for (int i = 0;; ++i) {
    key = absl::StrCat("moving:", i);
    auto n = cluster_->Cli(cluster_->MasterPorts().front(), {"CLUSTER", "COUNTKEYSINSLOT",
                                                            std::to_string(RedisKeySlot(key))});
    if (n.ok() && *n == "0\n") break;
  }
  const std::string slot = std::to_string(RedisKeySlot(key));
  const auto masters = cluster_->MasterPorts();
  int owner = -1;
  for (int p : masters) {
    auto r = cluster_->Cli(p, {"GET", key});
    if (r.ok()) owner = p;  // the owner answers; the others reply MOVED (an error)
  }
  ASSERT_GT(owner, 0);
  int target = masters[0] == owner ? masters[1] : masters[0];
  auto target_id = cluster_->Cli(target, {"CLUSTER", "MYID"});
  ASSERT_TRUE(target_id.ok());
  std::string id = *target_id;
  while (!id.empty() && (id.back() == '\n' || id.back() == '\r')) id.pop_back();
  for (int p : masters) ASSERT_TRUE(cluster_->Cli(p, {"CLUSTER", "SETSLOT", slot, "NODE", id}).ok());
  const uint64_t redirects_before = (*rc)->Stats().redirects;
  RedisCommand set{{"SET", key, "moved-value"}, key};
  auto r = (*rc)->Execute(std::span<const RedisCommand>(&set, 1));
  ASSERT_TRUE(r[0].ok()) << r[0].status;
  EXPECT_GT((*rc)->Stats().redirects, redirects_before);
  auto direct = cluster_->Cli(target, {"GET", key});
  ASSERT_TRUE(direct.ok()) << direct.status();
  EXPECT_EQ(*direct, "moved-value\n");
}

TEST_F(RemoteTierTest, WritesReadBackCheckedAndDeletesPropagate) {
  auto rt = RemoteTier::Create(Opts());
  ASSERT_TRUE(rt.ok()) << rt.status();
  RemoteTier& r = **rt;
  const auto raw = Container(1);
  const auto lossy = Container(2, "quant-k4v4-g64");
  ASSERT_TRUE(r.Enqueue(KeyOf(1), raw));
  ASSERT_TRUE(r.Enqueue(KeyOf(2), lossy));
  ASSERT_TRUE(r.Drain(std::chrono::seconds(5)));
  EXPECT_EQ(r.Stats().written, 2u);

  const EntryKey keys[] = {KeyOf(1), KeyOf(2), KeyOf(3)};
  auto heads = r.Heads(keys);
  ASSERT_EQ(heads.size(), 3u);
  ASSERT_TRUE(heads[0].has_value());
  const uint64_t total0 = heads[0]->total_bytes;  // packed header: copy before comparing
  EXPECT_EQ(total0, raw.size());
  ASSERT_TRUE(heads[1].has_value());
  const uint64_t total1 = heads[1]->total_bytes;
  EXPECT_EQ(total1, lossy.size());
  EXPECT_FALSE(heads[2].has_value());

  for (int i = 0; i < 2; ++i) {
    const auto& want = i == 0 ? raw : lossy;
    std::vector<std::byte> buf;
    auto n = r.Get(KeyOf(1 + i), [&](uint64_t size) -> absl::StatusOr<ByteSpan> {
      buf.resize(size);
      return ByteSpan(buf);
    });
    ASSERT_TRUE(n.ok()) << n.status();
    EXPECT_EQ(*n, want.size());
    EXPECT_TRUE(buf == want) << "the remote copy is the container, byte for byte";
  }
  auto miss = r.Get(KeyOf(3), [](uint64_t) -> absl::StatusOr<ByteSpan> { return ByteSpan(); });
  EXPECT_TRUE(absl::IsNotFound(miss.status()));

  const EntryKey k1[] = {KeyOf(1), KeyOf(3)};
  const auto del = r.Delete(k1);
  EXPECT_TRUE(del[0]);
  EXPECT_FALSE(del[1]) << "key 3 was never written";
  EXPECT_EQ(CliGet(r.RedisKey(KeyOf(1))), "\n") << "DEL reached Redis";
  EXPECT_FALSE(r.Delete(k1)[0]);
}

TEST_F(RemoteTierTest, ACorruptValueIsAMissNeverBytes) {
  auto rt = RemoteTier::Create(Opts());
  ASSERT_TRUE(rt.ok()) << rt.status();
  RemoteTier& r = **rt;
  auto good = Container(3);
  ASSERT_TRUE(r.Enqueue(KeyOf(5), good));
  ASSERT_TRUE(r.Drain(std::chrono::seconds(5)));
  // Flip one payload byte behind the daemon's back (SETRANGE keeps the length).
  const std::string name = r.RedisKey(KeyOf(5));
  const std::string at = std::to_string(good.size() - 7);
  const char flipped = static_cast<char>(static_cast<unsigned char>(good[good.size() - 7]) ^ 0x40);
  ASSERT_TRUE(cluster_->Cli(cluster_->MasterPorts().front(), {"-c", "SETRANGE", name, at, std::string(1, flipped)}).ok());
  bool sink_called = false;
  auto got = r.Get(KeyOf(5), [&](uint64_t) -> absl::StatusOr<ByteSpan> {
    sink_called = true;
    return absl::InternalError("must not be called");
  });
  EXPECT_TRUE(absl::IsNotFound(got.status())) << got.status();
  EXPECT_FALSE(sink_called) << "a value that fails its check is never copied out";
  EXPECT_GE(r.Stats().checksum_failures, 1u);
  // A value that is not a container at all: its head fails too.
  ASSERT_TRUE(cluster_->Cli(cluster_->MasterPorts().front(),
                            {"-c", "SET", r.RedisKey(KeyOf(6)), std::string(100, 'x')}).ok());
  const EntryKey k6[] = {KeyOf(6)};
  EXPECT_FALSE(r.Heads(k6)[0].has_value());
}

TEST_F(RemoteTierTest, OversizeWritesAreNotSentAndLeaveNoStaleValue) {
  auto o = Opts();
  o.max_value_bytes = 64 << 10;
  auto rt = RemoteTier::Create(o);
  ASSERT_TRUE(rt.ok()) << rt.status();
  RemoteTier& r = **rt;
  const auto small = Container(4, "raw", 16);   // 8 KiB
  const auto big = Container(5, "raw", 256);    // 128 KiB > limit
  ASSERT_LT(small.size(), o.max_value_bytes);
  ASSERT_GT(big.size(), o.max_value_bytes);
  ASSERT_TRUE(r.Enqueue(KeyOf(7), small));
  ASSERT_TRUE(r.Drain(std::chrono::seconds(5)));
  EXPECT_FALSE(r.Enqueue(KeyOf(7), big)) << "over max_value_bytes";
  ASSERT_TRUE(r.Drain(std::chrono::seconds(5)));
  EXPECT_EQ(r.Stats().too_large, 1u);
  const EntryKey k[] = {KeyOf(7)};
  EXPECT_FALSE(r.Heads(k)[0].has_value()) << "the older value was deleted, not left to serve";
  EXPECT_EQ(r.Stats().write_bytes, small.size());
}

TEST_F(RemoteTierTest, AnUnreachableClusterCostsBoundedTimeAndNothingElse) {
  RemoteTierOptions o;
  o.nodes = {absl::StrCat("127.0.0.1:", ClosedPort()), absl::StrCat("127.0.0.1:", ClosedPort())};
  o.timeout_ms = 50;
  o.measure = true;  // must give up quickly too
  const auto t0 = Clock::now();
  auto rt = RemoteTier::Create(o);
  ASSERT_TRUE(rt.ok()) << rt.status();
  RemoteTier& r = **rt;
  EXPECT_FALSE(r.link().measured);
  EXPECT_FALSE(r.Stats().up);
  const EntryKey keys[] = {KeyOf(1), KeyOf(2)};
  for (int i = 0; i < 20; ++i) {
    auto h = r.Heads(keys);
    EXPECT_FALSE(h[0].has_value());
    auto g = r.Get(KeyOf(1), [](uint64_t) -> absl::StatusOr<ByteSpan> { return ByteSpan(); });
    EXPECT_TRUE(absl::IsNotFound(g.status()));
  }
  (void)r.Enqueue(KeyOf(1), Container(6));
  (void)r.Drain(std::chrono::seconds(2));
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  // 41 calls; nodes that refuse are backed off, so far less than 41 x 2 x timeout.
  EXPECT_LT(s, 2.0);
  const auto st = r.Stats();
  EXPECT_GT(st.errors[0] + st.errors[1], 0u);
  EXPECT_EQ(st.written, 0u);
}

TEST_F(RemoteTierTest, ASlowClusterTimesOutWithinTheBoundThenRecovers) {
  auto o = Opts();
  o.timeout_ms = 100;
  auto rt = RemoteTier::Create(o);
  ASSERT_TRUE(rt.ok()) << rt.status();
  RemoteTier& r = **rt;
  const auto v = Container(7);
  ASSERT_TRUE(r.Enqueue(KeyOf(8), v));
  ASSERT_TRUE(r.Drain(std::chrono::seconds(5)));
  // Every master stops answering for 1.5 s (connections stay open: a slow Redis).
  for (int p : cluster_->MasterPorts()) {
    ASSERT_TRUE(cluster_->Cli(p, {"CLIENT", "PAUSE", "1500", "ALL"}).ok());
  }
  const EntryKey k[] = {KeyOf(8)};
  for (int i = 0; i < 3; ++i) {
    const auto t0 = Clock::now();
    EXPECT_FALSE(r.Heads(k)[0].has_value());
    auto g = r.Get(KeyOf(8), [](uint64_t) -> absl::StatusOr<ByteSpan> { return ByteSpan(); });
    EXPECT_TRUE(absl::IsNotFound(g.status()));
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    EXPECT_LT(s, 0.6) << "two calls, each bounded by one 100 ms socket timeout";
  }
  EXPECT_GT(r.Stats().errors[0] + r.Stats().errors[1], 0u);
  // After the pause and the back-off the same value is a hit again.
  const auto deadline = Clock::now() + std::chrono::seconds(15);
  bool hit = false;
  while (!hit && Clock::now() < deadline) {
    std::vector<std::byte> buf;
    auto n = r.Get(KeyOf(8), [&](uint64_t size) -> absl::StatusOr<ByteSpan> {
      buf.resize(size);
      return ByteSpan(buf);
    });
    hit = n.ok() && buf == v;
    if (!hit) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(hit);
}

TEST_F(RemoteTierTest, AfterAFailoverReadsAreHitsOrMissesNeverWrongBytes) {
  // Runs last in this suite's order of declaration: it kills a master.
  auto rt = RemoteTier::Create(Opts());
  ASSERT_TRUE(rt.ok()) << rt.status();
  RemoteTier& r = **rt;
  std::vector<std::vector<std::byte>> vals;
  for (int i = 0; i < 24; ++i) {
    vals.push_back(Container(100 + i, i % 2 ? "quant-k2v2-g64" : "raw", 32));
    ASSERT_TRUE(r.Enqueue(KeyOf(100 + i), vals.back()));
  }
  ASSERT_TRUE(r.Drain(std::chrono::seconds(5)));
  ASSERT_EQ(r.Stats().written, 24u);
  auto killed = cluster_->KillMasterOfSlot(RedisKeySlot(r.RedisKey(KeyOf(100))));
  ASSERT_TRUE(killed.ok()) << killed.status();
  int hits = 0;
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < deadline) {
    hits = 0;
    for (int i = 0; i < 24; ++i) {
      std::vector<std::byte> buf;
      auto n = r.Get(KeyOf(100 + i), [&](uint64_t size) -> absl::StatusOr<ByteSpan> {
        buf.resize(size);
        return ByteSpan(buf);
      });
      if (!n.ok()) {
        EXPECT_TRUE(absl::IsNotFound(n.status())) << n.status();
        continue;
      }
      ASSERT_TRUE(buf == vals[i]) << "wrong bytes for entry " << i;
      ++hits;
    }
    if (hits == 24) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  // Replicas had the writes (the harness waits for sync only at start; these were
  // written after, so a few may be lost): most must still be hits after the refresh.
  EXPECT_GE(hits, 12) << "the client never found the promoted replica";
  EXPECT_TRUE(r.Stats().up);
}

}  // namespace
}  // namespace adaptcache
