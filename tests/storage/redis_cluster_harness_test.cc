// Self-test of tests/testing/redis_cluster.h: a real 3+3 Redis Cluster on loopback, a key
// written and read through different nodes, the master of its slot killed and the
// replica promoted, then the cluster stopped. Skips when redis-server is missing.
#include "tests/testing/redis_cluster.h"

#include <algorithm>
#include <chrono>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"

namespace adaptcache {
namespace {

using testing::LocalRedisCluster;
using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

int PortOf(const std::string& seed) {
  int port = 0;
  EXPECT_TRUE(absl::SimpleAtoi(seed.substr(seed.rfind(':') + 1), &port)) << seed;
  return port;
}

// "key:value" from INFO output.
std::string InfoField(const std::string& info, const std::string& key) {
  for (absl::string_view line : absl::StrSplit(info, '\n')) {
    line = absl::StripTrailingAsciiWhitespace(line);
    if (absl::ConsumePrefix(&line, key + ":")) return std::string(line);
  }
  return "";
}

// Waits until the master's replicas have acknowledged everything it has written, so a
// key written before a failover must survive it.
void WaitReplicated(const LocalRedisCluster& c, int master_port) {
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  std::string info;
  while (Clock::now() < deadline) {
    absl::StatusOr<std::string> r = c.Cli(master_port, {"INFO", "replication"});
    ASSERT_TRUE(r.ok()) << r.status();
    info = *r;
    const std::string offset = InfoField(info, "master_repl_offset");
    const std::string slave0 = InfoField(info, "slave0");
    if (!offset.empty() && slave0.find("offset=" + offset + ",") != std::string::npos) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  FAIL() << "replica of " << master_port << " did not catch up:\n" << info;
}

TEST(RedisClusterHarnessTest, WriteReadFailoverStop) {
  if (!testing::RedisServerAvailable()) GTEST_SKIP() << testing::kRedisMissingMessage;
  const auto t0 = Clock::now();
  absl::StatusOr<std::unique_ptr<LocalRedisCluster>> started = LocalRedisCluster::Start({});
  ASSERT_TRUE(started.ok()) << started.status();
  LocalRedisCluster& c = **started;
  const double start_s = SecondsSince(t0);

  const std::vector<std::string> seeds = c.Seeds();
  ASSERT_EQ(seeds.size(), 6u);
  std::vector<int> ports;
  for (const std::string& s : seeds) {
    EXPECT_EQ(s.rfind("127.0.0.1:", 0), 0u) << s;
    ports.push_back(PortOf(s));
  }
  const std::vector<int> masters = c.MasterPorts();
  ASSERT_EQ(masters.size(), 3u);

  // Write through one node, read through another; -c follows MOVED.
  const std::string key = "harness:key";
  absl::StatusOr<std::string> set = c.Cli(ports.front(), {"-c", "SET", key, "v1"});
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(*set, "OK\n");
  absl::StatusOr<std::string> get = c.Cli(ports.back(), {"-c", "GET", key});
  ASSERT_TRUE(get.ok()) << get.status();
  EXPECT_EQ(*get, "v1\n");
  // An error reply is an error status, not text.
  EXPECT_FALSE(c.Cli(ports.front(), {"NOSUCHCOMMAND"}).ok());

  absl::StatusOr<std::string> slot_text = c.Cli(ports.front(), {"CLUSTER", "KEYSLOT", key});
  ASSERT_TRUE(slot_text.ok()) << slot_text.status();
  int slot = -1;
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(*slot_text), &slot)) << *slot_text;

  // The owner is the master holding the key.
  int owner = -1;
  for (int m : masters) {
    absl::StatusOr<std::string> n =
        c.Cli(m, {"CLUSTER", "COUNTKEYSINSLOT", std::to_string(slot)});
    ASSERT_TRUE(n.ok()) << n.status();
    if (absl::StripAsciiWhitespace(*n) == "1") owner = m;
  }
  ASSERT_NE(owner, -1);
  WaitReplicated(c, owner);

  const auto t1 = Clock::now();
  absl::StatusOr<int> killed = c.KillMasterOfSlot(slot);
  ASSERT_TRUE(killed.ok()) << killed.status();
  const double failover_s = SecondsSince(t1);
  EXPECT_EQ(*killed, owner);

  const std::vector<int> after = c.MasterPorts();
  EXPECT_EQ(after.size(), 3u);
  EXPECT_EQ(std::count(after.begin(), after.end(), *killed), 0);
  for (int p : ports) {
    if (p == *killed) {
      absl::StatusOr<std::string> dead = c.Cli(p, {"PING"});
      EXPECT_EQ(dead.status().code(), absl::StatusCode::kUnavailable) << dead.status();
      continue;
    }
    absl::StatusOr<std::string> info = c.Cli(p, {"CLUSTER", "INFO"});
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(InfoField(*info, "cluster_state"), "ok") << "port " << p;
    absl::StatusOr<std::string> v = c.Cli(p, {"-c", "GET", key});
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(*v, "v1\n") << "port " << p;
  }
  int survivor = ports.front() == *killed ? ports.back() : ports.front();
  absl::StatusOr<std::string> set2 = c.Cli(survivor, {"-c", "SET", key, "v2"});
  ASSERT_TRUE(set2.ok()) << set2.status();
  EXPECT_EQ(*set2, "OK\n");

  c.StopAll();
  for (int p : ports) {
    EXPECT_EQ(c.Cli(p, {"PING"}).status().code(), absl::StatusCode::kUnavailable) << p;
  }
  EXPECT_TRUE(c.MasterPorts().empty());
  std::cout << "[harness] start " << start_s << " s, failover " << failover_s << " s, total "
            << SecondsSince(t0) << " s\n";
}

// With a password every node requires AUTH (the harness passes it to redis-cli); without
// replicas there is nothing to fail over to, so KillMasterOfSlot refuses.
TEST(RedisClusterHarnessTest, PasswordNoReplicas) {
  if (!testing::RedisServerAvailable()) GTEST_SKIP() << testing::kRedisMissingMessage;
  LocalRedisCluster::Options o;
  o.replicas_per_master = 0;
  o.password = "harness-secret";
  absl::StatusOr<std::unique_ptr<LocalRedisCluster>> started = LocalRedisCluster::Start(o);
  ASSERT_TRUE(started.ok()) << started.status();
  LocalRedisCluster& c = **started;
  ASSERT_EQ(c.Seeds().size(), 3u);
  EXPECT_EQ(c.MasterPorts().size(), 3u);
  const int port = PortOf(c.Seeds()[0]);
  absl::StatusOr<std::string> req = c.Cli(port, {"CONFIG", "GET", "requirepass"});
  ASSERT_TRUE(req.ok()) << req.status();
  EXPECT_EQ(*req, "requirepass\nharness-secret\n");
  absl::StatusOr<std::string> set = c.Cli(port, {"-c", "SET", "k", "v"});
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(c.KillMasterOfSlot(0).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(c.MasterPorts().size(), 3u);  // nothing was killed
}

}  // namespace
}  // namespace adaptcache
