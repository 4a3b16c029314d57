// FIFO reclaim with hot reinsertion, the reclaim hooks, and admission through the tier.
#include <filesystem>

#include "gtest/gtest.h"
#include "storage/ssd_format.h"
#include "storage/ssd_tier.h"
#include "tests/storage/ssd_test_util.h"

namespace adaptcache {
namespace {

using testing::KeyOf;
using testing::MakeContainer;
using testing::SmallOptions;
using testing::TempDir;

constexpr uint64_t kSize = 100000;  // record: 4 KiB + 100 KiB = 104 KiB; ~39 per 4 MiB segment

TEST(SsdReclaim, FifoDropsOldestAndKeepsWriteAmplificationNearOne) {
  TempDir dir;
  SsdTierOptions o = SmallOptions(dir.path());
  o.reinsert_min_hits = 0;  // never reinsert
  auto t = std::move(*SsdTier::Open(o));
  constexpr int kN = 400;  // ~16 MiB through 6 x 4 MiB segments
  for (int i = 0; i < kN; ++i) ASSERT_TRUE(t->PutSync(KeyOf(i), MakeContainer(i, kSize)).ok());
  auto s = t->Stats();
  EXPECT_GE(s.segments_reclaimed, 1u);
  EXPECT_GT(s.dropped_on_reclaim, 0u);
  EXPECT_EQ(s.reinserted_entries, 0u);
  EXPECT_EQ(s.entries + s.dropped_on_reclaim, uint64_t{kN});
  // Only the record header block and 4 KiB padding: no rewrites.
  const double c = static_cast<double>(MakeContainer(0, kSize).size());
  EXPECT_LT(s.write_amplification, static_cast<double>(RecordBytes(MakeContainer(0, kSize).size())) / c + 0.005);
  // FIFO: the survivors are exactly the newest entries.
  int first_present = -1;
  for (int i = 0; i < kN; ++i) {
    const bool present = t->Contains(KeyOf(i));
    if (present && first_present < 0) first_present = i;
    if (first_present >= 0) EXPECT_TRUE(present) << i;
  }
  EXPECT_GT(first_present, 0);
  for (int i = first_present; i < kN; i += 17) EXPECT_EQ(*t->Get(KeyOf(i)), MakeContainer(i, kSize));
}

TEST(SsdReclaim, HotEntriesAreReinserted) {
  TempDir dir;
  auto t = std::move(*SsdTier::Open(SmallOptions(dir.path())));  // reinsert_min_hits = 1
  // Entries 0..9 are read (hot) after being written; the rest are never read.
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(t->PutSync(KeyOf(i), MakeContainer(i, kSize)).ok());
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(t->Get(KeyOf(i)).ok());
  for (int i = 10; i < 300; ++i) ASSERT_TRUE(t->PutSync(KeyOf(i), MakeContainer(i, kSize)).ok());
  auto s = t->Stats();
  ASSERT_GE(s.segments_reclaimed, 1u);
  EXPECT_GE(s.reinserted_entries, 10u);
  for (int i = 0; i < 10; ++i) {
    auto got = t->Get(KeyOf(i));
    ASSERT_TRUE(got.ok()) << "hot entry " << i << " lost: " << got.status();
    EXPECT_EQ(*got, MakeContainer(i, kSize));
  }
  EXPECT_FALSE(t->Contains(KeyOf(10)));  // cold and oldest: gone
  EXPECT_LT(s.write_amplification, 1.15);
  // Reinserted entries survive a restart too.
  t.reset();
  t = std::move(*SsdTier::Open(SmallOptions(dir.path())));
  for (int i = 0; i < 10; ++i) EXPECT_EQ(*t->Get(KeyOf(i)), MakeContainer(i, kSize));
}

TEST(SsdReclaim, HooksDecideAndTranscode) {
  TempDir dir;
  SsdTierOptions o = SmallOptions(dir.path());
  int asked = 0;
  o.reclaim.keep = [&](const EntryKey& k, const SsdEntryInfo& info) {
    ++asked;
    EXPECT_EQ(info.payload_bytes, MakeContainer(0, kSize).size());
    return k.key.hi % 50 == 0;  // keep every 50th
  };
  // "Transcode" kept entries to a smaller container derived from the key.
  o.reclaim.transform = [](const EntryKey& k, ConstByteSpan bytes) -> absl::StatusOr<std::vector<std::byte>> {
    if (bytes.size() != MakeContainer(0, kSize).size()) return absl::InternalError("unexpected input");
    return MakeContainer(1000 + k.key.hi, 3000);
  };
  auto t = std::move(*SsdTier::Open(o));
  for (int i = 0; i < 300; ++i) ASSERT_TRUE(t->PutSync(KeyOf(i), MakeContainer(i, kSize)).ok());
  EXPECT_GT(asked, 0);
  EXPECT_EQ(*t->Get(KeyOf(0)), MakeContainer(1000, 3000));
  EXPECT_EQ(*t->Get(KeyOf(50)), MakeContainer(1050, 3000));
  EXPECT_FALSE(t->Contains(KeyOf(1)));
}

// A reclaim reads a hot entry, then writes it again: an Erase that comes meanwhile must
// not be undone by that copy, in memory or after a restart.
TEST(SsdReclaim, EraseDuringReclaimIsNotUndone) {
  TempDir dir;
  SsdTierOptions o = SmallOptions(dir.path());
  SsdTier* tp = nullptr;
  int erased = 0;
  o.reclaim.keep = [&](const EntryKey& k, const SsdEntryInfo&) {
    if (k.key.hi % 10 != 0) return false;
    if (tp->Erase(k).ok()) ++erased;  // a Delete between the reclaim's snapshot and its copy
    return true;
  };
  auto t = std::move(*SsdTier::Open(o));
  tp = t.get();
  for (int i = 0; i < 300; ++i) ASSERT_TRUE(t->PutSync(KeyOf(i), MakeContainer(i, kSize)).ok());
  t->Flush();
  ASSERT_GT(erased, 0);
  EXPECT_GE(t->Stats().reinsert_superseded, static_cast<uint64_t>(erased));
  int back = 0;
  auto check = [&](SsdTier* tier) {
    back = 0;
    for (int i = 0; i < 100; i += 10) back += tier->Contains(KeyOf(i));
  };
  check(t.get());
  EXPECT_EQ(back, 0) << "an erased entry came back after the reclaim";
  t.reset();
  o.reclaim.keep = nullptr;
  t = std::move(*SsdTier::Open(o));
  check(t.get());
  EXPECT_EQ(back, 0) << "an erased entry came back after a restart";
}

// Reinsertion records carry the seq they copy; a rebuild from the log alone still
// serves them.
TEST(SsdReclaim, ReinsertedEntriesSurviveAnIndexRebuild) {
  TempDir dir;
  auto t = std::move(*SsdTier::Open(SmallOptions(dir.path())));
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(t->PutSync(KeyOf(i), MakeContainer(i, kSize)).ok());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(t->Get(KeyOf(i)).ok());
  for (int i = 5; i < 300; ++i) ASSERT_TRUE(t->PutSync(KeyOf(i), MakeContainer(i, kSize)).ok());
  ASSERT_GE(t->Stats().reinserted_entries, 5u);
  t.reset();
  std::filesystem::remove_all(std::filesystem::path(dir.path()) / "index");
  t = std::move(*SsdTier::Open(SmallOptions(dir.path())));
  ASSERT_TRUE(t->Stats().rebuilt_index);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(*t->Get(KeyOf(i)), MakeContainer(i, kSize)) << i;
}

TEST(SsdAdmissionTier, SecondAccessRule) {
  TempDir dir;
  SsdTierOptions o = SmallOptions(dir.path());
  o.admission.admit_after_accesses = 2;
  auto t = std::move(*SsdTier::Open(o));
  auto c = MakeContainer(1, 5000);
  absl::Status st = t->PutSync(KeyOf(1), c);
  EXPECT_TRUE(IsNotAdmitted(st)) << st;
  EXPECT_FALSE(t->Contains(KeyOf(1)));
  EXPECT_TRUE(t->PutSync(KeyOf(1), c).ok());
  t->NoteAccess(KeyOf(2));
  EXPECT_TRUE(t->PutSync(KeyOf(2), c).ok());
  EXPECT_TRUE(t->PutSync(KeyOf(3), c, SsdPutOptions{.bypass_admission = true}).ok());
  EXPECT_EQ(t->Stats().rejected_cold, 1u);
}

TEST(SsdAdmissionTier, WriteBudget) {
  TempDir dir;
  int64_t now = 0;
  SsdTierOptions o = SmallOptions(dir.path());
  o.admission.write_budget_bytes_per_s = 20000;
  o.admission.write_budget_burst_bytes = 20000;
  o.clock = [&] { return now; };
  auto t = std::move(*SsdTier::Open(o));
  auto c = MakeContainer(1, 8000);  // ~8 KB each
  EXPECT_TRUE(t->PutSync(KeyOf(1), c).ok());
  EXPECT_TRUE(t->PutSync(KeyOf(2), c).ok());
  absl::Status st = t->PutSync(KeyOf(3), c);
  EXPECT_TRUE(IsOverBudget(st)) << st;
  now += 1'000'000'000;
  EXPECT_TRUE(t->PutSync(KeyOf(3), c).ok());
  EXPECT_EQ(t->Stats().rejected_budget, 1u);
}

}  // namespace
}  // namespace adaptcache
