// Per-entry access statistics for the optimizer (DESIGN.md §7): an exponentially decayed
// access frequency and the last access time, updated on the request path.
//
//   on access at time t:  f <- f * 2^(-(t - t_last) / half_life) + 1,  t_last <- t
//   read at time t:       f * 2^(-(t - t_last) / half_life)
//
// Decay is computed lazily from the stored timestamp, so nothing runs in the background.
// Times are caller-supplied nanoseconds on any monotonic clock (the library reads no
// clock); an access older than the stored one does not decay (out-of-order updates
// from different threads add 1 without rewinding time).
//
// Thread safety: every method may be called concurrently. The table is split into
// shards by key hash, each with its own mutex, so concurrent accesses to different
// entries rarely contend. Memory: one slot of sizeof(Slot) bytes (plus one control byte)
// per tracked entry in a flat hash table; BytesPerEntry() reports the measured figure.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "common/key.h"

namespace adaptcache::policy {

struct AccessStatsOptions {
  int64_t half_life_ns = 600'000'000'000;  // 10 minutes
  uint32_t shards = 64;                    // rounded up to a power of two
  uint64_t max_entries = 0;                // 0 = unbounded; else new keys beyond it are refused
};

struct AccessRecord {
  float freq = 0.f;         // decayed to `last_access_ns`
  int64_t last_access_ns = 0;
};

class AccessStats {
 public:
  // half_life_ns > 0 and 1 <= shards <= 4096.
  static absl::StatusOr<std::unique_ptr<AccessStats>> Create(const AccessStatsOptions& options);
  ~AccessStats();

  // Records one access. Returns false (and records nothing) only when the key is new
  // and max_entries are already tracked.
  bool Record(const EntryKey& key, int64_t now_ns);
  // The record decayed to now_ns (freq as it would read at now_ns), if tracked.
  std::optional<AccessRecord> Get(const EntryKey& key, int64_t now_ns) const;
  // Frequency decayed to now_ns; 0 when not tracked.
  float Frequency(const EntryKey& key, int64_t now_ns) const;
  bool Erase(const EntryKey& key);
  uint64_t size() const;
  // Visits every record decayed to now_ns, one shard locked at a time (for building
  // the optimizer's input). `fn` must not call back into this object.
  void ForEach(int64_t now_ns, const std::function<void(const EntryKey&, const AccessRecord&)>& fn) const;
  // RAM per tracked entry, including the hash table's empty slots and control bytes.
  double BytesPerEntry() const;

  // The decay rule, exposed for tests and for callers that store records elsewhere.
  static float Decay(float freq, int64_t from_ns, int64_t to_ns, int64_t half_life_ns);

 private:
  struct Shard;
  explicit AccessStats(const AccessStatsOptions& options);
  Shard& ShardFor(const EntryKey& key) const;

  AccessStatsOptions options_;
  std::vector<std::unique_ptr<Shard>> shards_;
  uint32_t shard_mask_ = 0;
  std::atomic<uint64_t> size_{0};  // tracked entries, for the max_entries bound
};

}  // namespace adaptcache::policy
