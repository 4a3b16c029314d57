#include "storage/dram_tier.h"

#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/crc32c.h"
#include "common/status_kinds.h"
#include "gtest/gtest.h"
#include "tests/storage/shm_test_util.h"

namespace adaptcache {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kMiB = 1 << 20;

DramTierOptions SmallPool(uint64_t capacity) {
  DramTierOptions o;
  o.capacity_bytes = capacity;
  o.name = "ac-dram-test";
  o.mlock = false;  // RLIMIT_MEMLOCK is small on CI machines; ShmRegion tests cover mlock
  return o;
}

EntryKey Key(uint64_t i) { return EntryKey{7, Key128{i, ~i}}; }

// Fills the extent with bytes derived from `seed` and returns meta carrying their CRC.
EntryMeta Fill(DramTier& t, const Extent& e, uint64_t seed) {
  ByteSpan b = t.Bytes(e);
  uint64_t x = seed;  // splitmix64, a word at a time (fast enough under ASan)
  for (size_t i = 0; i < b.size(); i += 8) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    std::memcpy(b.data() + i, &z, std::min<size_t>(8, b.size() - i));
  }
  EntryMeta m;
  m.codec = "raw";
  m.raw_bytes = e.length;
  m.crc32c = Crc32c(b.data(), b.size());
  return m;
}

bool Intact(DramTier& t, const Lease& l) {
  ByteSpan b = t.Bytes(l.extent);
  return b.size() == l.extent.length && Crc32c(b.data(), b.size()) == l.meta.crc32c;
}

// Allocates, fills and commits; returns the meta committed.
EntryMeta Put(DramTier& t, uint64_t key, uint64_t bytes, uint64_t seed = 0) {
  auto e = t.Allocate(bytes);
  EXPECT_TRUE(e.ok()) << e.status();
  if (!e.ok()) return {};
  EntryMeta m = Fill(t, *e, seed ? seed : key * 1000 + 1);
  EXPECT_TRUE(t.Commit(Key(key), *e, m).ok());
  return m;
}

bool FileExists(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0;
}

// The tier's expiry clock (DramTierOptions::clock), moved by hand: no sleeps.
class ManualClock {
 public:
  NanoClock Fn() {
    return [this] { return now_ns_.load(); };
  }
  // Moves past everything that expires within `ms` from now.
  void Pass(std::chrono::milliseconds ms) {
    now_ns_ += std::chrono::nanoseconds(ms + ms + std::chrono::milliseconds(2)).count();
  }

 private:
  std::atomic<int64_t> now_ns_{1};
};

TEST(DramTierTest, CreateMakesAPoolFileWithRandomIdAndRemovesIt) {
  std::string path;
  uint64_t id1 = 0;
  {
    auto t = DramTier::Create(SmallPool(4 * kMiB + 1));
    ASSERT_TRUE(t.ok()) << t.status();
    path = (*t)->shm_path();
    id1 = (*t)->pool_id();
    EXPECT_NE(id1, 0u);
    EXPECT_TRUE(FileExists(path));
    EXPECT_EQ(path.rfind("/dev/shm/ac-dram-test-", 0), 0u) << path;
    EXPECT_EQ((*t)->pool_size(), 4 * kMiB + kPage);
    EXPECT_EQ((*t)->Stats().capacity_bytes, 4 * kMiB + kPage);
    EXPECT_GE((*t)->shm_fd(), 0);
    auto t2 = DramTier::Create(SmallPool(4 * kMiB));
    ASSERT_TRUE(t2.ok()) << t2.status();
    EXPECT_NE((*t2)->pool_id(), id1);
    EXPECT_NE((*t2)->shm_path(), path);
  }
  EXPECT_FALSE(FileExists(path));
}

TEST(DramTierTest, CreateRejectsBadOptions) {
  auto o = SmallPool(4 * kMiB);
  o.name = "../evil";
  EXPECT_EQ(DramTier::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = SmallPool(100);
  EXPECT_EQ(DramTier::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = SmallPool(4 * kMiB);
  o.default_lease_ms = 10;
  o.max_lease_ms = 5;
  EXPECT_EQ(DramTier::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = SmallPool(4 * kMiB);
  o.max_leases = 0;
  EXPECT_EQ(DramTier::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = SmallPool(4 * kMiB);
  o.shm_dir = "/nonexistent-adaptcache";
  EXPECT_FALSE(DramTier::Create(o).ok());
}

// A name DramTier::Create would give a pool of `o`: <name>-<pid>-<16 hex>.pool.
std::string PoolName(pid_t pid, const char* hex16, const std::string& name = "ac-dram-test") {
  return absl::StrCat(name, "-", pid, "-", hex16, ".pool");
}

TEST(DramTierTest, CreateRemovesPoolFilesOfDeadInstancesOnly) {
  using testing::PathExists;
  testing::TempDir dir(testing::kShmDirTemplate);
  const pid_t dead = testing::DeadPid();
  testing::LiveChild live;
  const std::string removed[] = {
      PoolName(dead, "00000000deadbeef"),
      PoolName(getpid(), "0000000000000001"),  // an earlier instance in our reused pid
  };
  std::vector<std::string> kept = {
      PoolName(live.pid(), "0000000000000002"),
      // Names that are not this pool name's pattern, all with the dead pid.
      PoolName(dead, "0000000000000003", "other"),
      PoolName(dead, "0000000000000004", "ac-dram-test-2"),  // another instance name
      PoolName(dead, "0000000000000005", "x-ac-dram-test"),
      PoolName(dead, "00000000000000AB"),   // upper-case id
      PoolName(dead, "00000006"),           // short id
      PoolName(dead, "00000000000000070"),  // 17 digits
      PoolName(dead, "0000000000000008") + ".bak",
      absl::StrCat("ac-dram-test-", dead, "-0000000000000009.tmp"),
      absl::StrCat("ac-dram-test", dead, "-000000000000000a.pool"),
      absl::StrCat("ac-dram-test-x", dead, "-000000000000000b.pool"),
      "ac-dram-test--000000000000000c.pool",
      "ac-dram-test-0-000000000000000d.pool",
      "ac-dram-test-99999999999-000000000000000e.pool",
  };
  for (const auto& f : removed) ASSERT_TRUE(testing::WriteFile(dir / f, 4096)) << f;
  for (const auto& f : kept) ASSERT_TRUE(testing::WriteFile(dir / f, 4096)) << f;
  // Locked files are alive whatever pid they carry: a dead one's and ours.
  std::vector<int> locks;
  for (const std::string& f : {PoolName(dead, "0000000000000010"), PoolName(getpid(), "0000000000000011")}) {
    ASSERT_TRUE(testing::WriteFile(dir / f, 4096));
    locks.push_back(open((dir / f).c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_GE(locks.back(), 0);
    ASSERT_EQ(flock(locks.back(), LOCK_EX), 0);
    kept.push_back(f);
  }
  // A matching directory and symlink are not pool files.
  kept.push_back(PoolName(dead, "0000000000000012"));
  ASSERT_EQ(mkdir((dir / kept.back()).c_str(), 0700), 0);
  ASSERT_TRUE(testing::WriteFile(dir / "target", 10));
  kept.push_back("target");
  kept.push_back(PoolName(dead, "0000000000000013"));
  ASSERT_EQ(symlink((dir / "target").c_str(), (dir / kept.back()).c_str()), 0);

  auto o = SmallPool(4 * kMiB);
  o.shm_dir = dir.path();
  o.remove_dead_pools = false;
  {
    auto t = DramTier::Create(o);
    ASSERT_TRUE(t.ok()) << t.status();
    for (const auto& f : removed) EXPECT_TRUE(PathExists(dir / f)) << f;
  }
  o.remove_dead_pools = true;
  auto t = DramTier::Create(o);
  ASSERT_TRUE(t.ok()) << t.status();
  for (const auto& f : removed) EXPECT_FALSE(PathExists(dir / f)) << f;
  for (const auto& f : kept) EXPECT_TRUE(PathExists(dir / f)) << f;
  EXPECT_TRUE(PathExists((*t)->shm_path()));
  for (int fd : locks) close(fd);
}

TEST(DramTierTest, ALiveTierKeepsItsPoolWhenAnotherStartsInTheSameDir) {
  testing::TempDir dir(testing::kShmDirTemplate);
  auto o = SmallPool(4 * kMiB);
  o.shm_dir = dir.path();
  auto first = DramTier::Create(o);
  ASSERT_TRUE(first.ok()) << first.status();
  Put(**first, 1, 100000);
  auto second = DramTier::Create(o);  // same name, same pid: only the lock protects it
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(FileExists((*first)->shm_path()));
  auto l = (*first)->Acquire(Key(1), 0);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_TRUE(Intact(**first, *l));
}

TEST(DramTierTest, PoolFileIsPrivateWhateverTheUmask) {
  testing::TempDir dir(testing::kShmDirTemplate);
  auto o = SmallPool(4 * kMiB);
  o.shm_dir = dir.path();
  for (mode_t mask : {0000, 0022, 0277}) {
    const mode_t saved = umask(mask);
    auto t = DramTier::Create(o);
    umask(saved);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(testing::ModeOf((*t)->shm_path()), 0600u) << std::oct << mask;
  }
}

TEST(DramTierTest, CommitPeekAcquireRelease) {
  auto t = *DramTier::Create(SmallPool(4 * kMiB));
  EXPECT_FALSE(t->Peek(Key(1)).has_value());
  EXPECT_EQ(t->Acquire(Key(1), 0).status().code(), absl::StatusCode::kNotFound);
  auto e = t->Allocate(10000);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->offset % kPage, 0u);
  EXPECT_EQ(e->length, 10000u);
  EntryMeta m = Fill(*t, *e, 42);
  m.codec = "quant-k4v4";
  m.codec_family = CodecId::kQuant;
  ASSERT_TRUE(t->Commit(Key(1), *e, m).ok());

  auto peek = t->Peek(Key(1));
  ASSERT_TRUE(peek.has_value());
  EXPECT_EQ(peek->codec, "quant-k4v4");
  EXPECT_EQ(peek->crc32c, m.crc32c);
  EXPECT_EQ(peek->stored_bytes, 10000u);

  const auto before = std::chrono::system_clock::now();
  auto lease = t->Acquire(Key(1), 0);
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_EQ(lease->extent.offset, e->offset);
  EXPECT_EQ(lease->extent.length, 10000u);
  EXPECT_EQ(lease->meta.codec, "quant-k4v4");
  EXPECT_GT(lease->expires, before);
  EXPECT_TRUE(Intact(*t, *lease));
  EXPECT_EQ(t->Stats().leases_outstanding, 1u);
  EXPECT_TRUE(t->Release(lease->id));
  EXPECT_FALSE(t->Release(lease->id));
  EXPECT_FALSE(t->Release(987654));
  EXPECT_EQ(t->Stats().leases_outstanding, 0u);

  std::vector<EntryKey> seen;
  t->ForEach([&](const EntryKey& k, const EntryMeta&) { seen.push_back(k); });
  EXPECT_EQ(seen, std::vector<EntryKey>{Key(1)});
  EXPECT_TRUE(t->Erase(Key(1)));
  EXPECT_FALSE(t->Erase(Key(1)));
  EXPECT_EQ(t->Stats().used_bytes, 0u);
}

TEST(DramTierTest, CommitAndFreeValidateTheExtent) {
  auto t = *DramTier::Create(SmallPool(4 * kMiB));
  auto e = *t->Allocate(3 * kPage);
  EntryMeta m;
  // Not an extent in flight: refused, nothing changes.
  EXPECT_EQ(t->Commit(Key(1), Extent{e.offset + kPage, kPage}, m).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(t->Commit(Key(1), Extent{e.offset, 3 * kPage + 1}, m).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(t->Commit(Key(1), Extent{e.offset, 0}, m).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(t->Peek(Key(1)).has_value());
  EXPECT_EQ(t->Stats().inflight_bytes, 3 * kPage);
  // A shorter commit returns the unused tail.
  ASSERT_TRUE(t->Commit(Key(1), Extent{e.offset, kPage + 5}, m).ok());
  auto s = t->Stats();
  EXPECT_EQ(s.used_bytes, 2 * kPage);
  EXPECT_EQ(s.entry_bytes, 2 * kPage);
  EXPECT_EQ(s.inflight_bytes, 0u);
  // Committing or freeing the same extent again is refused.
  EXPECT_EQ(t->Commit(Key(2), Extent{e.offset, kPage + 5}, m).code(),
            absl::StatusCode::kInvalidArgument);
  t->Free(Extent{e.offset, kPage + 5});
  t->Free(Extent{12345, 1});
  s = t->Stats();
  EXPECT_EQ(s.invalid_frees, 2u);
  EXPECT_EQ(s.used_bytes, 2 * kPage);
  EXPECT_TRUE(t->Peek(Key(1)).has_value());
  // Free of a real in-flight extent returns it.
  auto f = *t->Allocate(kPage);
  t->Free(f);
  EXPECT_EQ(t->Stats().used_bytes, 2 * kPage);
  EXPECT_EQ(t->Allocate(0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(t->Allocate(5 * kMiB).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(DramTierTest, BytesNeverLeavesThePool) {
  auto t = *DramTier::Create(SmallPool(4 * kMiB));
  EXPECT_TRUE(t->Bytes(Extent{4 * kMiB, 1}).empty());
  EXPECT_TRUE(t->Bytes(Extent{4 * kMiB - 10, 11}).empty());
  EXPECT_TRUE(t->Bytes(Extent{1, UINT64_MAX}).empty());
  EXPECT_EQ(t->Bytes(Extent{4 * kMiB - 10, 10}).size(), 10u);
  EXPECT_EQ(t->Bytes(Extent{0, 5}).data(), t->base());
}

TEST(DramTierTest, EvictsInLruOrderAndAcquireCountsAsAccess) {
  auto t = *DramTier::Create(SmallPool(4 * kMiB));
  for (uint64_t k = 1; k <= 4; ++k) Put(*t, k, kMiB);  // pool is full
  EXPECT_EQ(t->Stats().largest_free_extent, 0u);
  // Touch 1 (now most recent); Peek of 2 must not count.
  auto l = t->Acquire(Key(1), 0);
  ASSERT_TRUE(l.ok());
  ASSERT_TRUE(t->Release(l->id));
  ASSERT_TRUE(t->Peek(Key(2)).has_value());
  Put(*t, 5, kMiB);  // evicts 2
  EXPECT_FALSE(t->Peek(Key(2)).has_value());
  EXPECT_TRUE(t->Peek(Key(1)).has_value());
  Put(*t, 6, kMiB);  // evicts 3
  EXPECT_FALSE(t->Peek(Key(3)).has_value());
  Put(*t, 7, kMiB);  // evicts 4
  EXPECT_FALSE(t->Peek(Key(4)).has_value());
  EXPECT_TRUE(t->Peek(Key(1)).has_value());
  Put(*t, 8, kMiB);  // evicts 1
  EXPECT_FALSE(t->Peek(Key(1)).has_value());
  for (uint64_t k : {5, 6, 7, 8}) EXPECT_TRUE(t->Peek(Key(k)).has_value()) << k;
  EXPECT_EQ(t->Stats().evictions, 4u);
  EXPECT_EQ(t->Stats().entries, 4u);
}

TEST(DramTierTest, EvictionNeverFreesLeasedBytes) {
  auto t = *DramTier::Create(SmallPool(4 * kMiB));
  for (uint64_t k = 1; k <= 4; ++k) Put(*t, k, kMiB);
  // Lease the least recently used entry, then put a long stream through the pool.
  auto lease = t->Acquire(Key(1), 60'000);
  ASSERT_TRUE(lease.ok());
  for (uint64_t k = 100; k < 140; ++k) {
    Put(*t, k, kMiB / 2 + k * 100);
    ASSERT_TRUE(Intact(*t, *lease)) << "leased bytes overwritten at put " << k;
    ASSERT_TRUE(t->Peek(Key(1)).has_value());
  }
  EXPECT_GT(t->Stats().evictions, 30u);
  EXPECT_EQ(t->Stats().pinned_entry_bytes, kMiB);
  EXPECT_TRUE(t->Release(lease->id));
}

TEST(DramTierTest, AllocationFailsWithoutEvictingWhenEverythingIsLeased) {
  auto t = *DramTier::Create(SmallPool(4 * kMiB));
  std::vector<Lease> leases;
  for (uint64_t k = 1; k <= 4; ++k) {
    Put(*t, k, kMiB);
    leases.push_back(*t->Acquire(Key(k), 60'000));
  }
  auto r = t->Allocate(kPage);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  auto s = t->Stats();
  EXPECT_EQ(s.evictions, 0u);
  EXPECT_EQ(s.entries, 4u);
  EXPECT_EQ(s.allocation_failures, 1u);
  // One release makes exactly that entry evictable.
  ASSERT_TRUE(t->Release(leases[2].id));
  Put(*t, 9, kMiB);
  EXPECT_FALSE(t->Peek(Key(3)).has_value());
  for (size_t i : {0, 1, 3}) EXPECT_TRUE(Intact(*t, leases[i]));
}

TEST(DramTierTest, EraseIfOfALeasedEntryIsALeasedErrorAndKeepsIt) {
  auto t = *DramTier::Create(SmallPool(4 * kMiB));
  const EntryMeta m = Put(*t, 1, kPage);
  auto lease = t->Acquire(Key(1), 60'000);
  ASSERT_TRUE(lease.ok()) << lease.status();
  const absl::Status st = t->EraseIf(Key(1), m.crc32c, /*require_unleased=*/true);
  EXPECT_TRUE(IsLeased(st)) << st;  // the mover counts it as leased, not as a failure
  EXPECT_TRUE(t->Peek(Key(1)).has_value());
  ASSERT_TRUE(t->Release(lease->id));
  EXPECT_TRUE(t->EraseIf(Key(1), m.crc32c, /*require_unleased=*/true).ok());
  EXPECT_FALSE(t->Peek(Key(1)).has_value());
}

TEST(DramTierTest, FragmentationRefusesAfterEvictingEverythingUnleased) {
  auto t = *DramTier::Create(SmallPool(8 * kPage));
  std::vector<Lease> leases;
  for (uint64_t k = 0; k < 8; ++k) {
    Put(*t, k, kPage);
    if (k % 2 == 1) leases.push_back(*t->Acquire(Key(k), 60'000));
  }
  // 4 evictable pages could never hold 5: refused up front, nothing evicted.
  EXPECT_EQ(t->Allocate(5 * kPage).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(t->Stats().evictions, 0u);
  // 2 pages fit by count but not contiguously: evicts all unleased, then refuses.
  auto r = t->Allocate(2 * kPage);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  auto s = t->Stats();
  EXPECT_EQ(s.evictions, 4u);
  EXPECT_EQ(s.entries, 4u);
  EXPECT_EQ(s.largest_free_extent, kPage);
  EXPECT_EQ(s.free_extents, 4u);
  EXPECT_DOUBLE_EQ(s.fragmentation, 0.75);
  for (const Lease& l : leases) EXPECT_TRUE(Intact(*t, l));
  // Single pages still fit.
  EXPECT_TRUE(t->Allocate(kPage).ok());
}

TEST(DramTierTest, EraseUnderLeaseUnlinksNowAndFreesOnRelease) {
  auto t = *DramTier::Create(SmallPool(4 * kMiB));
  Put(*t, 1, kMiB);
  auto l1 = *t->Acquire(Key(1), 60'000);
  auto l2 = *t->Acquire(Key(1), 60'000);
  ASSERT_TRUE(t->Erase(Key(1)));
  EXPECT_FALSE(t->Peek(Key(1)).has_value());
  EXPECT_EQ(t->Acquire(Key(1), 0).status().code(), absl::StatusCode::kNotFound);
  auto s = t->Stats();
  EXPECT_EQ(s.entries, 0u);
  EXPECT_EQ(s.entry_bytes, 0u);
  EXPECT_EQ(s.zombie_entries, 1u);
  EXPECT_EQ(s.used_bytes, kMiB);
  // Pressure cannot take the zombie's extent.
  for (uint64_t k = 10; k < 20; ++k) Put(*t, k, kMiB);
  EXPECT_TRUE(Intact(*t, l1));
  t->Erase(Key(19));
  t->Erase(Key(18));
  t->Erase(Key(17));
  ASSERT_TRUE(t->Release(l1.id));
  EXPECT_EQ(t->Stats().used_bytes, kMiB);  // l2 still holds it
  EXPECT_TRUE(Intact(*t, l2));
  ASSERT_TRUE(t->Release(l2.id));
  s = t->Stats();
  EXPECT_EQ(s.zombie_entries, 0u);
  EXPECT_EQ(s.zombie_bytes, 0u);
  EXPECT_EQ(s.used_bytes, 0u);
}

TEST(DramTierTest, ReplaceUnderLeaseKeepsTheOldBytesForTheReader) {
  auto t = *DramTier::Create(SmallPool(4 * kMiB));
  Put(*t, 1, kMiB, 111);
  auto old = *t->Acquire(Key(1), 60'000);
  EntryMeta fresh = Put(*t, 1, kMiB, 222);
  auto now = t->Acquire(Key(1), 0);
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(now->meta.crc32c, fresh.crc32c);
  EXPECT_NE(now->extent.offset, old.extent.offset);
  EXPECT_TRUE(Intact(*t, old));
  EXPECT_EQ(t->Stats().entries, 1u);
  EXPECT_EQ(t->Stats().zombie_entries, 1u);
  ASSERT_TRUE(t->Release(old.id));
  ASSERT_TRUE(t->Release(now->id));
  EXPECT_EQ(t->Stats().used_bytes, kMiB);
}

TEST(DramTierTest, LeasesExpireAndAreReaped) {
  ManualClock clock;
  auto o = SmallPool(4 * kMiB);
  o.max_lease_ms = 50;
  o.default_lease_ms = 50;
  o.clock = clock.Fn();
  auto t = *DramTier::Create(o);
  Put(*t, 1, kMiB);
  Put(*t, 2, kMiB);
  auto l1 = *t->Acquire(Key(1), 1);
  auto l2 = *t->Acquire(Key(2), 1'000'000);  // capped at max_lease_ms
  EXPECT_LE(l2.expires, std::chrono::system_clock::now() + std::chrono::milliseconds(50));
  t->Erase(Key(2));  // zombie until its lease ends
  clock.Pass(std::chrono::milliseconds(50));
  EXPECT_EQ(t->ReapExpired(), 2u);
  EXPECT_FALSE(t->Release(l1.id));  // already gone
  EXPECT_FALSE(t->Release(l2.id));
  auto s = t->Stats();
  EXPECT_EQ(s.leases_outstanding, 0u);
  EXPECT_EQ(s.expired_leases, 2u);
  EXPECT_EQ(s.zombie_entries, 0u);
  EXPECT_EQ(s.pinned_entry_bytes, 0u);
  EXPECT_EQ(s.used_bytes, kMiB);  // only entry 1 is left, unleased
  EXPECT_TRUE(t->Peek(Key(1)).has_value());
}

TEST(DramTierTest, ExpiredLeasesAreReapedLazilyUnderPressure) {
  ManualClock clock;
  auto o = SmallPool(4 * kMiB);
  o.clock = clock.Fn();
  auto t = *DramTier::Create(o);
  for (uint64_t k = 1; k <= 4; ++k) {
    Put(*t, k, kMiB);
    ASSERT_TRUE(t->Acquire(Key(k), 1).ok());
  }
  clock.Pass(std::chrono::milliseconds(1));
  // No ReapExpired call: allocation reaps the expired leases, then evicts.
  auto e = t->Allocate(kMiB);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(t->Stats().expired_leases, 4u);
  EXPECT_EQ(t->Stats().evictions, 1u);
  t->Free(*e);
}

TEST(DramTierTest, MaxLeasesIsEnforced) {
  auto o = SmallPool(4 * kMiB);
  o.max_leases = 3;
  auto t = *DramTier::Create(o);
  Put(*t, 1, kPage);
  std::vector<Lease> ls;
  for (int i = 0; i < 3; ++i) ls.push_back(*t->Acquire(Key(1), 60'000));
  EXPECT_EQ(t->Acquire(Key(1), 60'000).status().code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(t->Release(ls[0].id));
  EXPECT_TRUE(t->Acquire(Key(1), 60'000).ok());
  // Expired leases do not count against the bound.
  ManualClock clock;
  auto o2 = SmallPool(4 * kMiB);
  o2.max_leases = 1;
  o2.clock = clock.Fn();
  auto t2 = *DramTier::Create(o2);
  Put(*t2, 1, kPage);
  ASSERT_TRUE(t2->Acquire(Key(1), 1).ok());
  clock.Pass(std::chrono::milliseconds(1));
  EXPECT_TRUE(t2->Acquire(Key(1), 60'000).ok());
}

TEST(DramTierTest, ReservationLifecycle) {
  auto t = *DramTier::Create(SmallPool(4 * kMiB));
  auto r = t->Reserve(5000);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->extent.length, 5000u);
  EXPECT_EQ(t->Stats().reserved_bytes, 2 * kPage);
  EXPECT_EQ(t->Stats().reservations_outstanding, 1u);
  EntryMeta m = Fill(*t, r->extent, 5);  // the client writes into the reservation
  // Reserved space is not committable until taken.
  EXPECT_FALSE(t->Commit(Key(1), r->extent, m).ok());
  auto ext = t->TakeReservation(r->id);
  ASSERT_TRUE(ext.ok()) << ext.status();
  EXPECT_EQ(ext->offset, r->extent.offset);
  EXPECT_EQ(t->TakeReservation(r->id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(t->Stats().reserved_bytes, 0u);
  ASSERT_TRUE(t->Commit(Key(1), *ext, m).ok());
  auto l = *t->Acquire(Key(1), 0);
  EXPECT_TRUE(Intact(*t, l));
}

TEST(DramTierTest, ReservationsExpireAndRespectTheBudget) {
  ManualClock clock;
  auto o = SmallPool(4 * kMiB);
  o.reservation_ms = 1;
  o.max_reservation_bytes = kMiB;
  o.clock = clock.Fn();
  auto t = *DramTier::Create(o);
  EXPECT_EQ(t->Reserve(0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(t->Reserve(kMiB + 1).status().code(), absl::StatusCode::kResourceExhausted);
  auto a = t->Reserve(kMiB / 2);
  auto b = t->Reserve(kMiB / 2);
  ASSERT_TRUE(a.ok() && b.ok());
  clock.Pass(std::chrono::milliseconds(1));
  EXPECT_EQ(t->TakeReservation(a->id).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(t->ReapExpired(), 1u);  // b
  EXPECT_EQ(t->TakeReservation(b->id).status().code(), absl::StatusCode::kNotFound);
  auto s = t->Stats();
  EXPECT_EQ(s.used_bytes, 0u);
  EXPECT_EQ(s.reserved_bytes, 0u);
  EXPECT_EQ(s.expired_reservations, 2u);
  // Expired reservations give their budget back lazily too.
  ASSERT_TRUE(t->Reserve(kMiB).ok());
  clock.Pass(std::chrono::milliseconds(1));
  EXPECT_TRUE(t->Reserve(kMiB).ok());
}

TEST(DramTierTest, StatsAddUp) {
  auto o = SmallPool(16 * kMiB);
  auto t = *DramTier::Create(o);
  Put(*t, 1, kMiB);
  Put(*t, 2, kMiB + 1);
  auto inflight = *t->Allocate(3 * kPage);
  auto res = *t->Reserve(kPage);
  auto l = *t->Acquire(Key(2), 0);
  auto s = t->Stats();
  EXPECT_EQ(s.capacity_bytes, 16 * kMiB);
  EXPECT_EQ(s.entries, 2u);
  EXPECT_EQ(s.entry_bytes, 2 * kMiB + kPage);
  EXPECT_EQ(s.inflight_bytes, 3 * kPage);
  EXPECT_EQ(s.reserved_bytes, kPage);
  EXPECT_EQ(s.pinned_entry_bytes, kMiB + kPage);
  EXPECT_EQ(s.used_bytes, s.entry_bytes + s.inflight_bytes + s.reserved_bytes + s.zombie_bytes);
  EXPECT_EQ(s.leases_outstanding, 1u);
  EXPECT_EQ(s.reservations_outstanding, 1u);
  EXPECT_EQ(s.largest_free_extent, 16 * kMiB - s.used_bytes);
  t->Free(inflight);
  ASSERT_TRUE(t->Release(l.id));
  t->Free(*t->TakeReservation(res.id));
  s = t->Stats();
  EXPECT_EQ(s.used_bytes, s.entry_bytes);
  EXPECT_EQ(s.pinned_entry_bytes, 0u);
}

// Writers put, replace and erase shared keys while readers verify every leased byte.
// Any extent freed or reused under a lease shows up as a CRC mismatch.
TEST(DramTierTest, ConcurrentSmoke) {
  auto t = *DramTier::Create(SmallPool(2 * kMiB));
  constexpr int kThreads = 4;
  constexpr int kOps = 1500;
  std::atomic<int> corrupt{0}, hits{0};
  std::vector<std::thread> threads;
  for (int id = 0; id < kThreads; ++id) {
    threads.emplace_back([&, id] {
      std::mt19937_64 rng(id + 1);
      std::vector<Lease> held;
      for (int i = 0; i < kOps; ++i) {
        const uint64_t key = rng() % 256;  // ~8 MiB of live keys: constant eviction
        const int op = rng() % 10;
        if (op < 4) {
          auto e = t->Allocate(1 + rng() % (64 * 1024));
          if (!e.ok()) continue;  // everything leased at that moment
          EntryMeta m = Fill(*t, *e, rng());
          if (rng() % 8 == 0) {
            t->Free(*e);
          } else {
            EXPECT_TRUE(t->Commit(Key(key), *e, m).ok());
          }
        } else if (op < 8) {
          // Short leases may lapse at any moment, so only long ones are checked.
          const bool long_lease = rng() % 4 != 0;
          auto l = t->Acquire(Key(key), long_lease ? 60'000 : 1);
          if (!l.ok()) continue;
          ++hits;
          if (!long_lease) {
            t->Release(l->id);
            continue;
          }
          if (!Intact(*t, *l)) ++corrupt;
          held.push_back(*l);
          if (held.size() > 3) {
            if (!Intact(*t, held.front())) ++corrupt;
            t->Release(held.front().id);  // may have expired: false is fine
            held.erase(held.begin());
          }
        } else if (op < 9) {
          t->Erase(Key(key));
        } else {
          t->ReapExpired();
          (void)t->Stats();
        }
      }
      for (const Lease& l : held) t->Release(l.id);
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(corrupt.load(), 0);
  EXPECT_GT(hits.load(), 0);
  EXPECT_GT(t->Stats().evictions, 0u);
  t->ReapExpired();
  auto s = t->Stats();
  EXPECT_EQ(s.leases_outstanding, 0u);
  EXPECT_EQ(s.zombie_entries, 0u);
  EXPECT_EQ(s.inflight_bytes, 0u);
  EXPECT_EQ(s.invalid_frees, 0u);
  EXPECT_EQ(s.used_bytes, s.entry_bytes);
  uint64_t n = 0;
  t->ForEach([&](const EntryKey&, const EntryMeta&) { ++n; });
  EXPECT_EQ(n, s.entries);
}

}  // namespace
}  // namespace adaptcache
