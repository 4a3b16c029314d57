// The tier manager: one view over the DRAM tier, the (optional) SSD tier and the
// (optional) remote tier (DESIGN.md §6). It moves containers between tiers; it never encodes or decodes them.
//
// Placement
//  - A new entry is committed to DRAM. When DRAM must make room, its LRU victims are
//    DEMOTED: their container bytes are copied (under the DRAM lock, before the extent
//    is reused) into a demotion buffer and queued to the SSD tier, subject to the SSD
//    admission rule and write budget; a refused demotion is a plain eviction. While the
//    write is in flight the entry stays readable from the demotion buffer. A victim whose
//    identical bytes (same CRC and size) are already on SSD is simply dropped.
//  - Get: a DRAM hit is leased. An SSD hit is read (on the caller's thread, no
//    global lock held) into a fresh DRAM extent, checked (SSD record CRC and container
//    CRC) and then either committed to DRAM (promotion, on the promote_after_hits-th SSD
//    hit) and leased, or leased as an anonymous extent that is freed at release.
//  - Put with durable=true writes the container through to SSD and returns only after
//    the SSD record and its index entry are durable.
//  - Delete removes the entry from every tier and cancels in-flight demotions.
//  - Remote tier (storage/remote_tier.h): Get and LocateMany fall through DRAM -> SSD ->
//    remote. A remote hit is CRC-checked, then committed to DRAM (unless
//    promote_after_hits is 0: then it is served once through an anonymous lease), so
//    later hits are local. Writes follow RemoteTierOptions::write_mode: every CommitPut
//    (write-through) or every DRAM victim (on-eviction) is queued; mover primitives
//    (Replace, Demote, Evict) never touch the remote tier. Locate, ForEach and the
//    policy see local copies only.
//  - Master copy: an entry may have a lossy DRAM copy and a high-fidelity SSD "master"
//    (Replace with keep_master). Lookup/Get serve the DRAM copy; ReadBest returns the
//    master; evicting the DRAM copy leaves the master (which then serves).
//  - Restart: the SSD tier reopens warm; DRAM starts empty. Metadata of SSD entries that
//    the manager has not seen since the restart (shape, codec config name) is learned on
//    their first read; before that, Lookup reads the entry's 64-byte container header
//    once (shape, codec family; cached) and reports that.
//
// Consistency: a mutation of a key (Put commit, Delete, Replace, Evict, promotion
// commit) takes a striped per-key mutex for a short, I/O-free critical section and bumps
// the stripe's version; a promotion whose stripe version changed during its SSD read is
// not committed (the read bytes are served once through an anonymous lease). Never
// returns bytes other than those of a committed copy of the key.
//
// Lock order: stripe mutex -> DRAM tier lock -> manager mutex (mu_) -> SSD tier locks.
// The DRAM eviction hook runs under the DRAM lock and takes mu_; so nothing here calls
// the DRAM tier while holding mu_.
//
// Thread safety: every public method may be called concurrently from any thread. Mover
// primitives (Demote, Promote, Replace, Evict, ReadBest, ForEach) never move or free a
// leased DRAM entry (Replace unlinks the old copy; its bytes stay valid until the last
// lease ends) and never hold a lock across I/O, so they do not block Put/Get for long.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "common/key.h"
#include "common/status_kinds.h"
#include "common/tier.h"
#include "kernels/container.h"
#include "storage/dram_tier.h"
#include "storage/remote_tier.h"
#include "storage/ssd_tier.h"

namespace adaptcache {

// Builds EntryMeta from container bytes (already CRC-checked by the caller). The server
// injects one that knows codec configs (kernels/codec.h ConfigOf); the default derives
// shape, family name and CRC from the container header alone.
using DescribeContainerFn = std::function<absl::StatusOr<EntryMeta>(ConstByteSpan container)>;
absl::StatusOr<EntryMeta> DescribeFromHeader(ConstByteSpan container);

struct TierManagerOptions {
  DramTierOptions dram;
  // The SSD tier; absent = DRAM only (evictions are losses).
  std::optional<SsdTierOptions> ssd;
  // Commit an SSD-read entry to DRAM on its N-th SSD hit (SsdEntryInfo::hits, counted
  // since the record was written); 0 = never promote on Get; 1 = on every SSD hit.
  uint32_t promote_after_hits = 2;
  // Demote DRAM LRU victims to SSD (else they are dropped, SSD is written only by
  // durable Puts and the mover).
  bool demote_on_evict = true;
  // The remote tier; absent = local tiers only.
  std::optional<RemoteTierOptions> remote;
  DescribeContainerFn describe;  // empty = DescribeFromHeader
};

// What Locate/Lookup report for a key.
struct Location {
  Tier tier = Tier::kNone;
  EntryMeta meta;            // meta.stored_bytes = container size
  bool meta_complete = true; // false: SSD entry not read since restart (no shape/name)
  bool on_ssd = false;       // an SSD copy exists (also for DRAM entries)
  bool ssd_master = false;   // the SSD copy is a higher-fidelity master of a DRAM copy
};

// A Get's result: a lease on DRAM bytes (release through Release()).
struct TierLease {
  Lease lease;
  Tier found_in = Tier::kNone;  // where the entry was when Get ran
  bool promoted = false;                      // an SSD hit committed to DRAM
};

struct TierPutOptions {
  // Also write the container to SSD and wait until it is durable (bypasses the SSD
  // admission rule and write budget: the client asked for it).
  bool durable = false;
};
struct TierPutResult {
  bool durable = false;  // the SSD copy is durable (only with TierPutOptions::durable)
  absl::Status ssd_status;  // why not, when durable was asked and failed
};

struct ReplaceOptions {
  Tier target = Tier::kDram;  // kDram or kSsd
  // With target kDram: keep (or first write) the current highest-fidelity copy on SSD
  // as the master. Ignored for kSsd.
  bool keep_master = false;
  // Replace only if the current best copy still has this container CRC (the one the
  // caller read with ReadBest); Aborted otherwise. nullopt = unconditional.
  std::optional<uint32_t> if_crc32c;
  // Skip the SSD admission rule and write budget for the SSD write (the mover enforces
  // its own budget); otherwise a refusal is returned and nothing changes.
  bool bypass_admission = false;
};

struct BestCopy {
  std::vector<std::byte> container;
  EntryMeta meta;
  Tier tier = Tier::kNone;  // where it was read from
  bool master = false;
};

// One entry as ForEach reports it. An entry with copies in both tiers is reported once,
// with tier kDram and on_ssd true.
struct TierEntry {
  EntryKey key;
  Tier tier = Tier::kNone;
  uint64_t stored_bytes = 0;       // of the serving copy
  uint64_t ssd_bytes = 0;          // of the SSD copy, 0 if none
  std::string codec;               // config name (family name if unknown)
  uint32_t crc32c = 0;
  uint32_t leases = 0;             // DRAM leases outstanding
  bool on_ssd = false;
  bool ssd_master = false;
  uint32_t ssd_hits = 0;
};

// What FlushToSsd did.
struct SsdFlushResult {
  uint64_t candidates = 0;  // DRAM entries with no identical SSD copy
  uint64_t written = 0;     // ... now durable on SSD
  uint64_t written_bytes = 0;
  uint64_t failed = 0;      // SSD refused or failed (full, I/O error) or entry changed
  bool timed_out = false;   // the deadline passed before every candidate was tried
};

struct TierManagerStats {
  DramTierStats dram;
  std::optional<SsdTierStats> ssd;
  std::optional<RemoteTierStats> remote;
  uint64_t dram_hits = 0;          // Gets served from DRAM
  uint64_t ssd_hits = 0;           // Gets served from SSD (incl. demotion buffers)
  uint64_t remote_hits = 0;        // Gets served from the remote tier
  uint64_t misses = 0;
  uint64_t promotions = 0;         // SSD hits committed to DRAM (Get and Promote)
  uint64_t anonymous_leases = 0;   // SSD hits served without promotion
  uint64_t demotions_queued = 0;   // DRAM victims queued to SSD
  uint64_t demotions_done = 0;     // ... and durable
  uint64_t demotions_failed = 0;   // ... and failed on SSD
  uint64_t demotions_clean = 0;    // victims already on SSD (no write)
  uint64_t demotions_refused = 0;  // refused by admission, budget or queue: evicted
  uint64_t evictions_lost = 0;     // DRAM victims dropped with no SSD copy
  uint64_t ssd_quota_drops = 0;    // SSD copies dropped to keep a tenant in its SSD quota
  uint64_t demoting_entries = 0;   // gauges: demotion buffers in flight
  uint64_t demoting_bytes = 0;
  uint64_t ssd_read_bytes = 0;     // container bytes read from SSD by Get/Promote
  uint64_t ssd_read_errors = 0;    // SSD reads that failed (corrupt, I/O): misses
  uint64_t durable_puts = 0;
  uint64_t master_entries = 0;
};

class TierManager {
 public:
  static absl::StatusOr<std::unique_ptr<TierManager>> Create(TierManagerOptions opts);
  // Closes the SSD tier (completing queued writes) after the DRAM tier stops evicting.
  ~TierManager();
  TierManager(const TierManager&) = delete;
  TierManager& operator=(const TierManager&) = delete;

  // ---- the DRAM pool (DramTier semantics), for the data plane ----
  // What clients map: the pool file, its size and the per-start id they check.
  const std::string& shm_path() const { return dram_->shm_path(); }
  uint64_t pool_size() const { return dram_->pool_size(); }
  uint64_t pool_id() const { return dram_->pool_id(); }
  // What the pool's best-effort set-up achieved (mlock, huge pages).
  const ShmRegionStatus& pool_status() const { return dram_->pool_status(); }
  // The daemon's view of an extent of the pool.
  ByteSpan Bytes(const Extent& e) const { return dram_->Bytes(e); }
  // An in-flight extent to write a container into (may evict LRU entries unless `evict`
  // is false); the caller publishes it with CommitPut or returns it with Free.
  absl::StatusOr<Extent> Allocate(uint64_t bytes, bool evict = true) { return dram_->Allocate(bytes, evict); }
  void Free(const Extent& e) { dram_->Free(e); }
  // Space a client writes a raw tensor into; TakeReservation ends the reservation and
  // hands its extent over in flight (CommitPut or Free it).
  absl::StatusOr<Reservation> Reserve(uint64_t bytes) { return dram_->Reserve(bytes); }
  absl::StatusOr<Extent> TakeReservation(uint64_t reservation_id) {
    return dram_->TakeReservation(reservation_id);
  }
  // Drops expired leases and reservations; returns how many.
  size_t ReapExpired() { return dram_->ReapExpired(); }
  // A group of namespaces' DRAM usage, and eviction of its own LRU entries to a limit
  // (a tenant's quota; DramTier::UsageOf / EvictFrom). Victims are demoted as usual.
  NamespaceUsage DramUsageOf(std::span<const uint64_t> namespaces) const { return dram_->UsageOf(namespaces); }
  absl::Status EvictFrom(std::span<const uint64_t> namespaces, uint64_t max_bytes, uint64_t max_entries) {
    return dram_->EvictFrom(namespaces, max_bytes, max_entries);
  }
  // The same on SSD (container bytes; zero without an SSD tier), and the drop of the
  // group's oldest SSD copies down to max_bytes; returns how many went. A dropped copy
  // that was the key's only one is a miss from then on.
  NamespaceUsage SsdUsageOf(std::span<const uint64_t> namespaces) const;
  size_t EvictFromSsd(std::span<const uint64_t> namespaces, uint64_t max_bytes);

  // ---- request path ----
  // Local tiers only (the policy and the mover use it; no network I/O).
  Location Locate(const EntryKey& key) const;
  // Locate of every key, then one pipelined remote round trip for the keys that no
  // local tier holds (tier kRemote: shape and codec family from the container header).
  std::vector<Location> LocateMany(std::span<const EntryKey> keys) const;
  // Publishes the container in `extent` (in flight, from Allocate or TakeReservation)
  // under `key`. On success the extent belongs to the DRAM tier; on error the caller
  // still owns it.
  absl::StatusOr<TierPutResult> CommitPut(const EntryKey& key, const Extent& extent,
                                          const EntryMeta& meta, const TierPutOptions& popts = {});
  // NotFound on a miss; the lease is released with Release().
  absl::StatusOr<TierLease> Get(const EntryKey& key, uint32_t lease_ms);
  // Get's DRAM step alone: a leased DRAM hit, or NotFound (the entry may still be on SSD,
  // and no miss is counted). Never does I/O, so threads that must not block may call it.
  absl::StatusOr<TierLease> GetFromDram(const EntryKey& key, uint32_t lease_ms);
  bool Release(uint64_t lease_id) { return dram_->Release(lease_id); }
  // Removes the key from every tier; true if any copy existed.
  bool Delete(const EntryKey& key) { return DeleteMany(std::span<const EntryKey>(&key, 1)) == 1; }
  // Delete of each key (the remote part in one round trip); how many had a copy.
  size_t DeleteMany(std::span<const EntryKey> keys);

  // ---- mover primitives ----
  // Writes the DRAM copy to SSD (if not already there), waits until durable, then drops
  // the DRAM copy. IsLeased if the DRAM copy is leased, before the write (nothing
  // changes) or after it (the SSD copy then stays beside it); NotFound if not in DRAM;
  // the SSD refusal (IsNotAdmitted/IsOverBudget) otherwise (DRAM copy kept).
  absl::Status Demote(const EntryKey& key, bool bypass_admission = false);
  // Reads the SSD copy into DRAM and commits it (the SSD copy stays). NotFound if not on
  // SSD; OK without change if already in DRAM; Aborted if the key changed meanwhile.
  absl::Status Promote(const EntryKey& key);
  // Installs `container` (a valid container; meta describes it) as the key's copy in
  // `target`; see ReplaceOptions. The new copy becomes visible atomically; an old DRAM
  // copy under lease is unlinked and freed when its last lease ends.
  absl::Status Replace(const EntryKey& key, ConstByteSpan container, const EntryMeta& meta,
                       const ReplaceOptions& ropts);
  // Removes the key from both tiers unless its DRAM copy is leased (FailedPrecondition).
  absl::Status Evict(const EntryKey& key);
  // The highest-fidelity copy: the SSD master if any, else DRAM, else SSD.
  absl::StatusOr<BestCopy> ReadBest(const EntryKey& key);
  // Visits every entry (DRAM entries, then SSD-only entries). Runs without holding any
  // tier lock while `fn` runs, so `fn` may call the manager; entries changing during
  // the walk may be missed or reported twice.
  void ForEach(const std::function<void(const TierEntry&)>& fn) const;

  // Writes every DRAM entry that has no identical SSD copy to SSD (durably, bypassing
  // admission and budget), keeping the DRAM copy; stops at `deadline`. Used on a clean
  // shutdown so a restart is warm for DRAM-only entries too. `progress` (optional) is
  // called after each entry. Entries that change meanwhile are never left with a stale
  // SSD copy. No-op without an SSD tier.
  SsdFlushResult FlushToSsd(std::chrono::steady_clock::time_point deadline,
                            const std::function<void(const SsdFlushResult&)>& progress = {});

  // ---- state, for the policy, metrics and logs ----
  TierManagerStats Stats() const;
  // One tier's figures alone (Stats() reads both tiers and the manager's counters).
  DramTierStats DramStats() const { return dram_->Stats(); }
  std::optional<SsdTierStats> SsdStats() const;  // nullopt without an SSD tier
  bool HasSsd() const { return ssd_ != nullptr; }
  bool HasRemote() const { return remote_ != nullptr; }
  std::optional<RemoteTierStats> RemoteStats() const;  // nullopt without a remote tier
  // The remote tier's link as measured at start-up; nullopt without one.
  std::optional<RemoteLink> RemoteLinkInfo() const;
  // Leases outstanding on the key's DRAM copy; 0 if not in DRAM. No lease taken, LRU
  // order untouched.
  uint32_t DramLeases(const EntryKey& key) const;
  // Visits every committed DRAM entry under the DRAM lock (keep `fn` short; it must not
  // call the manager). Unlike ForEach, no SSD entries and no lease counts.
  void ForEachInDram(const std::function<void(const EntryKey&, const EntryMeta&)>& fn) const {
    dram_->ForEach(fn);
  }

  // ---- tests and benchmarks only (e.g. to Flush): the server uses the methods above ----
  SsdTier* ssd_for_testing() const { return ssd_.get(); }  // nullptr when disabled
  RemoteTier* remote_for_testing() const { return remote_.get(); }

 private:
  // Marks key in committing_ for its lifetime.
  class CommittingMark {
   public:
    CommittingMark(TierManager* tm, const EntryKey& key);
    ~CommittingMark();
    CommittingMark(const CommittingMark&) = delete;
    CommittingMark& operator=(const CommittingMark&) = delete;

   private:
    TierManager* tm_;
    EntryKey key_;
  };
  struct Demotion {
    EntryKey key;
    std::vector<std::byte> bytes;
    EntryMeta meta;
    bool cancelled = false;  // key changed or deleted: the SSD record must go
  };
  struct SsdMeta {           // compact metadata of an SSD copy
    KvShape shape;
    uint32_t crc32c = 0;
    float est_quality_loss = 0.f;
    uint16_t codec_name = 0;  // index into codec_names_
    bool master = false;
  };
  static constexpr size_t kStripes = 64;
  struct Stripe {
    std::mutex mu;
    uint64_t version = 0;  // guarded by mu
  };

  explicit TierManager(TierManagerOptions opts);
  void OnDramEvict(const EntryKey& key, const EntryMeta& meta, ConstByteSpan bytes);
  void OnDemotionDone(const std::shared_ptr<Demotion>& d, absl::Status st);
  Stripe& StripeOf(const EntryKey& key);
  // Under mu_: cancels in-flight demotions of key and forgets its SSD metadata.
  void ForgetLocked(const EntryKey& key);
  // Drops the key's remembered SSD meta (only if it describes the copy with that CRC).
  void ForgetSsdMetaLocked(const EntryKey& key, std::optional<uint32_t> crc = std::nullopt);
  void RememberSsdLocked(const EntryKey& key, const EntryMeta& meta, bool master);
  EntryMeta SsdMetaToEntryMeta(const SsdMeta& m, const SsdEntryInfo& info, bool* complete) const;
  uint16_t InternCodecLocked(const std::string& name);
  // Fills loc->meta (shape) of an SSD entry not read since restart from its container
  // header (a 8 KiB read) and caches it. Leaves loc as is on any failure. Not under mu_.
  void LearnSsdHead(const EntryKey& key, const SsdEntryInfo& info, Location* loc);
  // Reads the SSD copy into a fresh DRAM extent; returns the extent and its meta.
  absl::StatusOr<std::pair<Extent, EntryMeta>> ReadSsdIntoDram(const EntryKey& key,
                                                               SsdEntryInfo* info);
  absl::StatusOr<std::pair<Extent, EntryMeta>> CopyDemotionIntoDram(const EntryKey& key);
  // A remote hit, committed to DRAM and leased (or leased anonymously). NotFound on a miss.
  absl::StatusOr<TierLease> GetFromRemote(const EntryKey& key, uint32_t lease_ms);
  absl::Status SsdPutDurable(const EntryKey& key, ConstByteSpan bytes, const SsdPutOptions& o);
  // Erases the SSD copy unless it has `keep_crc`; with no arguments erases always.
  void EraseSsdCopy(const EntryKey& key, std::optional<uint32_t> keep_crc = std::nullopt);

  TierManagerOptions opts_;
  std::unique_ptr<DramTier> dram_;
  std::unique_ptr<SsdTier> ssd_;
  std::unique_ptr<RemoteTier> remote_;
  std::atomic<bool> evict_hook_live_{false};
  std::array<Stripe, kStripes> stripes_;

  mutable std::mutex mu_;
  absl::flat_hash_map<EntryKey, std::shared_ptr<Demotion>> demoting_;
  // Keys inside CommitPut: their old DRAM copy is being replaced, so an eviction of it
  // must not write it to SSD (it would land over, or get erased with, the new version).
  absl::flat_hash_map<EntryKey, uint32_t> committing_;
  absl::flat_hash_map<EntryKey, SsdMeta> ssd_meta_;
  std::vector<std::string> codec_names_;
  absl::flat_hash_map<std::string, uint16_t> codec_ids_;
  uint64_t demoting_bytes_ = 0;
  uint64_t masters_ = 0;

  std::atomic<uint64_t> dram_hits_{0}, ssd_hits_{0}, misses_{0}, promotions_{0},
      anonymous_leases_{0}, demotions_queued_{0}, demotions_done_{0}, demotions_failed_{0},
      demotions_clean_{0}, demotions_refused_{0}, evictions_lost_{0}, ssd_read_bytes_{0},
      ssd_read_errors_{0}, durable_puts_{0}, remote_hits_{0}, ssd_quota_drops_{0};
};

}  // namespace adaptcache
