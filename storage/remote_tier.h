// The remote tier: containers shared by several daemons through Redis Cluster
// (DESIGN.md §6). The tier manager falls through to it after DRAM and SSD; the RPC layer
// does not see it.
//
// Values are the self-describing containers exactly as stored locally (a lossy entry
// stays compressed on the wire and at rest). The Redis key is
// `<prefix><namespace id, 16 hex>:<key, 32 hex>`. Every read checks the container's
// header CRC and payload CRC; a value that fails is a miss.
//
// Writes are asynchronous: a bounded queue (entries and bytes) drained by one writer
// thread that pipelines SETs. A write that cannot be queued (too large, queue full)
// queues a DEL instead, so an older value of the key cannot serve after a newer local
// Put. Delete drops the key's queued writes, waits for one in flight, then DELs.
// Capacity and eviction are Redis's own (maxmemory, allkeys-lru).
//
// Every Redis call is bounded by timeout_ms per socket operation; a failed node is
// skipped for a back-off (storage/redis_cluster.h), so a Redis outage costs at most
// one timeout per node per back-off and the local tiers keep serving.
//
// Thread safety: every public method may be called concurrently.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/key.h"
#include "kernels/container.h"
#include "storage/redis_cluster.h"

namespace adaptcache {

enum class RemoteWriteMode : uint8_t {
  kOff,           // read-only: serve what other daemons wrote
  kWriteThrough,  // every Put is queued to the remote tier
  kOnEviction,    // DRAM victims are queued (beside any SSD demotion)
};
std::string_view RemoteWriteModeName(RemoteWriteMode m);  // "off", "write-through", "on-eviction"
absl::StatusOr<RemoteWriteMode> ParseRemoteWriteMode(std::string_view text);

struct RemoteTierOptions {
  std::vector<std::string> nodes;  // seed nodes, "host:port"
  std::string password;
  RemoteWriteMode write_mode = RemoteWriteMode::kWriteThrough;
  uint32_t timeout_ms = 100;
  uint64_t max_value_bytes = 64ull << 20;  // larger containers are never sent
  uint64_t queue_bytes = 256ull << 20;     // bytes of queued writes
  uint32_t queue_entries = 4096;
  std::string key_prefix = "adaptcache:v1:";
  // Measure the round trip and bandwidth at start-up (PING, and a 1 MiB probe value
  // SET, GET and DEL under `<prefix>probe:<random>`).
  bool measure = true;
};

// What the delay model needs: seconds of one round trip, bytes/s of a value transfer.
struct RemoteLink {
  double latency_s = 0;
  double bandwidth_Bps = 0;
  bool measured = false;
};

struct RemoteTierStats {
  bool up = false;
  uint32_t nodes = 0;
  uint64_t hits = 0;             // Gets served
  uint64_t misses = 0;           // Gets that found nothing (or nothing valid)
  uint64_t lookup_hits = 0;      // keys found by Heads
  uint64_t lookup_misses = 0;
  uint64_t checksum_failures = 0;  // values (or heads) that failed their check
  uint64_t errors[4] = {};       // by op: lookup, get, set, del (timeouts, I/O, errors)
  uint64_t written = 0;          // SETs acknowledged
  uint64_t write_bytes = 0;
  uint64_t dropped = 0;          // writes not queued (queue full) or superseded
  uint64_t too_large = 0;        // writes over max_value_bytes
  uint64_t write_failed = 0;     // SETs that failed
  uint64_t read_bytes = 0;
  uint64_t queue_bytes = 0;      // gauge
  uint64_t queue_entries = 0;    // gauge
  uint64_t refreshes = 0;        // slot-map refreshes
  uint64_t redirects = 0;
};

class RemoteTier {
 public:
  static absl::StatusOr<std::unique_ptr<RemoteTier>> Create(RemoteTierOptions opts);
  // Sends what is queued for up to 2 s, then drops the rest.
  ~RemoteTier();
  RemoteTier(const RemoteTier&) = delete;
  RemoteTier& operator=(const RemoteTier&) = delete;

  // The container header of each key the remote tier holds (header CRC checked), else
  // nullopt (miss or error). One pipelined round trip for the whole batch.
  std::vector<std::optional<ContainerHeader>> Heads(std::span<const EntryKey> keys);
  // Reads the value and checks it; `sink(n)` provides n bytes to copy it into (e.g. a
  // DRAM extent). Returns the size. NotFound on a miss, an error or a failed check
  // (the sink's buffer then holds no valid data); the sink's own error otherwise.
  absl::StatusOr<uint64_t> Get(const EntryKey& key,
                               const std::function<absl::StatusOr<ByteSpan>(uint64_t)>& sink);
  // Queues a copy of `container` for a SET. False when it was not queued (a DEL of the
  // key is queued instead).
  bool Enqueue(const EntryKey& key, ConstByteSpan container);
  // Drops queued writes of the keys, waits for ones in flight, DELs them in one
  // pipelined round trip. Per key: true if Redis held it (false also on an error, which
  // is counted and logged). If a write in flight outlasts the wait, the DELs are queued
  // behind it instead (and false is answered).
  std::vector<bool> Delete(std::span<const EntryKey> keys);
  // Waits until the queue is empty and nothing is in flight; false at the deadline.
  bool Drain(std::chrono::milliseconds timeout);

  RemoteWriteMode write_mode() const { return opts_.write_mode; }
  const RemoteTierOptions& options() const { return opts_; }
  RemoteLink link() const { return link_; }
  RemoteTierStats Stats() const;
  std::string RedisKey(const EntryKey& key) const;

 private:
  struct Op {
    EntryKey key;
    std::vector<std::byte> value;  // empty = DEL
    bool del = false;
  };
  enum OpKind { kLookup = 0, kGet = 1, kSet = 2, kDel = 3 };

  explicit RemoteTier(RemoteTierOptions opts);
  void WriterLoop();
  void NoteError(OpKind op, const absl::Status& st);
  void Measure();
  bool EnqueueLocked(Op op);
  // Removes the key's queued ops; returns how many were SETs.
  size_t UnqueueLocked(const EntryKey& key);

  RemoteTierOptions opts_;
  std::unique_ptr<RedisCluster> cluster_;
  RemoteLink link_;

  mutable std::mutex mu_;
  std::condition_variable cv_;       // queue changed, or an in-flight batch finished
  std::deque<Op> queue_;             // guarded by mu_
  uint64_t queued_bytes_ = 0;        // guarded by mu_
  absl::flat_hash_map<EntryKey, int> queued_keys_;  // guarded by mu_: ops per key in queue_
  absl::flat_hash_map<EntryKey, int> in_flight_;    // guarded by mu_: keys being written
  bool stop_ = false;                // guarded by mu_
  std::thread writer_;

  std::atomic<int64_t> last_log_ns_{0};
  std::atomic<uint64_t> hits_{0}, misses_{0}, lookup_hits_{0}, lookup_misses_{0},
      checksum_failures_{0}, written_{0}, write_bytes_{0}, dropped_{0}, too_large_{0},
      write_failed_{0}, read_bytes_{0};
  std::atomic<uint64_t> errors_[4] = {};
};

}  // namespace adaptcache
