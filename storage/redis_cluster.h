// A small Redis Cluster client over hiredis (Debian's libhiredis has no cluster support):
// the slot map from CLUSTER SLOTS, MOVED/ASK handling, refresh on topology change, one
// connection pool per node, and a bounded wait on every socket operation. A standalone
// Redis (cluster support disabled) is served as one node that owns every slot.
//
// Execute() sends a batch of single-key commands pipelined per node, all nodes written
// before any is read, so a batch costs one round trip (plus one per redirect).
//
// Failure handling: a node that fails to connect or times out is marked down for a
// back-off (250 ms doubling to 5 s); commands routed to it fail at once with Unavailable
// until then, and the slot map is refreshed from the other nodes (a failover moves the
// slots to the promoted replica). Nothing here retries a command that may have run:
// a timed-out command is reported as failed.
//
// Thread safety: every public method may be called concurrently.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

struct redisReply;
struct redisContext;

namespace adaptcache {

inline constexpr int kRedisSlots = 16384;

// CRC16 (XMODEM) of the key, or of its first non-empty {hash tag}, mod 16384.
int RedisKeySlot(std::string_view key);

struct RedisClusterOptions {
  std::vector<std::string> seeds;  // "host:port"; at least one
  std::string password;            // AUTH on connect when not empty
  uint32_t timeout_ms = 100;       // connect, and every socket read or write
  uint32_t max_idle_per_node = 8;  // pooled connections kept per node
};

// One command's result. `status` is not OK on transport failure, timeout, routing
// failure or an error reply (its text in the message); then reply is null.
struct RedisResult {
  absl::Status status;
  std::shared_ptr<redisReply> reply;

  bool ok() const { return status.ok(); }
  bool nil() const;                // a nil bulk string (missing key)
  std::string_view str() const;    // bulk or status string; empty otherwise
  long long integer() const;       // integer reply; 0 otherwise
};

// A command: argv[0] is the verb; `key` (usually argv[1]) picks the slot. The views
// must stay valid during Execute.
struct RedisCommand {
  std::vector<std::string_view> argv;
  std::string_view key;
};

struct RedisClusterStats {
  bool up = false;            // the last slot refresh succeeded and no node is down
  uint32_t nodes = 0;         // masters in the slot map
  uint64_t refreshes = 0;     // successful slot-map refreshes
  uint64_t redirects = 0;     // MOVED and ASK replies followed
  uint64_t node_failures = 0; // connect failures, timeouts and broken connections
};

class RedisCluster {
 public:
  // Validates the options; does not need the cluster to be reachable (the slot map is
  // loaded on first use and retried after failures).
  static absl::StatusOr<std::unique_ptr<RedisCluster>> Create(RedisClusterOptions opts);
  ~RedisCluster();
  RedisCluster(const RedisCluster&) = delete;
  RedisCluster& operator=(const RedisCluster&) = delete;

  // Results in the order of `cmds`.
  std::vector<RedisResult> Execute(std::span<const RedisCommand> cmds);
  // Reloads the slot map from the first node that answers CLUSTER SLOTS.
  absl::Status Refresh();
  RedisClusterStats Stats() const;

 private:
  struct Node;
  struct Conn;
  explicit RedisCluster(RedisClusterOptions opts);
  // Index of the node at host:port, added when new. Under no lock.
  int NodeIndex(const std::string& host, int port);
  absl::StatusOr<std::unique_ptr<Conn>> Acquire(int node);
  void Release(int node, std::unique_ptr<Conn> c);
  void MarkDown(int node, const std::string& why);
  void MaybeRefresh();
  absl::Status RefreshFrom(int node);

  RedisClusterOptions opts_;
  mutable std::shared_mutex map_mu_;
  std::vector<std::unique_ptr<Node>> nodes_;          // guarded by map_mu_; never shrinks
  absl::flat_hash_map<std::string, int> node_index_;  // "host:port" -> index
  std::array<int16_t, kRedisSlots> slot_node_;        // -1 = unknown
  std::vector<int> seed_nodes_;
  std::mutex refresh_mu_;  // one Refresh at a time
  // The refresher thread: on request (MOVED, a failed node) and every 10 s.
  std::mutex refresher_mu_;
  std::condition_variable refresher_cv_;
  bool refresh_requested_ = false;  // guarded by refresher_mu_
  bool stop_ = false;               // guarded by refresher_mu_
  std::thread refresher_;
  std::atomic<bool> map_ok_{false};
  std::atomic<uint64_t> refreshes_{0}, redirects_{0}, node_failures_{0};
};

}  // namespace adaptcache
