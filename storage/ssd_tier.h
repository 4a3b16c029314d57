// The SSD tier: an append-only log of preallocated segment files, written and read with
// io_uring and O_DIRECT, indexed by RocksDB (DESIGN.md §6, docs/ssd_format.md).
//
// Contract
//  - Put(key, container) queues a write and returns at once. `done` runs exactly once
//    (on the commit thread) after the record is durable in the log (fdatasync) AND its
//    index entry is committed, or with the error that prevented it. A refused Put
//    returns non-OK and `done` never runs: InvalidArgument (not a valid container / too
//    large), ResourceExhausted (queue full, or write budget exhausted: IsOverBudget),
//    FailedPrecondition (admission rule: IsNotAdmitted), Unavailable (no usable segment).
//  - Get verifies the record header (key, sequence, segment) and the payload CRC32C on
//    every read. A checksum failure drops the entry and reads as NotFound; an I/O error
//    takes the whole segment out of service (persistently) and reads as Unavailable;
//    both are misses. Wrong bytes are never returned.
//  - Space is reclaimed FIFO by segment. Before the oldest segment is reused, the
//    reclaim hook decides which of its live entries are still hot; those are read,
//    optionally transformed (transcoded) and appended again, bounded to
//    max_reinsert_fraction of a segment per reclaim. The rest become misses.
//  - An I/O error or failed fdatasync is never retried: the segment is taken out of
//    service, the writes in it fail, its entries become misses, and the tier keeps
//    serving the other segments.
//  - Restart is warm: Open loads the index, drops entries that point to failed or reused
//    segments, and scans the log past the index's high-water tail to catch up records
//    that were durable but not indexed. A missing or unreadable index is rebuilt from a
//    scan of every segment; records whose checksums fail are skipped.
//
// Thread safety: every public method may be called concurrently from any thread, except
// that the synchronous Get/PutSync/Flush must not be called from a completion callback.
// Put callbacks run on the commit thread, GetAsync callbacks on the I/O completion
// thread: keep both short and do not call synchronous tier methods from them.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "common/key.h"
#include "common/status_kinds.h"
#include "kernels/container.h"
#include "storage/fault_injection.h"
#include "storage/io_uring_file.h"
#include "storage/ssd_admission.h"
#include "storage/ssd_index.h"
#include "storage/ssd_stats.h"

namespace adaptcache {

struct SsdEntryInfo {
  uint32_t payload_bytes = 0;  // container bytes
  uint8_t codec = 0;           // CodecId
  uint32_t payload_crc32c = 0;
  uint64_t seq = 0;
  uint64_t segment_id = 0;
  uint32_t hits = 0;           // Gets since the entry was (re)written
};

struct SsdReclaimHooks {
  // Is this entry of the segment about to be reused still hot? Default: hits >=
  // SsdTierOptions::reinsert_min_hits. Runs on the writer thread.
  std::function<bool(const EntryKey&, const SsdEntryInfo&)> keep;
  // Optional: the container to store instead (e.g. transcoded). An error drops the entry.
  std::function<absl::StatusOr<std::vector<std::byte>>(const EntryKey&, ConstByteSpan)> transform;
};

struct SsdTierOptions {
  std::string dir;                          // data directory (created if missing)
  uint64_t segment_bytes = 256ull << 20;    // per segment file; multiple of 4 KiB, >= 64 KiB
  uint32_t segment_count = 16;              // preallocated segment files (>= 3)
  // I/O: staging buffers of io_bytes (the largest single I/O) for writes and small reads.
  uint64_t io_bytes = 1ull << 20;
  uint32_t write_buffers = 32;              // bounds write queue depth (x io_bytes in flight)
  uint32_t read_buffers = 16;
  uint32_t read_queue_depth = 256;          // in-flight read ops; beyond: ResourceExhausted
  bool register_buffers = true;
  // Put queue bound: whichever limit is hit first refuses with ResourceExhausted.
  uint32_t max_pending_puts = 1024;
  uint64_t max_pending_put_bytes = 1ull << 30;
  uint64_t max_batch_bytes = 64ull << 20;   // group commit: one fdatasync per batch
  AdmissionOptions admission;
  uint32_t reinsert_min_hits = 1;           // default keep rule; 0 = never reinsert
  double max_reinsert_fraction = 0.5;       // of segment_bytes, per reclaimed segment
  SsdReclaimHooks reclaim;
  bool index_sync = false;                  // fsync the index WAL on every commit
  std::shared_ptr<FaultInjector> faults;    // tests
  NanoClock clock;                          // write budget clock; default steady_clock
};

struct SsdPutOptions {
  bool borrow = false;            // bytes stay valid until `done` runs: no copy at Put
  bool bypass_admission = false;  // skip the frequency rule and budget (tier manager)
};

class SsdTier {
 public:
  using PutCallback = std::function<void(absl::Status)>;
  using GetCallback = std::function<void(absl::StatusOr<uint64_t>)>;

  static absl::StatusOr<std::unique_ptr<SsdTier>> Open(const SsdTierOptions& opts);
  // Completes every queued Put, waits for in-flight reads, closes files and the index.
  ~SsdTier();
  SsdTier(const SsdTier&) = delete;
  SsdTier& operator=(const SsdTier&) = delete;

  absl::Status Put(const EntryKey& key, ConstByteSpan container, PutCallback done,
                   const SsdPutOptions& popts = {});
  // Put and wait for `done`.
  absl::Status PutSync(const EntryKey& key, ConstByteSpan container, const SsdPutOptions& popts = {});
  // Waits until every Put queued before the call has completed.
  void Flush();

  // Copies the entry's container into dst; returns its size. NotFound on a miss,
  // OutOfRange if dst is smaller than the entry. dst aligned to 4 KiB with room for the
  // size rounded up to 4 KiB is filled by DMA without a copy.
  absl::StatusOr<uint64_t> Get(const EntryKey& key, ByteSpan dst);
  absl::StatusOr<std::vector<std::byte>> Get(const EntryKey& key);
  // Same, asynchronously: dst must stay valid until `done` runs. A non-OK return (miss
  // known at once, queue full) means `done` never runs.
  absl::Status GetAsync(const EntryKey& key, ByteSpan dst, GetCallback done);

  std::optional<SsdEntryInfo> Lookup(const EntryKey& key) const;
  // Reads only the entry's container header (its first kContainerHeaderBytes: shape,
  // codec), checking the record header (key, sequence, segment) but not the payload CRC:
  // for metadata only, never for serving bytes. NotFound on a miss or a mismatch.
  absl::StatusOr<std::array<std::byte, kContainerHeaderBytes>> ReadContainerHead(const EntryKey& key) const;
  bool Contains(const EntryKey& key) const { return Lookup(key).has_value(); }
  // Removes the entry from the index (NotFound if absent). Its record becomes garbage.
  // With only_crc / unless_crc, only an entry whose payload CRC is / is not that value is
  // removed (FailedPrecondition otherwise), checked atomically with the removal.
  absl::Status Erase(const EntryKey& key, std::optional<uint32_t> only_crc = std::nullopt,
                     std::optional<uint32_t> unless_crc = std::nullopt);
  // Counts an access for the admission rule without writing.
  void NoteAccess(const EntryKey& key);

  // Live entries of a group of namespaces (bytes = container bytes).
  NamespaceUsage UsageOf(std::span<const uint64_t> namespaces) const;
  // The oldest entries of those namespaces (lowest seq first) that must go for their
  // usage to be at most max_bytes and max_entries; nothing is erased.
  std::vector<std::pair<EntryKey, SsdEntryInfo>> OldestBeyond(std::span<const uint64_t> namespaces,
                                                              uint64_t max_bytes, uint64_t max_entries) const;

  SsdTierStats Stats() const;
  // Visits every entry under the tier's lock: keep `fn` short, do not call the tier.
  void ForEach(const std::function<void(const EntryKey&, const SsdEntryInfo&)>& fn) const;

  // The file of segment slot `slot` (tests corrupt it).
  std::string SlotPath(uint32_t slot) const;
  uint32_t slot_count() const { return static_cast<uint32_t>(slots_.size()); }

 private:
  struct Slot {
    enum class State : uint8_t { kFree, kActive, kSealed, kFailed };
    std::string path;
    int fd = -1;
    State state = State::kFree;
    uint64_t segment_id = 0;
    uint32_t nonce = 0;
    uint64_t write_offset = 0;   // next record offset (active), end of data (sealed)
    std::vector<EntryKey> keys;  // keys written here (may be stale; filter by location)
  };
  struct Entry {
    SsdLocation loc;
    uint32_t hits = 0;
    SsdEntryInfo Info() const {
      return SsdEntryInfo{loc.payload_bytes, loc.codec, loc.payload_crc32c, loc.seq, loc.segment_id, hits};
    }
  };
  struct PutReq {
    EntryKey key;
    ConstByteSpan bytes;
    std::vector<std::byte> owned;
    PutCallback done;
    // Nonzero: a reclaim's copy of the record with this seq, installed only while that
    // record is still the key's entry.
    uint64_t reinsert_of_seq = 0;
    bool reinsertion() const { return reinsert_of_seq != 0; }
    std::chrono::steady_clock::time_point queued;
  };
  // A record being written: its request, where it goes, and the first I/O error seen.
  struct Staged {
    PutReq req;
    SsdLocation loc;
    std::atomic<int> error{0};
    int ios = 0;  // writes in flight (guarded by io_mu_)
  };
  struct ReinsertTotals {
    uint64_t entries = 0;
    uint64_t bytes = 0;
  };
  struct ReadCtx;
  struct ScanResult;

  explicit SsdTier(const SsdTierOptions& opts);
  absl::Status OpenImpl();
  absl::Status OpenSlots(const std::set<uint32_t>& failed);
  absl::Status LoadIndex();
  absl::Status RebuildIndex();
  absl::Status ScanSlot(uint32_t slot, uint64_t from, bool probe, ScanResult* out);
  void ResumeNewestSegment();

  void WriterLoop();
  void ProcessBatch(std::vector<PutReq>& batch);
  // Makes room for a record of `bytes` in the active segment, committing `staged` first
  // when it must roll to a new one. False if no segment can be opened.
  bool EnsureSpace(uint64_t bytes, std::vector<std::unique_ptr<Staged>>& staged);
  void Stage(PutReq&& req, std::vector<std::unique_ptr<Staged>>& staged);
  void CommitStaged(std::vector<std::unique_ptr<Staged>>& staged);
  absl::Status OpenNewSegment();
  // Reclaim of the oldest sealed segment, in steps (ssd_tier_reclaim.cc).
  void ReclaimOldest();
  int PickReclaimVictim(std::vector<std::pair<EntryKey, Entry>>* live);
  std::vector<PutReq> ReadHotEntries(const std::vector<std::pair<EntryKey, Entry>>& live);
  std::optional<std::vector<std::byte>> ReadForReinsertion(const EntryKey& key, const Entry& e);
  ReinsertTotals Reinsert(std::vector<PutReq>& reins);
  void FreeReclaimedSlot(uint32_t victim, uint64_t victim_seg, const ReinsertTotals& reinserted);
  void InvalidateSegmentHeader(uint32_t victim);
  void FailSlot(uint32_t slot, uint64_t segment_id, const std::string& why);
  absl::Status ReadEntry(const EntryKey& key, const Entry& e, ByteSpan dst, bool user, GetCallback done);
  void FinishRead(ReadCtx* ctx);
  void DropCorrupt(const EntryKey& key, uint64_t seq);

  SsdTierOptions opts_;
  std::unique_ptr<IoRing> ring_;
  std::unique_ptr<SsdIndex> index_;
  std::unique_ptr<AdmissionController> admission_;

  // Held across every change of map_ together with its index commit, so the index sees
  // them in map_'s order. Order: index_mu_ before mu_.
  std::mutex index_mu_;
  mutable std::mutex mu_;  // map_, slots_ states, stats_
  absl::flat_hash_map<EntryKey, Entry> map_;
  absl::flat_hash_map<uint64_t, NamespaceUsage> ns_usage_;  // follows map_
  // Every change of map_'s live set goes through these (stats and ns_usage_).
  void CountInLocked(const EntryKey& key, const SsdLocation& loc);
  void CountOutLocked(const EntryKey& key, const SsdLocation& loc);
  std::vector<Slot> slots_;
  SsdTierStats stats_;
  LatencyHistogram write_lat_, read_lat_;

  // Writer-thread state (only the writer touches these after Open).
  int active_ = -1;
  uint64_t next_seq_ = 1;
  uint64_t next_segment_id_ = 1;
  bool reclaiming_ = false;
  std::mt19937_64 rng_;

  std::mutex q_mu_;
  std::condition_variable q_cv_, idle_cv_;
  std::deque<PutReq> queue_;
  uint64_t queued_bytes_ = 0;
  bool busy_ = false;
  bool stop_ = false;
  std::thread writer_;

  // Per-record I/O completion (Staged::ios) is signalled through io_cv_.
  std::mutex io_mu_;
  std::condition_variable io_cv_;

  // Group commit runs on its own thread so batch k's fdatasync + index commit overlap
  // batch k+1's writes. At most kMaxCommitBacklog batches wait.
  void CommitterLoop();
  void CommitNow(std::vector<std::unique_ptr<Staged>>& staged);
  void DrainCommits();
  static constexpr size_t kMaxCommitBacklog = 2;
  std::mutex c_mu_;
  std::condition_variable c_cv_, c_idle_cv_;
  std::deque<std::vector<std::unique_ptr<Staged>>> commit_q_;
  bool c_busy_ = false;
  bool c_stop_ = false;
  std::thread committer_;
};

}  // namespace adaptcache
