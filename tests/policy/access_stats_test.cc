#include "policy/access_stats.h"

#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace adaptcache::policy {
namespace {

constexpr int64_t kHalf = 1'000'000'000;  // 1 s

EntryKey K(uint64_t i, uint64_t ns = 1) { return EntryKey{ns, Key128{i * 0x9E3779B97F4A7C15ull, ~i * 0xC2B2AE3D27D4EB4Full}}; }

std::unique_ptr<AccessStats> Make(uint64_t max_entries = 0) {
  auto s = AccessStats::Create({kHalf, 16, max_entries});
  EXPECT_TRUE(s.ok());
  return std::move(*s);
}

TEST(AccessStatsTest, DecayHalvesPerHalfLife) {
  EXPECT_FLOAT_EQ(AccessStats::Decay(8.f, 0, kHalf, kHalf), 4.f);
  EXPECT_FLOAT_EQ(AccessStats::Decay(8.f, 0, 3 * kHalf, kHalf), 1.f);
  EXPECT_FLOAT_EQ(AccessStats::Decay(8.f, 5, 5, kHalf), 8.f);
  EXPECT_FLOAT_EQ(AccessStats::Decay(8.f, 10, 5, kHalf), 8.f);  // never grows backwards
}

TEST(AccessStatsTest, RecordFollowsTheRecurrence) {
  auto s = Make();
  const EntryKey k = K(1);
  EXPECT_EQ(s->Frequency(k, 0), 0.f);
  EXPECT_FALSE(s->Get(k, 0).has_value());
  ASSERT_TRUE(s->Record(k, 0));
  EXPECT_FLOAT_EQ(s->Frequency(k, 0), 1.f);
  ASSERT_TRUE(s->Record(k, 0));
  EXPECT_FLOAT_EQ(s->Frequency(k, 0), 2.f);
  ASSERT_TRUE(s->Record(k, kHalf));  // 2 * 1/2 + 1
  EXPECT_FLOAT_EQ(s->Frequency(k, kHalf), 2.f);
  EXPECT_FLOAT_EQ(s->Frequency(k, 2 * kHalf), 1.f);
  // An out-of-order access adds 1 without rewinding the clock.
  ASSERT_TRUE(s->Record(k, kHalf / 2));
  auto r = s->Get(k, kHalf);
  ASSERT_TRUE(r.has_value());
  EXPECT_FLOAT_EQ(r->freq, 3.f);
  EXPECT_EQ(r->last_access_ns, kHalf);
}

TEST(AccessStatsTest, EraseForEachAndBound) {
  auto s = Make(/*max_entries=*/100);
  for (uint64_t i = 0; i < 100; ++i) ASSERT_TRUE(s->Record(K(i), 0));
  EXPECT_FALSE(s->Record(K(1000), 0)) << "new key past the bound";
  EXPECT_TRUE(s->Record(K(5), 0)) << "known keys still count";
  EXPECT_EQ(s->size(), 100u);
  EXPECT_TRUE(s->Erase(K(7)));
  EXPECT_FALSE(s->Erase(K(7)));
  EXPECT_TRUE(s->Record(K(1000), 0));
  double total = 0;
  size_t n = 0;
  s->ForEach(kHalf, [&](const EntryKey&, const AccessRecord& r) {
    total += r.freq;
    ++n;
  });
  EXPECT_EQ(n, 100u);
  EXPECT_DOUBLE_EQ(total, (99 + 2) * 0.5);  // K(5) was hit twice; all decayed one half-life
  EXPECT_LT(s->BytesPerEntry(), 256.0);
}

TEST(AccessStatsTest, NamespacesDoNotAlias) {
  auto s = Make();
  ASSERT_TRUE(s->Record(K(1, 1), 0));
  EXPECT_EQ(s->Frequency(K(1, 2), 0), 0.f);
}

TEST(AccessStatsTest, ConcurrentRecordsAreAllCounted) {
  auto s = Make();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (uint64_t i = 0; i < 2000; ++i) s->Record(K(i % 50), 0);
    });
  }
  for (auto& t : threads) t.join();
  double total = 0;
  s->ForEach(0, [&](const EntryKey&, const AccessRecord& r) { total += r.freq; });
  EXPECT_DOUBLE_EQ(total, 8000.0);
  EXPECT_EQ(s->size(), 50u);
}

TEST(AccessStatsTest, RejectsBadOptions) {
  EXPECT_FALSE(AccessStats::Create({0, 16, 0}).ok());
  EXPECT_FALSE(AccessStats::Create({kHalf, 0, 0}).ok());
  EXPECT_FALSE(AccessStats::Create({kHalf, 5000, 0}).ok());
}

}  // namespace
}  // namespace adaptcache::policy
