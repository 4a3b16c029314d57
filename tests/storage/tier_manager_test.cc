// TierManager with a real DramTier (small pool in /dev/shm) and a real SsdTier (temp
// directory under /var/tmp, small segments).
#include "storage/tier_manager.h"

#include <unistd.h>

#include <cstring>
#include <atomic>
#include <filesystem>
#include <optional>
#include <random>
#include <thread>
#include <string>
#include <vector>

#include "common/crc32c.h"
#include "gtest/gtest.h"
#include "tests/storage/ssd_test_util.h"

namespace adaptcache {
namespace {

constexpr uint64_t kPayload = 6000;  // container ~6.1 KB: one 8 KiB DRAM extent

std::vector<std::byte> MakeContainer(uint64_t seed, uint64_t payload = kPayload,
                                     CodecId codec = CodecId::kRaw) {
  return testing::MakeContainer(seed, payload, codec, KvShape{1, 16, 1, 64, DType::kFP16});
}

EntryKey KeyOf(uint64_t i) { return EntryKey{11, Key128{i * 0x9e37ull + 5, i}}; }

using testing::TempDir;

class TierManagerTest : public ::testing::Test {
 protected:
  TierManagerOptions Options(uint32_t promote_after = 1) {
    TierManagerOptions o;
    o.dram.capacity_bytes = 64 << 10;  // 8 entries
    o.dram.huge_pages = false;
    o.dram.mlock = false;
    o.dram.name = "ac-tier-test";
    o.dram.max_reservation_bytes = 32 << 10;
    SsdTierOptions s;
    s.dir = dir_.path();
    s.segment_bytes = 1 << 20;
    s.segment_count = 4;
    s.io_bytes = 64 << 10;
    s.write_buffers = 4;
    s.read_buffers = 4;
    o.ssd = s;
    o.promote_after_hits = promote_after;
    return o;
  }
  void Open(TierManagerOptions o) {
    tm_.reset();
    auto t = TierManager::Create(std::move(o));
    ASSERT_TRUE(t.ok()) << t.status();
    tm_ = std::move(*t);
  }
  absl::StatusOr<TierPutResult> Put(uint64_t i, bool durable = false) {
    return PutBytes(KeyOf(i), MakeContainer(i), durable);
  }
  absl::StatusOr<TierPutResult> PutBytes(const EntryKey& k, const std::vector<std::byte>& c,
                                         bool durable = false) {
    auto e = tm_->Allocate(c.size());
    if (!e.ok()) return e.status();
    std::memcpy(tm_->Bytes(*e).data(), c.data(), c.size());
    auto meta = DescribeFromHeader(c);
    if (!meta.ok()) return meta.status();
    TierPutOptions po;
    po.durable = durable;
    auto r = tm_->CommitPut(k, *e, *meta, po);
    if (!r.ok()) tm_->Free(*e);
    return r;
  }
  // Reads through Get; returns the bytes (empty on a miss) and where they were found.
  std::vector<std::byte> Read(const EntryKey& k, Tier* where = nullptr,
                              bool* promoted = nullptr) {
    auto l = tm_->Get(k, 1000);
    if (!l.ok()) {
      EXPECT_TRUE(absl::IsNotFound(l.status())) << l.status();
      return {};
    }
    ConstByteSpan b = tm_->Bytes(l->lease.extent);
    std::vector<std::byte> out(b.begin(), b.end());
    EXPECT_EQ(Crc32c(out.data(), out.size()), l->lease.meta.crc32c);
    if (where) *where = l->found_in;
    if (promoted) *promoted = l->promoted;
    EXPECT_TRUE(tm_->Release(l->lease.id));
    return out;
  }

  TempDir dir_;
  std::unique_ptr<TierManager> tm_;
};

TEST_F(TierManagerTest, PressureDemotesAndEveryEntryStaysReadable) {
  Open(Options(/*promote_after=*/0));
  constexpr int kN = 40;  // five times the pool
  for (int i = 0; i < kN; ++i) ASSERT_TRUE(Put(i).ok()) << i;
  tm_->ssd_for_testing()->Flush();
  auto s = tm_->Stats();
  EXPECT_GT(s.demotions_queued, 0u);
  EXPECT_EQ(s.demotions_refused, 0u);
  EXPECT_EQ(s.evictions_lost, 0u);
  int from_ssd = 0;
  for (int i = 0; i < kN; ++i) {
    Tier where{};
    auto got = Read(KeyOf(i), &where);
    ASSERT_EQ(got, MakeContainer(i)) << i;
    from_ssd += where == Tier::kSsd;
    const Location loc = tm_->Locate(KeyOf(i));
    EXPECT_NE(loc.tier, Tier::kNone);
    EXPECT_EQ(loc.meta.crc32c, Crc32c(got.data(), got.size()));
  }
  EXPECT_GE(from_ssd, kN - 8);
  s = tm_->Stats();
  EXPECT_EQ(s.ssd_hits, static_cast<uint64_t>(from_ssd));
  EXPECT_EQ(s.promotions, 0u);  // promote_after_hits = 0: anonymous leases only
  EXPECT_EQ(s.anonymous_leases, static_cast<uint64_t>(from_ssd));
  EXPECT_EQ(s.dram.zombie_entries, 0u);  // anonymous extents freed at release
}

TEST_F(TierManagerTest, SsdHitPromotesOnTheNthHit) {
  Open(Options(/*promote_after=*/2));
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(Put(i).ok());
  tm_->ssd_for_testing()->Flush();
  ASSERT_EQ(tm_->Locate(KeyOf(0)).tier, Tier::kSsd);
  Tier where{};
  bool promoted = true;
  EXPECT_EQ(Read(KeyOf(0), &where, &promoted), MakeContainer(0));
  EXPECT_EQ(where, Tier::kSsd);
  EXPECT_FALSE(promoted);
  EXPECT_EQ(tm_->Locate(KeyOf(0)).tier, Tier::kSsd);
  EXPECT_EQ(Read(KeyOf(0), &where, &promoted), MakeContainer(0));
  EXPECT_TRUE(promoted);
  const Location loc = tm_->Locate(KeyOf(0));
  EXPECT_EQ(loc.tier, Tier::kDram);
  EXPECT_TRUE(loc.on_ssd);
  EXPECT_EQ(Read(KeyOf(0), &where), MakeContainer(0));
  EXPECT_EQ(where, Tier::kDram);
  EXPECT_EQ(tm_->Stats().promotions, 1u);
}

TEST_F(TierManagerTest, LeasedEntriesAreNeverMoved) {
  Open(Options());
  ASSERT_TRUE(Put(0).ok());
  auto lease = tm_->Get(KeyOf(0), 60'000);
  ASSERT_TRUE(lease.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(tm_->Demote(KeyOf(0))));
  EXPECT_TRUE(absl::IsFailedPrecondition(tm_->Evict(KeyOf(0))));
  for (int i = 1; i < 30; ++i) ASSERT_TRUE(Put(i).ok());  // pressure
  EXPECT_EQ(tm_->Locate(KeyOf(0)).tier, Tier::kDram);
  ConstByteSpan b = tm_->Bytes(lease->lease.extent);
  EXPECT_EQ(std::vector<std::byte>(b.begin(), b.end()), MakeContainer(0));
  EXPECT_TRUE(tm_->Release(lease->lease.id));
  EXPECT_TRUE(tm_->Demote(KeyOf(0)).ok());
  EXPECT_EQ(tm_->Locate(KeyOf(0)).tier, Tier::kSsd);
  EXPECT_EQ(Read(KeyOf(0)), MakeContainer(0));
}

TEST_F(TierManagerTest, ReplaceIsAtomicAndKeepsLeasedBytes) {
  Open(Options());
  ASSERT_TRUE(Put(0).ok());
  auto lease = tm_->Get(KeyOf(0), 60'000);
  ASSERT_TRUE(lease.ok());
  const auto old_bytes = MakeContainer(0);
  const auto new_bytes = MakeContainer(100, 3000, CodecId::kFp8);
  auto meta = DescribeFromHeader(new_bytes);
  ASSERT_TRUE(meta.ok());
  ReplaceOptions ro;
  ro.if_crc32c = Crc32c(old_bytes.data(), old_bytes.size()) ^ 1;  // stale read
  EXPECT_TRUE(absl::IsAborted(tm_->Replace(KeyOf(0), new_bytes, *meta, ro)));
  ro.if_crc32c = Crc32c(old_bytes.data(), old_bytes.size());
  ASSERT_TRUE(tm_->Replace(KeyOf(0), new_bytes, *meta, ro).ok());
  EXPECT_EQ(Read(KeyOf(0)), new_bytes);
  EXPECT_EQ(tm_->Locate(KeyOf(0)).meta.codec, "fp8");
  ConstByteSpan b = tm_->Bytes(lease->lease.extent);
  EXPECT_EQ(std::vector<std::byte>(b.begin(), b.end()), old_bytes);  // untouched under lease
  EXPECT_EQ(tm_->DramStats().zombie_entries, 1u);
  EXPECT_TRUE(tm_->Release(lease->lease.id));
  EXPECT_EQ(tm_->DramStats().zombie_entries, 0u);
  // Garbage is refused and changes nothing.
  std::vector<std::byte> junk(100, std::byte{7});
  EXPECT_TRUE(absl::IsInvalidArgument(tm_->Replace(KeyOf(0), junk, *meta, ReplaceOptions{})));
  EXPECT_EQ(Read(KeyOf(0)), new_bytes);
  // To SSD: the DRAM copy goes, the SSD copy serves.
  ReplaceOptions to_ssd;
  to_ssd.target = Tier::kSsd;
  ASSERT_TRUE(tm_->Replace(KeyOf(0), old_bytes, *DescribeFromHeader(old_bytes), to_ssd).ok());
  EXPECT_EQ(tm_->Locate(KeyOf(0)).tier, Tier::kSsd);
  EXPECT_EQ(Read(KeyOf(0)), old_bytes);
}

TEST_F(TierManagerTest, DeleteRemovesBothTiers) {
  Open(Options());
  auto r = Put(0, /*durable=*/true);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->durable);
  Location loc = tm_->Locate(KeyOf(0));
  EXPECT_EQ(loc.tier, Tier::kDram);
  EXPECT_TRUE(loc.on_ssd);
  EXPECT_TRUE(tm_->Delete(KeyOf(0)));
  EXPECT_EQ(tm_->Locate(KeyOf(0)).tier, Tier::kNone);
  EXPECT_FALSE(tm_->ssd_for_testing()->Contains(KeyOf(0)));
  EXPECT_TRUE(Read(KeyOf(0)).empty());
  EXPECT_FALSE(tm_->Delete(KeyOf(0)));
  // An entry being demoted when deleted does not come back.
  for (int i = 1; i < 20; ++i) ASSERT_TRUE(Put(i).ok());
  for (int i = 1; i < 20; ++i) tm_->Delete(KeyOf(i));
  tm_->ssd_for_testing()->Flush();
  for (int i = 1; i < 20; ++i) {
    EXPECT_EQ(tm_->Locate(KeyOf(i)).tier, Tier::kNone) << i;
    EXPECT_TRUE(Read(KeyOf(i)).empty()) << i;
  }
  EXPECT_EQ(tm_->SsdStats()->entries, 0u);
}

TEST_F(TierManagerTest, RePutInvalidatesOlderSsdCopy) {
  Open(Options());
  ASSERT_TRUE(Put(0, /*durable=*/true).ok());
  const auto v2 = MakeContainer(500);
  ASSERT_TRUE(PutBytes(KeyOf(0), v2).ok());
  EXPECT_FALSE(tm_->Locate(KeyOf(0)).on_ssd);
  for (int i = 1; i < 20; ++i) ASSERT_TRUE(Put(i).ok());  // v2 demoted
  tm_->ssd_for_testing()->Flush();
  EXPECT_EQ(Read(KeyOf(0)), v2);
}

TEST_F(TierManagerTest, MasterCopyOnSsdWhileLossyCopyServesFromDram) {
  Open(Options(/*promote_after=*/0));
  const auto raw = MakeContainer(0);
  ASSERT_TRUE(Put(0).ok());
  const auto lossy = MakeContainer(77, 2000, CodecId::kQuant);
  ReplaceOptions ro;
  ro.keep_master = true;
  ASSERT_TRUE(tm_->Replace(KeyOf(0), lossy, *DescribeFromHeader(lossy), ro).ok());
  Location loc = tm_->Locate(KeyOf(0));
  EXPECT_EQ(loc.tier, Tier::kDram);
  EXPECT_TRUE(loc.ssd_master);
  EXPECT_EQ(tm_->Stats().master_entries, 1u);
  EXPECT_EQ(Read(KeyOf(0)), lossy);
  auto best = tm_->ReadBest(KeyOf(0));
  ASSERT_TRUE(best.ok());
  EXPECT_TRUE(best->master);
  EXPECT_EQ(best->container, raw);
  // DRAM pressure drops the lossy copy without overwriting the master.
  for (int i = 1; i < 30; ++i) ASSERT_TRUE(Put(i).ok());
  tm_->ssd_for_testing()->Flush();
  loc = tm_->Locate(KeyOf(0));
  EXPECT_EQ(loc.tier, Tier::kSsd);
  EXPECT_EQ(Read(KeyOf(0)), raw);
  bool seen = false;
  tm_->ForEach([&](const TierEntry& e) {
    if (e.key == KeyOf(0)) {
      seen = true;
      EXPECT_EQ(e.tier, Tier::kSsd);
    }
  });
  EXPECT_TRUE(seen);
}

TEST_F(TierManagerTest, RestartIsWarmAndLookupReadsTheContainerHeader) {
  Open(Options(/*promote_after=*/1));
  for (int i = 0; i < 12; ++i) {
    auto r = Put(i, /*durable=*/true);
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->durable);
  }
  Open(Options(/*promote_after=*/1));  // destroys the old manager first
  EXPECT_EQ(tm_->Stats().dram.entries, 0u);
  for (int i = 0; i < 12; ++i) {
    Location loc = tm_->Locate(KeyOf(i));
    ASSERT_EQ(loc.tier, Tier::kSsd) << i;
    // Not read yet: Locate read the 64-byte container header from SSD for the shape.
    EXPECT_TRUE(loc.meta_complete);
    EXPECT_EQ(loc.meta.shape.tokens, 16u);
    EXPECT_EQ(loc.meta.raw_bytes, loc.meta.shape.Bytes());
    EXPECT_EQ(loc.meta.codec, "raw");
    Tier where{};
    EXPECT_EQ(Read(KeyOf(i), &where), MakeContainer(i)) << i;
    EXPECT_EQ(where, Tier::kSsd);
  }
  const Location loc = tm_->Locate(KeyOf(0));
  EXPECT_TRUE(loc.meta_complete);
  EXPECT_EQ(loc.meta.shape.tokens, 16u);
}

TEST_F(TierManagerTest, AdmitOnSecondAccessRefusesColdDemotions) {
  TierManagerOptions o = Options();
  o.ssd->admission.admit_after_accesses = 2;
  Open(std::move(o));
  ASSERT_TRUE(Put(0).ok());
  EXPECT_EQ(Read(KeyOf(0)), MakeContainer(0));  // second access
  for (int i = 1; i < 30; ++i) ASSERT_TRUE(Put(i).ok());
  tm_->ssd_for_testing()->Flush();
  auto s = tm_->Stats();
  EXPECT_GT(s.demotions_refused, 0u);
  EXPECT_EQ(Read(KeyOf(0)), MakeContainer(0));  // hot: demoted, still here
  EXPECT_TRUE(Read(KeyOf(1)).empty());          // cold: evicted
}

TEST_F(TierManagerTest, MoverPrimitivesAndForEach) {
  Open(Options(/*promote_after=*/0));
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(Put(i).ok());
  EXPECT_TRUE(absl::IsNotFound(tm_->Demote(KeyOf(99))));
  ASSERT_TRUE(tm_->Demote(KeyOf(1), /*bypass_admission=*/true).ok());
  EXPECT_EQ(tm_->Locate(KeyOf(1)).tier, Tier::kSsd);
  ASSERT_TRUE(tm_->Promote(KeyOf(1)).ok());
  EXPECT_EQ(tm_->Locate(KeyOf(1)).tier, Tier::kDram);
  ASSERT_TRUE(tm_->Demote(KeyOf(2)).ok());
  auto best = tm_->ReadBest(KeyOf(2));
  ASSERT_TRUE(best.ok());
  EXPECT_EQ(best->tier, Tier::kSsd);
  EXPECT_EQ(best->container, MakeContainer(2));
  ASSERT_TRUE(tm_->Evict(KeyOf(3)).ok());
  EXPECT_TRUE(absl::IsNotFound(tm_->Evict(KeyOf(3))));
  int dram = 0, ssd = 0;
  tm_->ForEach([&](const TierEntry& e) {
    (e.tier == Tier::kDram ? dram : ssd)++;
    EXPECT_EQ(e.leases, 0u);
    if (e.key == KeyOf(1)) {
      EXPECT_TRUE(e.on_ssd);
    }
  });
  EXPECT_EQ(dram, 2);  // 0 and 1
  EXPECT_EQ(ssd, 1);   // 2
}

TEST_F(TierManagerTest, BadCommitChangesNothing) {
  Open(Options());
  EntryMeta meta;
  auto r = tm_->CommitPut(KeyOf(0), Extent{4096 * 3, 100}, meta);  // not in flight
  EXPECT_TRUE(absl::IsInvalidArgument(r.status()));
  EXPECT_EQ(tm_->Locate(KeyOf(0)).tier, Tier::kNone);
}

// Writers re-put their own keys, plain and durable, while the small pool evicts older
// copies all the time. A Put acknowledged durable must leave exactly its version on SSD
// (what a crash would keep), whatever the demotions of the key's older copies do.
TEST_F(TierManagerTest, DurablePutSurvivesTheDemotionOfItsOlderCopy) {
  TierManagerOptions o = Options(/*promote_after=*/0);
  o.ssd->segment_bytes = 4 << 20;
  o.ssd->segment_count = 8;
  Open(o);
  constexpr int kThreads = 4, kKeysPer = 8, kOps = 1000;
  std::vector<std::optional<uint32_t>> expect(kThreads * kKeysPer);
  std::vector<std::thread> writers;
  std::atomic<int> errors{0}, durable_acks{0};
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      std::mt19937 rng(1234 + t);
      std::vector<uint64_t> version(kKeysPer, 0);
      // Random plain and durable Puts, then a plain and a durable one on each key.
      for (int op = 0; op < kOps + 2 * kKeysPer; ++op) {
        const bool tail = op >= kOps;
        const int slot = tail ? (op - kOps) / 2 : static_cast<int>(rng() % kKeysPer);
        const uint64_t key = static_cast<uint64_t>(t * kKeysPer + slot);
        const bool durable = tail ? (op - kOps) % 2 == 1 : rng() % 2 == 0;
        auto c = MakeContainer(key * 100000 + ++version[slot]);
        auto r = PutBytes(KeyOf(key), c, durable);
        if (!r.ok()) {
          errors.fetch_add(1);
          continue;
        }
        if (durable && r->durable) {
          expect[key] = Crc32c(c.data(), c.size());
          durable_acks.fetch_add(1);
        } else {
          expect[key].reset();  // a plain Put may or may not reach SSD
        }
      }
    });
  }
  for (auto& w : writers) w.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_GT(durable_acks.load(), kThreads * kOps / 4);
  tm_->ssd_for_testing()->Flush();
  EXPECT_EQ(tm_->Stats().demoting_entries, 0u);  // no demotion bookkeeping left behind
  const auto s = tm_->Stats();
  EXPECT_GT(s.demotions_queued, 0u);
  tm_.reset();  // DRAM is gone, as after a crash; only the SSD tier answers now
  auto ssd = SsdTier::Open(*o.ssd);
  ASSERT_TRUE(ssd.ok()) << ssd.status();
  int checked = 0;
  for (size_t k = 0; k < expect.size(); ++k) {
    if (!expect[k]) continue;
    auto info = (*ssd)->Lookup(KeyOf(k));
    ASSERT_TRUE(info.has_value()) << "acknowledged-durable key " << k << " has no SSD copy";
    EXPECT_EQ(info->payload_crc32c, *expect[k]) << "key " << k << " holds another version on SSD";
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

TEST(TierManagerDramOnly, EvictionsAreLossesWithoutSsd) {
  TierManagerOptions o;
  o.dram.capacity_bytes = 64 << 10;
  o.dram.huge_pages = false;
  o.dram.mlock = false;
  o.dram.name = "ac-tier-test";
  auto tm = TierManager::Create(o);
  ASSERT_TRUE(tm.ok());
  for (int i = 0; i < 20; ++i) {
    auto c = MakeContainer(i);
    auto e = (*tm)->Allocate(c.size());
    ASSERT_TRUE(e.ok());
    std::memcpy((*tm)->Bytes(*e).data(), c.data(), c.size());
    ASSERT_TRUE((*tm)->CommitPut(KeyOf(i), *e, *DescribeFromHeader(c)).ok());
  }
  EXPECT_GT((*tm)->Stats().evictions_lost, 0u);
  EXPECT_FALSE((*tm)->Stats().ssd.has_value());
  EXPECT_TRUE(absl::IsNotFound((*tm)->Get(KeyOf(0), 0).status()));
  EXPECT_TRUE(absl::IsFailedPrecondition((*tm)->Demote(KeyOf(19))));
}

}  // namespace
}  // namespace adaptcache
