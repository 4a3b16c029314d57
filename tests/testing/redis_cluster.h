// A real Redis Cluster on loopback for tests: redis-server processes started by
// fork/exec (redis-server from PATH), the cluster created with `redis-cli --cluster
// create`, and admin commands run through redis-cli (no hiredis here).
//
//   if (!testing::RedisServerAvailable()) GTEST_SKIP() << testing::kRedisMissingMessage;
//   auto cluster = testing::LocalRedisCluster::Start({});  // 3 masters, 1 replica each
//   ASSERT_TRUE(cluster.ok()) << cluster.status();
//   Client c((*cluster)->Seeds());
//
// Every node has its own temporary directory under /var/tmp (removed by the destructor;
// its redis.log is kept until then for inspection). The nodes get
// PR_SET_PDEATHSIG(SIGKILL): they die with the thread that called Start (so call Start
// from the test's main thread or a thread that outlives the cluster), and do not
// linger when the test process is killed.
//
// Thread safety: Seeds() and Cli() may be called from several threads at once;
// Start/KillMasterOfSlot/StopAll/the destructor must not race with anything else.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace adaptcache::testing {

// True when both redis-server and redis-cli are found on PATH (executable).
bool RedisServerAvailable();

// What a test prints when it skips for want of Redis.
inline constexpr char kRedisMissingMessage[] =
    "redis-server/redis-cli not found on PATH (Debian: apt-get install redis-server); "
    "skipping the Redis Cluster test";

class LocalRedisCluster {
 public:
  struct Options {
    int masters = 3;
    int replicas_per_master = 1;
    std::string password;  // empty: no AUTH; else --requirepass/--masterauth on every node
    int node_timeout_ms = 1000;  // --cluster-node-timeout (failure detection and failover)
  };

  // Starts masters*(1+replicas_per_master) nodes on free loopback ports, creates the
  // cluster and waits (at most ~30 s) until every node reports cluster_state:ok, sees
  // every other node with the right role, and every replica's link is up. On failure
  // the nodes started so far are killed and the status carries the tail of their logs.
  static absl::StatusOr<std::unique_ptr<LocalRedisCluster>> Start(Options options);

  // SIGTERM to every live node, SIGKILL after a short grace, waitpid, then removes the
  // temporary directories.
  ~LocalRedisCluster();
  LocalRedisCluster(const LocalRedisCluster&) = delete;
  LocalRedisCluster& operator=(const LocalRedisCluster&) = delete;

  // "127.0.0.1:P" of every node started, in start order, including nodes killed since
  // (a client must cope with dead seeds).
  std::vector<std::string> Seeds() const;

  // Ports of the current masters as the cluster reports them (CLUSTER NODES asked of a
  // live node), not flagged fail/fail? and not killed by this harness; ascending.
  // Empty when no live node answers.
  std::vector<int> MasterPorts() const;

  // SIGKILLs the master that owns `slot` (0..16383), then waits (bounded, ~30 s) until on
  // every surviving node the slot is served by another master (the promoted replica)
  // and cluster_state is ok. Returns the killed port. FailedPrecondition (nothing
  // killed) when the owner has no replica to promote.
  absl::StatusOr<int> KillMasterOfSlot(int slot);

  // SIGKILLs every node and reaps it; the cluster is gone (Cli then fails with
  // Unavailable). The temporary directories stay until destruction.
  void StopAll();

  // Runs `redis-cli -h 127.0.0.1 -p port [-a password] -e <args...>` and returns its
  // stdout verbatim (raw formatting: "v\n" for GET of "v", "OK\n" for SET, one line per
  // array element). Put redis-cli options such as "-c" (follow MOVED/ASK) first in
  // `args`. Errors: Unavailable when the node cannot be reached, Internal for an error
  // reply (the message has redis-cli's output), DeadlineExceeded after 10 s.
  absl::StatusOr<std::string> Cli(int port, const std::vector<std::string>& args) const;

 private:
  struct Node {
    int port = 0;
    pid_t pid = -1;  // -1 once killed and reaped
    std::string dir;
  };

  explicit LocalRedisCluster(Options options) : options_(std::move(options)) {}

  absl::Status StartNodes();
  absl::Status StartNode(Node& node, std::vector<int>& taken);
  absl::Status CreateCluster();
  absl::Status WaitHealthy(int timeout_ms);
  absl::Status CheckHealthy() const;
  absl::StatusOr<std::string> AnyLiveCli(const std::vector<std::string>& args) const;
  void KillNode(Node& node, int sig);
  std::string LogTails() const;
  absl::Status WithLogs(const absl::Status& s) const;

  Options options_;
  std::vector<Node> nodes_;
};

}  // namespace adaptcache::testing
