#include "storage/extent_allocator.h"

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <map>
#include <optional>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace adaptcache {
namespace {

constexpr uint64_t kA = ExtentAllocator::kAlignment;

std::vector<std::pair<uint64_t, uint64_t>> FreeList(const ExtentAllocator& a) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  a.ForEachFree([&](uint64_t off, uint64_t len) { out.emplace_back(off, len); });
  return out;
}

TEST(ExtentAllocatorTest, StartsAsOneFreeExtentRoundedDown) {
  ExtentAllocator a(10 * kA + 123);
  EXPECT_EQ(a.capacity(), 10 * kA);
  EXPECT_EQ(a.free_bytes(), 10 * kA);
  EXPECT_EQ(a.largest_free_extent(), 10 * kA);
  EXPECT_EQ(a.Stats().fragmentation, 0.0);
  EXPECT_EQ(FreeList(a), (std::vector<std::pair<uint64_t, uint64_t>>{{0, 10 * kA}}));
}

TEST(ExtentAllocatorTest, AlignsEveryExtentAndRoundsLengths) {
  ExtentAllocator a(64 * kA);
  auto x = a.Allocate(1);
  auto y = a.Allocate(kA + 1);
  auto z = a.Allocate(kA);
  ASSERT_TRUE(x.ok() && y.ok() && z.ok());
  EXPECT_EQ(*x % kA, 0u);
  EXPECT_EQ(*y % kA, 0u);
  EXPECT_EQ(*z % kA, 0u);
  EXPECT_EQ(*y - *x, kA);      // 1 byte occupies one page
  EXPECT_EQ(*z - *y, 2 * kA);  // kA+1 bytes occupy two
  EXPECT_EQ(a.used_bytes(), 4 * kA);
}

TEST(ExtentAllocatorTest, RejectsZeroAndOversized) {
  ExtentAllocator a(4 * kA);
  EXPECT_EQ(a.Allocate(0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a.Allocate(4 * kA + 1).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(a.Allocate(UINT64_MAX).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(a.free_bytes(), 4 * kA);
}

TEST(ExtentAllocatorTest, ExhaustionAndReuse) {
  ExtentAllocator a(4 * kA);
  std::vector<uint64_t> offs;
  for (int i = 0; i < 4; ++i) {
    auto r = a.Allocate(kA);
    ASSERT_TRUE(r.ok());
    offs.push_back(*r);
  }
  EXPECT_EQ(a.free_bytes(), 0u);
  EXPECT_EQ(a.largest_free_extent(), 0u);
  EXPECT_EQ(a.Stats().fragmentation, 0.0);
  EXPECT_EQ(a.Allocate(1).status().code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(a.Free(offs[2], kA).ok());
  auto again = a.Allocate(100);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, offs[2]);
}

TEST(ExtentAllocatorTest, CoalescesWithBothNeighbours) {
  ExtentAllocator a(5 * kA);
  std::vector<uint64_t> o;
  for (int i = 0; i < 5; ++i) o.push_back(*a.Allocate(kA));
  ASSERT_TRUE(a.Free(o[1], kA).ok());
  ASSERT_TRUE(a.Free(o[3], kA).ok());
  EXPECT_EQ(a.free_extents(), 2u);
  EXPECT_EQ(a.largest_free_extent(), kA);
  EXPECT_DOUBLE_EQ(a.Stats().fragmentation, 0.5);
  // 2 pages free but not contiguous: a 2-page request fails.
  EXPECT_EQ(a.Allocate(2 * kA).status().code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(a.Free(o[2], kA).ok());  // bridges 1 and 3
  EXPECT_EQ(FreeList(a), (std::vector<std::pair<uint64_t, uint64_t>>{{kA, 3 * kA}}));
  ASSERT_TRUE(a.Free(o[0], kA).ok());
  ASSERT_TRUE(a.Free(o[4], kA).ok());
  EXPECT_EQ(FreeList(a), (std::vector<std::pair<uint64_t, uint64_t>>{{0, 5 * kA}}));
  EXPECT_EQ(a.Stats().fragmentation, 0.0);
}

TEST(ExtentAllocatorTest, BestFitPicksSmallestHoleThenLowestOffset) {
  ExtentAllocator a(20 * kA);
  // Layout: [0,3) hole of 3 | used | [4,6) hole of 2 | used | [7,9) hole of 2 | used | rest
  std::vector<uint64_t> o;
  for (uint64_t len : {3, 1, 2, 1, 2, 1}) o.push_back(*a.Allocate(len * kA));
  ASSERT_TRUE(a.Free(o[0], 3 * kA).ok());
  ASSERT_TRUE(a.Free(o[2], 2 * kA).ok());
  ASSERT_TRUE(a.Free(o[4], 2 * kA).ok());
  EXPECT_EQ(*a.Allocate(2 * kA), 4 * kA);  // smallest fit, lowest offset
  EXPECT_EQ(*a.Allocate(2 * kA), 7 * kA);
  EXPECT_EQ(*a.Allocate(kA), 0u);  // only the 3-page hole and the tail are left
}

TEST(ExtentAllocatorTest, InvalidFreesChangeNothing) {
  ExtentAllocator a(8 * kA);
  const uint64_t x = *a.Allocate(2 * kA);
  const uint64_t y = *a.Allocate(kA);
  const auto before = FreeList(a);
  EXPECT_EQ(a.Free(x + 1, kA).code(), absl::StatusCode::kInvalidArgument);       // unaligned
  EXPECT_EQ(a.Free(x, 0).code(), absl::StatusCode::kInvalidArgument);            // empty
  EXPECT_EQ(a.Free(8 * kA, kA).code(), absl::StatusCode::kInvalidArgument);      // outside
  EXPECT_EQ(a.Free(7 * kA, 2 * kA).code(), absl::StatusCode::kInvalidArgument);  // runs out
  EXPECT_EQ(a.Free(0, UINT64_MAX).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a.Free(y, 2 * kA).code(), absl::StatusCode::kInvalidArgument);  // overlaps free
  EXPECT_EQ(FreeList(a), before);
  ASSERT_TRUE(a.Free(y, kA).ok());
  EXPECT_EQ(a.Free(y, kA).code(), absl::StatusCode::kInvalidArgument);  // double free
  // Partial free (tail trim) of a live allocation is allowed.
  ASSERT_TRUE(a.Free(x + kA, kA).ok());
  EXPECT_EQ(FreeList(a), (std::vector<std::pair<uint64_t, uint64_t>>{{kA, 7 * kA}}));
}

// Reference model: one flag per page, best fit found by scanning runs of free pages.
class PageModel {
 public:
  explicit PageModel(uint64_t pages) : used_(pages, false) {}
  std::optional<uint64_t> Allocate(uint64_t pages) {
    std::optional<std::pair<uint64_t, uint64_t>> best;  // (len, start)
    for (uint64_t i = 0; i < used_.size();) {
      if (used_[i]) {
        ++i;
        continue;
      }
      uint64_t j = i;
      while (j < used_.size() && !used_[j]) ++j;
      if (j - i >= pages && (!best || std::make_pair(j - i, i) < *best)) best = {{j - i, i}};
      i = j;
    }
    if (!best) return std::nullopt;
    for (uint64_t k = 0; k < pages; ++k) used_[best->second + k] = true;
    return best->second;
  }
  void Free(uint64_t start, uint64_t pages) {
    for (uint64_t k = 0; k < pages; ++k) {
      ASSERT_TRUE(used_[start + k]) << "model double free";
      used_[start + k] = false;
    }
  }
  uint64_t FreePages() const { return std::count(used_.begin(), used_.end(), false); }
  uint64_t LargestRun() const {
    uint64_t best = 0, run = 0;
    for (bool u : used_) {
      run = u ? 0 : run + 1;
      best = std::max(best, run);
    }
    return best;
  }

 private:
  std::vector<bool> used_;
};

TEST(ExtentAllocatorTest, RandomizedAgainstReferenceModel) {
  constexpr uint64_t kPages = 512;
  for (uint32_t seed = 1; seed <= 4; ++seed) {
    std::mt19937_64 rng(seed);
    ExtentAllocator a(kPages * kA);
    PageModel model(kPages);
    std::map<uint64_t, uint64_t> live;  // offset -> bytes requested
    for (int step = 0; step < 4000; ++step) {
      const bool alloc = live.empty() || rng() % 100 < 55;
      if (alloc) {
        // Mostly small, sometimes large, sometimes unaligned sizes.
        const uint64_t bytes = rng() % 10 == 0 ? 1 + rng() % (64 * kA) : 1 + rng() % (6 * kA);
        const uint64_t pages = (bytes + kA - 1) / kA;
        auto got = a.Allocate(bytes);
        auto want = model.Allocate(pages);
        ASSERT_EQ(got.ok(), want.has_value()) << "seed " << seed << " step " << step;
        if (!got.ok()) {
          EXPECT_EQ(got.status().code(), absl::StatusCode::kResourceExhausted);
          continue;
        }
        ASSERT_EQ(*got, *want * kA) << "seed " << seed << " step " << step;
        auto next = live.lower_bound(*got);
        if (next != live.end()) {
          ASSERT_LE(*got + pages * kA, next->first);
        }
        if (next != live.begin()) {
          auto prev = std::prev(next);
          ASSERT_LE(prev->first + ExtentAllocator::AlignUp(prev->second), *got);
        }
        live.emplace(*got, bytes);
      } else {
        auto it = live.begin();
        std::advance(it, rng() % live.size());
        ASSERT_TRUE(a.Free(it->first, it->second).ok());
        model.Free(it->first / kA, (it->second + kA - 1) / kA);
        live.erase(it);
      }
      ASSERT_EQ(a.free_bytes(), model.FreePages() * kA);
      ASSERT_EQ(a.largest_free_extent(), model.LargestRun() * kA);
    }
    // Free everything: the pool must coalesce back into one extent.
    for (const auto& [off, bytes] : live) ASSERT_TRUE(a.Free(off, bytes).ok());
    EXPECT_EQ(FreeList(a), (std::vector<std::pair<uint64_t, uint64_t>>{{0, kPages * kA}}));
  }
}

}  // namespace
}  // namespace adaptcache
