#include "storage/dram_tier.h"

#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <utility>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "common/status_kinds.h"
#include "spdlog/spdlog.h"
#include "storage/extent_allocator.h"

namespace adaptcache {
namespace {

using Clock = std::chrono::steady_clock;

// A committed entry, heap-allocated and owned by Impl: reachable from the index while
// linked, from the zombie set once erased or replaced under a lease. The LRU list is
// intrusive (no allocation per touch).
struct Entry {
  EntryKey key;
  Extent extent;
  EntryMeta meta;
  uint32_t lease_count = 0;
  bool linked = true;
  Entry* lru_prev = nullptr;  // towards most recently used
  Entry* lru_next = nullptr;  // towards least recently used
  uint64_t occupied() const { return ExtentAllocator::AlignUp(extent.length); }
};

// The index stores Entry* and is searched by EntryKey (the key lives only in the entry,
// which keeps the index at 8 bytes a slot).
struct EntryHash {
  using is_transparent = void;
  size_t operator()(const EntryKey& k) const { return absl::Hash<EntryKey>{}(k); }
  size_t operator()(const Entry* e) const { return (*this)(e->key); }
};
struct EntryEq {
  using is_transparent = void;
  static const EntryKey& K(const EntryKey& k) { return k; }
  static const EntryKey& K(const Entry* e) { return e->key; }
  template <typename A, typename B>
  bool operator()(const A& a, const B& b) const {
    return K(a) == K(b);
  }
};
using EntryIndex = absl::flat_hash_set<Entry*, EntryHash, EntryEq>;

absl::StatusOr<uint64_t> RandomPoolId() {
  uint64_t id = 0;
  while (id == 0) {
    const ssize_t n = getrandom(&id, sizeof(id), 0);
    if (n != static_cast<ssize_t>(sizeof(id))) {
      if (n < 0 && errno == EINTR) continue;
      return absl::InternalError(absl::StrCat("getrandom: ", std::strerror(errno)));
    }
  }
  return id;
}

absl::Status ValidateOptions(const DramTierOptions& o) {
  if (o.capacity_bytes < ExtentAllocator::kAlignment) {
    return absl::InvalidArgumentError(absl::StrCat("DRAM pool capacity ", o.capacity_bytes,
                                                   " is below ", ExtentAllocator::kAlignment));
  }
  if (o.name.empty() || o.name.size() > 128 ||
      !std::all_of(o.name.begin(), o.name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '_' || c == '.';
      })) {
    return absl::InvalidArgumentError(
        absl::StrCat("DRAM pool name '", o.name, "' must be 1..128 of [A-Za-z0-9._-]"));
  }
  if (o.default_lease_ms == 0 || o.max_lease_ms < o.default_lease_ms) {
    return absl::InvalidArgumentError(absl::StrCat("lease times: need 0 < default_lease_ms (",
                                                   o.default_lease_ms, ") <= max_lease_ms (",
                                                   o.max_lease_ms, ")"));
  }
  if (o.max_leases == 0) return absl::InvalidArgumentError("max_leases must be > 0");
  if (o.reservation_ms == 0) return absl::InvalidArgumentError("reservation_ms must be > 0");
  return absl::OkStatus();
}

}  // namespace

pid_t PoolFileOwner(std::string_view f, const std::string& name) {
  absl::string_view file(f.data(), f.size());
  if (!absl::ConsumePrefix(&file, name) || !absl::ConsumePrefix(&file, "-") ||
      !absl::ConsumeSuffix(&file, ".pool") || file.size() < 18 || file[file.size() - 17] != '-') {
    return 0;
  }
  const absl::string_view id = file.substr(file.size() - 16), pid = file.substr(0, file.size() - 17);
  const auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); };
  const auto digit = [](char c) { return c >= '0' && c <= '9'; };
  int32_t v = 0;
  if (!std::all_of(id.begin(), id.end(), hex) || pid.empty() ||
      !std::all_of(pid.begin(), pid.end(), digit) || !absl::SimpleAtoi(pid, &v)) {
    return 0;
  }
  return v;
}

struct DramTier::Impl {
  struct LeaseRec {
    Entry* entry;
    Clock::time_point expires;
  };
  struct ResRec {
    Extent extent;
    Clock::time_point expires;
  };

  Impl(const DramTierOptions& o, std::unique_ptr<ShmRegion> r, uint64_t id)
      : opts(o), region(std::move(r)), pool_id(id), alloc(region->size()) {}

  // The expiry clock: DramTierOptions::clock when set, else steady_clock.
  Clock::time_point Now() const {
    if (!opts.clock) return Clock::now();
    return Clock::time_point(std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(opts.clock())));
  }
  ~Impl() {
    for (Entry* e : index) delete e;
    for (Entry* e : zombies) delete e;
  }

  // --- everything below requires mu ---

  void LruPushFront(Entry* e) {
    e->lru_prev = nullptr;
    e->lru_next = lru_head;
    if (lru_head) lru_head->lru_prev = e;
    lru_head = e;
    if (!lru_tail) lru_tail = e;
  }
  void LruRemove(Entry* e) {
    (e->lru_prev ? e->lru_prev->lru_next : lru_head) = e->lru_next;
    (e->lru_next ? e->lru_next->lru_prev : lru_tail) = e->lru_prev;
    e->lru_prev = e->lru_next = nullptr;
  }

  void FreeExtent(const Extent& e) {
    if (auto st = alloc.Free(e.offset, e.length); !st.ok()) {
      // Only a bug in this file can get here; never crash the daemon over it.
      spdlog::error("DRAM tier: internal free of [{}, +{}) failed: {}", e.offset, e.length,
                    std::string(st.message()));
    }
  }

  // Removes the entry from the index and LRU. Its extent is freed now, or when its last
  // lease ends.
  void Unlink(EntryIndex::iterator it) {
    Entry* e = *it;
    index.erase(it);
    LruRemove(e);
    e->linked = false;
    entry_bytes -= e->occupied();
    CountNamespace(e->key.ns, -static_cast<int64_t>(e->occupied()), -1);
    if (e->lease_count > 0) {
      pinned_bytes -= e->occupied();
      zombie_bytes += e->occupied();
      zombies.insert(e);
    } else {
      FreeExtent(e->extent);
      delete e;
    }
  }

  void DropLease(Entry* e) {
    if (--e->lease_count > 0) return;
    if (e->linked) {
      pinned_bytes -= e->occupied();
    } else {
      zombie_bytes -= e->occupied();
      FreeExtent(e->extent);
      zombies.erase(e);
      delete e;
    }
  }

  size_t ReapLeases(Clock::time_point now) {
    size_t n = 0;
    while (!lease_expiry.empty() && lease_expiry.begin()->first <= now) {
      const uint64_t id = lease_expiry.begin()->second;
      lease_expiry.erase(lease_expiry.begin());
      auto it = leases.find(id);
      Entry* e = it->second.entry;
      leases.erase(it);
      DropLease(e);
      ++expired_leases;
      ++n;
    }
    return n;
  }

  void DropReservation(absl::flat_hash_map<uint64_t, ResRec>::iterator it) {
    res_expiry.erase({it->second.expires, it->first});
    reserved_bytes -= ExtentAllocator::AlignUp(it->second.extent.length);
    reservations.erase(it);
  }

  size_t ReapReservations(Clock::time_point now) {
    size_t n = 0;
    while (!res_expiry.empty() && res_expiry.begin()->first <= now) {
      auto it = reservations.find(res_expiry.begin()->second);
      const Extent ext = it->second.extent;
      DropReservation(it);
      FreeExtent(ext);
      ++expired_reservations;
      ++n;
    }
    return n;
  }

  // Allocates, reaping expired leases/reservations and then evicting LRU unleased
  // entries as needed. Refuses without evicting anything when even evicting every
  // unleased entry could not free enough bytes.
  absl::StatusOr<uint64_t> AllocateLocked(uint64_t bytes, bool evict = true) {
    if (bytes == 0) return absl::InvalidArgumentError("allocation of 0 bytes");
    if (bytes > alloc.capacity()) {
      ++allocation_failures;
      return absl::ResourceExhaustedError(absl::StrCat(
          "allocation of ", bytes, " bytes can never fit the DRAM pool of ", alloc.capacity()));
    }
    if (auto r = alloc.Allocate(bytes); r.ok()) return r;
    const Clock::time_point now = Now();
    if (ReapLeases(now) + ReapReservations(now) > 0) {
      if (auto r = alloc.Allocate(bytes); r.ok()) return r;
    }
    if (!evict) {  // the caller has another way (not counted as a failure)
      return absl::ResourceExhaustedError(
          absl::StrCat("no free extent of ", bytes, " bytes without evicting (free ", alloc.free_bytes(), ")"));
    }
    const uint64_t need = ExtentAllocator::AlignUp(bytes);
    const uint64_t evictable = entry_bytes - pinned_bytes;
    if (need > alloc.free_bytes() + evictable) {
      ++allocation_failures;
      return absl::ResourceExhaustedError(
          absl::StrCat("DRAM pool full: need ", need, " bytes, free ", alloc.free_bytes(),
                       ", evictable ", evictable, " (the rest is leased, reserved or in flight)"));
    }
    // Walk from the LRU end, skipping leased entries; the cursor never revisits them.
    Entry* cur = lru_tail;
    while (true) {
      while (cur && cur->lease_count > 0) cur = cur->lru_prev;
      if (!cur) break;
      Entry* victim = cur;
      cur = cur->lru_prev;
      if (opts.on_evict) {
        opts.on_evict(victim->key, victim->meta,
                      ConstByteSpan(region->base() + victim->extent.offset, victim->extent.length));
      }
      Unlink(index.find(victim->key));
      ++evictions;
      if (alloc.largest_free_extent() >= need) return alloc.Allocate(bytes);
    }
    ++allocation_failures;
    return absl::ResourceExhaustedError(absl::StrCat("DRAM pool fragmented: no contiguous ", need,
                                                     " bytes after evicting every unleased "
                                                     "entry (free ",
                                                     alloc.free_bytes(), ", largest free extent ",
                                                     alloc.largest_free_extent(), ")"));
  }

  const DramTierOptions opts;
  const std::unique_ptr<ShmRegion> region;
  const uint64_t pool_id;
  uint64_t max_reservation_bytes = 0;

  mutable absl::Mutex mu;
  ExtentAllocator alloc ABSL_GUARDED_BY(mu);
  EntryIndex index ABSL_GUARDED_BY(mu);                     // owns its entries
  absl::flat_hash_set<Entry*> zombies ABSL_GUARDED_BY(mu);  // owns its entries
  Entry* lru_head ABSL_GUARDED_BY(mu) = nullptr;            // most recently used
  Entry* lru_tail ABSL_GUARDED_BY(mu) = nullptr;            // least recently used
  absl::flat_hash_map<uint64_t, LeaseRec> leases ABSL_GUARDED_BY(mu);
  absl::btree_set<std::pair<Clock::time_point, uint64_t>> lease_expiry ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<uint64_t, ResRec> reservations ABSL_GUARDED_BY(mu);
  absl::btree_set<std::pair<Clock::time_point, uint64_t>> res_expiry ABSL_GUARDED_BY(mu);
  // Extents handed out by Allocate/TakeReservation and not yet committed or freed:
  // offset -> length as requested.
  absl::flat_hash_map<uint64_t, uint64_t> inflight ABSL_GUARDED_BY(mu);
  uint64_t next_id ABSL_GUARDED_BY(mu) = 1;  // lease and reservation ids

  void CountNamespace(uint64_t ns, int64_t bytes, int64_t entries) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    NamespaceUsage& u = ns_usage[ns];
    u.bytes += bytes;
    u.entries += entries;
    if (u.entries == 0) ns_usage.erase(ns);
  }

  uint64_t entry_bytes ABSL_GUARDED_BY(mu) = 0;   // occupied by indexed entries
  absl::flat_hash_map<uint64_t, NamespaceUsage> ns_usage ABSL_GUARDED_BY(mu);
  uint64_t pinned_bytes ABSL_GUARDED_BY(mu) = 0;  // indexed entries with leases
  uint64_t zombie_bytes ABSL_GUARDED_BY(mu) = 0;
  uint64_t reserved_bytes ABSL_GUARDED_BY(mu) = 0;
  uint64_t inflight_bytes ABSL_GUARDED_BY(mu) = 0;
  uint64_t evictions ABSL_GUARDED_BY(mu) = 0;
  uint64_t expired_leases ABSL_GUARDED_BY(mu) = 0;
  uint64_t expired_reservations ABSL_GUARDED_BY(mu) = 0;
  uint64_t allocation_failures ABSL_GUARDED_BY(mu) = 0;
  uint64_t invalid_frees ABSL_GUARDED_BY(mu) = 0;
};

absl::StatusOr<std::unique_ptr<DramTier>> DramTier::Create(const DramTierOptions& opts) {
  if (auto st = ValidateOptions(opts); !st.ok()) return st;
  auto id = RandomPoolId();
  if (!id.ok()) return id.status();
  if (opts.remove_dead_pools) {
    const ShmCleanup c = RemoveDeadShmFiles(
        opts.shm_dir, [&](std::string_view f) { return PoolFileOwner(f, opts.name); });
    if (c.removed > 0) {
      spdlog::info("removed {} pool file(s) ({} bytes) left by dead instances in '{}'", c.removed,
                   c.removed_bytes, opts.shm_dir);
    }
  }
  ShmRegionOptions ro;
  ro.dir = opts.shm_dir;
  ro.file_name =
      absl::StrCat(opts.name, "-", getpid(), "-", absl::Hex(*id, absl::kZeroPad16), ".pool");
  ro.size = ExtentAllocator::AlignUp(opts.capacity_bytes);
  ro.huge_pages = opts.huge_pages;
  ro.mlock = opts.mlock;
  auto region = ShmRegion::Create(ro);
  if (!region.ok()) return region.status();
  auto impl = std::make_unique<Impl>(opts, std::move(*region), *id);
  impl->max_reservation_bytes =
      opts.max_reservation_bytes == 0 ? impl->region->size() / 2 : opts.max_reservation_bytes;
  const ShmRegionStatus& ps = impl->region->status();
  spdlog::info(
      "DRAM pool {} bytes at '{}' (pool id {:016x}): mlock {}, huge pages {} (shmem THP "
      "mode '{}')",
      impl->region->size(), impl->region->path(), *id, ps.mlocked ? "on" : "off",
      ps.huge_pages_effective ? "on" : "off", ps.thp_shmem_mode);
  return std::unique_ptr<DramTier>(new DramTier(std::move(impl)));
}

DramTier::DramTier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DramTier::~DramTier() = default;

const std::string& DramTier::shm_path() const { return impl_->region->path(); }
uint64_t DramTier::pool_size() const { return impl_->region->size(); }
uint64_t DramTier::pool_id() const { return impl_->pool_id; }
std::byte* DramTier::base() const { return impl_->region->base(); }
const ShmRegionStatus& DramTier::pool_status() const { return impl_->region->status(); }
int DramTier::shm_fd() const { return impl_->region->fd(); }

ByteSpan DramTier::Bytes(const Extent& e) const {
  const uint64_t size = impl_->region->size();
  if (e.offset > size || e.length > size - e.offset) return {};  // never out of bounds
  return ByteSpan(impl_->region->base() + e.offset, e.length);
}

absl::StatusOr<Extent> DramTier::Allocate(uint64_t bytes, bool evict) {
  absl::MutexLock lock(&impl_->mu);
  auto off = impl_->AllocateLocked(bytes, evict);
  if (!off.ok()) return off.status();
  impl_->inflight.emplace(*off, bytes);
  impl_->inflight_bytes += ExtentAllocator::AlignUp(bytes);
  return Extent{*off, bytes};
}

void DramTier::Free(const Extent& e) {
  absl::MutexLock lock(&impl_->mu);
  auto it = impl_->inflight.find(e.offset);
  if (it == impl_->inflight.end() || it->second != e.length) {
    ++impl_->invalid_frees;
    spdlog::warn("DRAM tier: ignored Free of [{}, +{}): not an extent in flight", e.offset,
                 e.length);
    return;
  }
  impl_->inflight.erase(it);
  impl_->inflight_bytes -= ExtentAllocator::AlignUp(e.length);
  impl_->FreeExtent(e);
}

absl::Status DramTier::Commit(const EntryKey& key, const Extent& e, const EntryMeta& meta) {
  // Build the entry before taking the lock: the meta copy allocates.
  auto entry = std::make_unique<Entry>();  // handed to the index below
  entry->key = key;
  entry->extent = e;
  entry->meta = meta;
  entry->meta.stored_bytes = e.length;  // always the committed length
  absl::MutexLock lock(&impl_->mu);
  auto in = impl_->inflight.find(e.offset);
  if (in == impl_->inflight.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("commit of [", e.offset, ", +", e.length, "): not an extent in flight"));
  }
  const uint64_t allocated = in->second;
  if (e.length == 0 || e.length > allocated) {
    return absl::InvalidArgumentError(
        absl::StrCat("commit of ", e.length, " bytes into an extent of ", allocated));
  }
  impl_->inflight.erase(in);
  impl_->inflight_bytes -= ExtentAllocator::AlignUp(allocated);
  const uint64_t keep = ExtentAllocator::AlignUp(e.length);
  const uint64_t had = ExtentAllocator::AlignUp(allocated);
  if (had > keep) impl_->FreeExtent(Extent{e.offset + keep, had - keep});

  if (auto old = impl_->index.find(key); old != impl_->index.end()) impl_->Unlink(old);
  Entry* raw = entry.release();
  impl_->index.insert(raw);
  impl_->LruPushFront(raw);
  impl_->entry_bytes += raw->occupied();
  impl_->CountNamespace(key.ns, static_cast<int64_t>(raw->occupied()), 1);
  return absl::OkStatus();
}

NamespaceUsage DramTier::UsageOf(std::span<const uint64_t> namespaces) const {
  absl::ReaderMutexLock lock(&impl_->mu);
  NamespaceUsage sum;
  for (uint64_t ns : namespaces) {
    if (auto it = impl_->ns_usage.find(ns); it != impl_->ns_usage.end()) {
      sum.bytes += it->second.bytes;
      sum.entries += it->second.entries;
    }
  }
  return sum;
}

absl::Status DramTier::EvictFrom(std::span<const uint64_t> namespaces, uint64_t max_bytes,
                                 uint64_t max_entries) {
  Impl& m = *impl_;
  absl::MutexLock lock(&m.mu);
  auto usage = [&] {
    NamespaceUsage sum;
    for (uint64_t ns : namespaces) {
      if (auto it = m.ns_usage.find(ns); it != m.ns_usage.end()) {
        sum.bytes += it->second.bytes;
        sum.entries += it->second.entries;
      }
    }
    return sum;
  };
  auto over = [&](const NamespaceUsage& u) {
    return static_cast<uint64_t>(u.bytes) > max_bytes || static_cast<uint64_t>(u.entries) > max_entries;
  };
  NamespaceUsage u = usage();
  if (!over(u)) return absl::OkStatus();
  // From the LRU end: the group's own least recently used unleased entries go first.
  for (Entry* cur = m.lru_tail; cur != nullptr && over(u);) {
    Entry* victim = cur;
    cur = cur->lru_prev;
    if (victim->lease_count > 0 ||
        std::find(namespaces.begin(), namespaces.end(), victim->key.ns) == namespaces.end()) {
      continue;
    }
    if (m.opts.on_evict) {
      m.opts.on_evict(victim->key, victim->meta,
                      ConstByteSpan(m.region->base() + victim->extent.offset, victim->extent.length));
    }
    u.bytes -= victim->occupied();
    u.entries -= 1;
    m.Unlink(m.index.find(victim->key));
    ++m.evictions;
  }
  if (over(u)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        u.bytes, " bytes in ", u.entries, " entries are left after evicting every unleased one "
        "(room was needed down to ", max_bytes, " bytes and ", max_entries, " entries)"));
  }
  return absl::OkStatus();
}

std::optional<EntryMeta> DramTier::Peek(const EntryKey& key) const {
  absl::ReaderMutexLock lock(&impl_->mu);
  auto it = impl_->index.find(key);
  if (it == impl_->index.end()) return std::nullopt;
  return (*it)->meta;
}

absl::StatusOr<Lease> DramTier::Acquire(const EntryKey& key, uint32_t lease_ms) {
  Impl& m = *impl_;
  const uint32_t ms =
      std::min(lease_ms == 0 ? m.opts.default_lease_ms : lease_ms, m.opts.max_lease_ms);
  Lease lease;
  absl::MutexLock lock(&m.mu);
  const Clock::time_point now = m.Now();
  if (m.leases.size() >= m.opts.max_leases) {
    m.ReapLeases(now);
    if (m.leases.size() >= m.opts.max_leases) {
      return absl::ResourceExhaustedError(
          absl::StrCat("too many outstanding DRAM leases (", m.opts.max_leases, ")"));
    }
  }
  auto it = m.index.find(key);
  if (it == m.index.end()) return absl::NotFoundError("not in the DRAM tier");
  Entry* e = *it;
  if (e->lease_count++ == 0) m.pinned_bytes += e->occupied();
  m.LruRemove(e);
  m.LruPushFront(e);
  const uint64_t id = m.next_id++;
  const Clock::time_point expires = now + std::chrono::milliseconds(ms);
  m.leases.emplace(id, Impl::LeaseRec{e, expires});
  m.lease_expiry.emplace(expires, id);
  lease.id = id;
  lease.extent = e->extent;
  lease.meta = e->meta;
  lease.expires = std::chrono::system_clock::now() + std::chrono::milliseconds(ms);
  return lease;
}

bool DramTier::Release(uint64_t lease_id) {
  Impl& m = *impl_;
  absl::MutexLock lock(&m.mu);
  auto it = m.leases.find(lease_id);
  if (it == m.leases.end()) return false;
  const Impl::LeaseRec rec = it->second;
  m.leases.erase(it);
  m.lease_expiry.erase({rec.expires, lease_id});
  m.DropLease(rec.entry);
  if (rec.expires <= m.Now()) {  // expired but not reaped yet
    ++m.expired_leases;
    return false;
  }
  return true;
}

bool DramTier::Erase(const EntryKey& key) {
  absl::MutexLock lock(&impl_->mu);
  auto it = impl_->index.find(key);
  if (it == impl_->index.end()) return false;
  impl_->Unlink(it);
  return true;
}

absl::StatusOr<Reservation> DramTier::Reserve(uint64_t bytes) {
  Impl& m = *impl_;
  absl::MutexLock lock(&m.mu);
  if (bytes == 0) return absl::InvalidArgumentError("reservation of 0 bytes");
  const Clock::time_point now = m.Now();
  if (bytes > m.alloc.capacity()) {
    ++m.allocation_failures;
    return absl::ResourceExhaustedError(absl::StrCat(
        "reservation of ", bytes, " bytes can never fit the DRAM pool of ", m.alloc.capacity()));
  }
  const uint64_t need = ExtentAllocator::AlignUp(bytes);
  if (m.reserved_bytes + need > m.max_reservation_bytes) {
    m.ReapReservations(now);
    if (m.reserved_bytes + need > m.max_reservation_bytes) {
      ++m.allocation_failures;
      return absl::ResourceExhaustedError(
          absl::StrCat("reservation of ", bytes, " bytes exceeds the reservation budget (",
                       m.reserved_bytes, " of ", m.max_reservation_bytes, " bytes reserved)"));
    }
  }
  auto off = m.AllocateLocked(bytes);
  if (!off.ok()) return off.status();
  const uint64_t id = m.next_id++;
  const Clock::time_point expires = now + std::chrono::milliseconds(m.opts.reservation_ms);
  m.reservations.emplace(id, Impl::ResRec{Extent{*off, bytes}, expires});
  m.res_expiry.emplace(expires, id);
  m.reserved_bytes += need;
  Reservation r;
  r.id = id;
  r.extent = Extent{*off, bytes};
  r.expires = std::chrono::system_clock::now() + std::chrono::milliseconds(m.opts.reservation_ms);
  return r;
}

absl::StatusOr<Extent> DramTier::TakeReservation(uint64_t reservation_id) {
  Impl& m = *impl_;
  absl::MutexLock lock(&m.mu);
  auto it = m.reservations.find(reservation_id);
  if (it == m.reservations.end()) {
    return absl::NotFoundError(absl::StrCat("unknown reservation ", reservation_id));
  }
  const Extent ext = it->second.extent;
  const bool expired = it->second.expires <= m.Now();
  m.DropReservation(it);
  if (expired) {
    m.FreeExtent(ext);
    ++m.expired_reservations;
    return absl::NotFoundError(absl::StrCat("reservation ", reservation_id, " expired"));
  }
  m.inflight.emplace(ext.offset, ext.length);
  m.inflight_bytes += ExtentAllocator::AlignUp(ext.length);
  return ext;
}

size_t DramTier::ReapExpired() {
  absl::MutexLock lock(&impl_->mu);
  const Clock::time_point now = impl_->Now();
  return impl_->ReapLeases(now) + impl_->ReapReservations(now);
}

DramTierStats DramTier::Stats() const {
  const Impl& m = *impl_;
  absl::ReaderMutexLock lock(&m.mu);
  const ExtentAllocatorStats a = m.alloc.Stats();
  DramTierStats s;
  s.capacity_bytes = a.capacity_bytes;
  s.used_bytes = a.capacity_bytes - a.free_bytes;
  s.entry_bytes = m.entry_bytes;
  s.entries = m.index.size();
  s.leases_outstanding = m.leases.size();
  s.reservations_outstanding = m.reservations.size();
  s.evictions = m.evictions;
  s.expired_leases = m.expired_leases;
  s.largest_free_extent = a.largest_free_extent;
  s.reserved_bytes = m.reserved_bytes;
  s.inflight_bytes = m.inflight_bytes;
  s.zombie_entries = m.zombies.size();
  s.zombie_bytes = m.zombie_bytes;
  s.pinned_entry_bytes = m.pinned_bytes;
  s.expired_reservations = m.expired_reservations;
  s.allocation_failures = m.allocation_failures;
  s.invalid_frees = m.invalid_frees;
  s.free_extents = a.free_extents;
  s.fragmentation = a.fragmentation;
  return s;
}

void DramTier::ForEach(const std::function<void(const EntryKey&, const EntryMeta&)>& fn) const {
  absl::ReaderMutexLock lock(&impl_->mu);
  for (const Entry* e : impl_->index) fn(e->key, e->meta);
}

std::optional<DramTier::EntryView> DramTier::Inspect(const EntryKey& key) const {
  absl::ReaderMutexLock lock(&impl_->mu);
  auto it = impl_->index.find(key);
  if (it == impl_->index.end()) return std::nullopt;
  return EntryView{(*it)->meta, (*it)->extent, (*it)->lease_count};
}

void DramTier::ForEachWithLeases(
    const std::function<void(const EntryKey&, const EntryMeta&, uint32_t)>& fn) const {
  absl::ReaderMutexLock lock(&impl_->mu);
  for (const Entry* e : impl_->index) fn(e->key, e->meta, e->lease_count);
}

absl::Status DramTier::EraseIf(const EntryKey& key, std::optional<uint32_t> crc32c,
                               bool require_unleased) {
  absl::MutexLock lock(&impl_->mu);
  auto it = impl_->index.find(key);
  if (it == impl_->index.end()) return absl::NotFoundError("not in the DRAM tier");
  if (require_unleased && (*it)->lease_count > 0) {
    return LeasedError(absl::StrCat("DRAM entry is under ", (*it)->lease_count, " lease(s)"));
  }
  if (crc32c.has_value() && (*it)->meta.crc32c != *crc32c) {
    return absl::AbortedError("DRAM entry changed (CRC differs)");
  }
  impl_->Unlink(it);
  return absl::OkStatus();
}

absl::StatusOr<Lease> DramTier::LeaseAnonymous(const Extent& e, const EntryMeta& meta,
                                               uint32_t lease_ms) {
  Impl& m = *impl_;
  const uint32_t ms =
      std::min(lease_ms == 0 ? m.opts.default_lease_ms : lease_ms, m.opts.max_lease_ms);
  auto entry = std::make_unique<Entry>();
  entry->meta = meta;
  absl::MutexLock lock(&m.mu);
  auto in = m.inflight.find(e.offset);
  if (in == m.inflight.end() || e.length == 0 || e.length > in->second) {
    return absl::InvalidArgumentError(
        absl::StrCat("anonymous lease of [", e.offset, ", +", e.length, "): not in flight"));
  }
  const Clock::time_point now = m.Now();
  if (m.leases.size() >= m.opts.max_leases) {
    m.ReapLeases(now);
    if (m.leases.size() >= m.opts.max_leases) {
      return absl::ResourceExhaustedError(
          absl::StrCat("too many outstanding DRAM leases (", m.opts.max_leases, ")"));
    }
  }
  const uint64_t allocated = in->second;
  m.inflight.erase(in);
  m.inflight_bytes -= ExtentAllocator::AlignUp(allocated);
  const uint64_t keep = ExtentAllocator::AlignUp(e.length);
  const uint64_t had = ExtentAllocator::AlignUp(allocated);
  if (had > keep) m.FreeExtent(Extent{e.offset + keep, had - keep});
  // A zombie from birth: in no index or LRU list, freed by DropLease at its last lease.
  Entry* raw = entry.release();
  raw->extent = e;
  raw->meta.stored_bytes = e.length;
  raw->linked = false;
  raw->lease_count = 1;
  m.zombies.insert(raw);
  m.zombie_bytes += raw->occupied();
  const uint64_t id = m.next_id++;
  const Clock::time_point expires = now + std::chrono::milliseconds(ms);
  m.leases.emplace(id, Impl::LeaseRec{raw, expires});
  m.lease_expiry.emplace(expires, id);
  Lease lease;
  lease.id = id;
  lease.extent = e;
  lease.meta = raw->meta;
  lease.expires = std::chrono::system_clock::now() + std::chrono::milliseconds(ms);
  return lease;
}

}  // namespace adaptcache
