// The DRAM tier: one pool in shared memory that local clients map, a variable-size
// allocator inside it, an index of committed entries, leases and reservations, and LRU
// eviction of unleased entries when space runs out.
//
// Lifecycle of a write:   Allocate -> write container bytes via Bytes() -> Commit
//                         (or Free if the write is abandoned).
// Shared-memory Put:      Reserve (extent with an expiry; the client writes the raw
//                         tensor into it) -> TakeReservation -> encode elsewhere -> Free.
// A read:                 Acquire (lease pins the entry) -> read Bytes() -> Release.
//
// Nothing that a lease or reservation covers is freed, moved or reused until the lease
// is released or expires. Deleting or replacing a leased entry unlinks it from the index
// at once and frees its extent when the last lease ends. Expired leases and
// reservations are reaped by ReapExpired() (called by a background thread in the
// server) and lazily when space is needed.
//
// Thread safety: every method may be called concurrently from any thread.
#pragma once

#include <chrono>
#include <functional>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/key.h"
#include "common/kv_shape.h"
#include "kernels/container.h"
#include "storage/shm_region.h"

namespace adaptcache {

struct EntryMeta;

// The pid in a pool file name "<name>-<pid>-<16 hex>.pool" (the names DramTier::Create
// makes), else 0.
pid_t PoolFileOwner(std::string_view file, const std::string& name);

struct DramTierOptions {
  uint64_t capacity_bytes = 1ull << 30;   // pool size; rounded up to the page size
  std::string shm_dir = "/dev/shm";       // where the pool file is created
  std::string name = "adaptcache";        // pool file is <shm_dir>/<name>-<pid>-<pool_id>.pool
  bool huge_pages = true;                 // madvise(MADV_HUGEPAGE); best effort
  bool mlock = true;                      // try to lock the pool; warn if refused
  // At Create, unlink pool files of this name left by dead instances (RemoveDeadShmFiles).
  bool remove_dead_pools = true;
  uint32_t default_lease_ms = 30'000;
  uint32_t max_lease_ms = 300'000;
  uint64_t max_leases = 1 << 20;          // outstanding leases; beyond: ResourceExhausted
  uint32_t reservation_ms = 60'000;       // lifetime of an uncommitted reservation
  uint64_t max_reservation_bytes = 0;     // 0 = capacity/2
  // Called for each LRU victim that Allocate/Reserve evicts, under the tier's lock and
  // before the victim's extent can be reused; `bytes` are valid only during the call.
  // Not called for Erase or replacement by Commit. Must be short and must not call the
  // tier (the tier manager copies the bytes and queues them to SSD).
  std::function<void(const EntryKey&, const EntryMeta&, std::span<const std::byte>)>
      on_evict;
  // Expiry of leases and reservations; empty = steady_clock. Lease::expires and
  // Reservation::expires are still wall-clock times for clients.
  NanoClock clock;
};

// Metadata kept per entry (small: the index holds it for every entry).
struct EntryMeta {
  KvShape shape;
  CodecId codec_family = CodecId::kRaw;
  std::string codec;            // config name
  uint64_t raw_bytes = 0;       // shape.Bytes()
  uint32_t crc32c = 0;          // container payload CRC, for end-to-end checks
  float est_quality_loss = 0.f;
  uint64_t stored_bytes = 0;    // container size as committed (set by the server)
};

struct Extent {
  uint64_t offset = 0;
  uint64_t length = 0;
};

struct Lease {
  uint64_t id = 0;
  Extent extent;
  EntryMeta meta;
  std::chrono::system_clock::time_point expires;
};

struct Reservation {
  uint64_t id = 0;
  Extent extent;
  std::chrono::system_clock::time_point expires;
};

struct DramTierStats {
  uint64_t capacity_bytes = 0;
  uint64_t used_bytes = 0;        // allocated extents (entries + reservations + in-flight)
  uint64_t entry_bytes = 0;       // committed entries
  uint64_t entries = 0;
  uint64_t leases_outstanding = 0;
  uint64_t reservations_outstanding = 0;
  uint64_t evictions = 0;
  uint64_t expired_leases = 0;
  uint64_t largest_free_extent = 0;
  uint64_t reserved_bytes = 0;      // extents held by outstanding reservations
  uint64_t inflight_bytes = 0;      // allocated or taken, not yet committed or freed
  uint64_t zombie_entries = 0;      // erased/replaced but still leased
  uint64_t zombie_bytes = 0;
  uint64_t pinned_entry_bytes = 0;  // committed entries under at least one lease
  uint64_t expired_reservations = 0;
  uint64_t allocation_failures = 0; // Allocate/Reserve answered ResourceExhausted
  uint64_t invalid_frees = 0;       // Free() of an extent that was not in flight
  uint64_t free_extents = 0;
  double fragmentation = 0.0;       // 1 - largest_free_extent / free bytes
};

class DramTier {
 public:
  static absl::StatusOr<std::unique_ptr<DramTier>> Create(const DramTierOptions& opts);
  ~DramTier();  // unmaps and unlinks the pool file
  DramTier(const DramTier&) = delete;
  DramTier& operator=(const DramTier&) = delete;

  // Pool mapping, for the data plane.
  const std::string& shm_path() const;
  uint64_t pool_size() const;
  uint64_t pool_id() const;          // random per start
  std::byte* base() const;           // daemon's own mapping
  ByteSpan Bytes(const Extent& e) const;

  // Allocates `bytes` (evicting LRU unleased entries as needed, unless `evict` is false).
  // ResourceExhausted if the request can never fit, everything left is leased/reserved,
  // or (evict = false) no free extent is large enough.
  absl::StatusOr<Extent> Allocate(uint64_t bytes, bool evict = true);
  // Returns an extent obtained from Allocate or TakeReservation and never committed.
  // Anything else (unknown, already freed or committed, wrong length) is ignored,
  // counted in Stats().invalid_frees and logged.
  void Free(const Extent& e);
  // Publishes `e` (holding a container) under `key`, replacing any older entry.
  // `e` must be in flight (from Allocate or TakeReservation, not yet committed or
  // freed); e.length may be shorter than allocated, and the unused tail is returned to
  // the pool. InvalidArgument (and nothing changes) otherwise.
  absl::Status Commit(const EntryKey& key, const Extent& e, const EntryMeta& meta);

  // Metadata without a lease and without touching LRU order.
  std::optional<EntryMeta> Peek(const EntryKey& key) const;
  // Pins the entry for lease_ms (0 = default, capped at max). NotFound on a miss,
  // ResourceExhausted beyond max_leases. Counts as an access for LRU.
  absl::StatusOr<Lease> Acquire(const EntryKey& key, uint32_t lease_ms);
  // Ends a lease; false if it was unknown or already expired.
  bool Release(uint64_t lease_id);
  // Removes the entry; false if absent.
  bool Erase(const EntryKey& key);

  // Usage of the entries whose EntryKey::ns is in `namespaces` (a tenant's quota).
  // Committed entries of a group of namespaces; bytes = occupied pool bytes (4 KiB extents).
  NamespaceUsage UsageOf(std::span<const uint64_t> namespaces) const;
  // Evicts the group's least recently used unleased entries (through on_evict, like any
  // victim) until it holds at most max_bytes and max_entries (UINT64_MAX = no limit).
  // ResourceExhausted when leased entries alone exceed a limit.
  absl::Status EvictFrom(std::span<const uint64_t> namespaces, uint64_t max_bytes, uint64_t max_entries);

  // Space for a client to write into; it expires after reservation_ms.
  absl::StatusOr<Reservation> Reserve(uint64_t bytes);
  // Ends a reservation and hands its extent to the caller (who must Commit or Free it).
  // NotFound if unknown or expired.
  absl::StatusOr<Extent> TakeReservation(uint64_t reservation_id);

  // Drops expired leases and reservations; returns how many.
  size_t ReapExpired();
  DramTierStats Stats() const;

  // What the pool's best-effort set-up achieved (mlock, huge pages), for logs/metrics.
  const ShmRegionStatus& pool_status() const;
  // The pool file's descriptor (owned by the tier), e.g. to pass over a Unix socket.
  int shm_fd() const;

  // Visits every committed entry (under the tier's lock: keep `fn` short).
  void ForEach(const std::function<void(const EntryKey&, const EntryMeta&)>& fn) const;

  // ---- for the tier manager (storage/tier_manager.h) ----
  struct EntryView {
    EntryMeta meta;
    Extent extent;
    uint32_t leases = 0;  // outstanding leases
  };
  // Metadata, extent and lease count without a lease and without touching LRU order.
  std::optional<EntryView> Inspect(const EntryKey& key) const;
  // Same as ForEach, with the lease count of each entry.
  void ForEachWithLeases(
      const std::function<void(const EntryKey&, const EntryMeta&, uint32_t leases)>& fn) const;
  // Removes the entry only if it has no lease (LeasedError otherwise, common/status_kinds.h) and, when
  // given, its meta.crc32c equals `crc32c` (Aborted otherwise). NotFound if absent.
  absl::Status EraseIf(const EntryKey& key, std::optional<uint32_t> crc32c,
                       bool require_unleased);
  // Leases an in-flight extent (from Allocate) as an anonymous entry that is in no
  // index: readable through the lease like any entry, freed when the lease ends or
  // expires. InvalidArgument if `e` is not in flight (nothing changes then).
  absl::StatusOr<Lease> LeaseAnonymous(const Extent& e, const EntryMeta& meta,
                                       uint32_t lease_ms);

 private:
  struct Impl;
  explicit DramTier(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace adaptcache
