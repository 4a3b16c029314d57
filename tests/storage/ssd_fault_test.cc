// Fault injection: every case ends as a miss or a clean error, never wrong bytes.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "gtest/gtest.h"
#include "storage/fault_injection.h"
#include "storage/ssd_format.h"
#include "storage/ssd_tier.h"
#include "tests/storage/ssd_test_util.h"

namespace adaptcache {
namespace {

using testing::KeyOf;
using testing::MakeContainer;
using testing::SmallOptions;
using testing::TempDir;

struct Fixture {
  TempDir dir;
  std::shared_ptr<FaultInjector> faults = std::make_shared<FaultInjector>();
  SsdTierOptions Options() {
    SsdTierOptions o = SmallOptions(dir.path());
    o.faults = faults;
    return o;
  }
};

// Every Get either misses or returns exactly the expected bytes.
void ExpectCorrectOrMiss(SsdTier& t, int n, uint64_t size, int* hits = nullptr) {
  int h = 0;
  for (int i = 0; i < n; ++i) {
    auto got = t.Get(KeyOf(i));
    if (got.ok()) {
      ++h;
      EXPECT_EQ(*got, MakeContainer(i, size)) << "wrong bytes for entry " << i;
    } else {
      EXPECT_TRUE(got.status().code() == absl::StatusCode::kNotFound ||
                  got.status().code() == absl::StatusCode::kUnavailable)
          << got.status();
    }
  }
  if (hits) *hits = h;
}

TEST(SsdFault, WriteErrorsTakeTheSegmentOutOfService) {
  for (int err : {EIO, ENOSPC}) {
    Fixture f;
    auto t = std::move(*SsdTier::Open(f.Options()));
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(t->PutSync(KeyOf(i), MakeContainer(i, 10000)).ok());
    f.faults->Add(FaultRule{FaultRule::Kind::kError, IoOp::kWrite, err});
    absl::Status st = t->PutSync(KeyOf(5), MakeContainer(5, 10000));
    EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
    auto s = t->Stats();
    EXPECT_EQ(s.slots_failed, 1u);
    EXPECT_EQ(s.entries, 0u);  // they lived in the failed segment: misses now
    ExpectCorrectOrMiss(*t, 6, 10000);
    // The tier keeps serving: new writes go to another segment.
    for (int i = 10; i < 15; ++i) ASSERT_TRUE(t->PutSync(KeyOf(i), MakeContainer(i, 10000)).ok());
    for (int i = 10; i < 15; ++i) EXPECT_EQ(*t->Get(KeyOf(i)), MakeContainer(i, 10000));
    // Out of service survives a restart.
    t.reset();
    f.faults->Clear();
    t = std::move(*SsdTier::Open(f.Options()));
    EXPECT_EQ(t->Stats().slots_failed, 1u);
    EXPECT_EQ(t->Stats().entries, 5u);
    for (int i = 10; i < 15; ++i) EXPECT_EQ(*t->Get(KeyOf(i)), MakeContainer(i, 10000));
  }
}

TEST(SsdFault, FsyncErrorIsNotRetried) {
  Fixture f;
  auto t = std::move(*SsdTier::Open(f.Options()));
  FaultRule r{FaultRule::Kind::kError, IoOp::kFsync, EIO, "segment-00000"};
  r.count = -1;  // would fail every retry on that segment
  f.faults->Add(r);
  EXPECT_EQ(t->PutSync(KeyOf(1), MakeContainer(1, 5000)).code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(t->Contains(KeyOf(1)));
  EXPECT_EQ(f.faults->fired(), 1u);  // exactly one fsync attempt on that segment, no retry
  ASSERT_TRUE(t->PutSync(KeyOf(2), MakeContainer(2, 5000)).ok());
  EXPECT_EQ(*t->Get(KeyOf(2)), MakeContainer(2, 5000));
  EXPECT_EQ(t->Stats().slots_failed, 1u);
}

TEST(SsdFault, ShortWriteFailsThePut) {
  Fixture f;
  auto t = std::move(*SsdTier::Open(f.Options()));
  ASSERT_TRUE(t->PutSync(KeyOf(0), MakeContainer(0, 1000)).ok());  // segment header written
  f.faults->Add(FaultRule{FaultRule::Kind::kShortWrite, IoOp::kWrite});
  EXPECT_EQ(t->PutSync(KeyOf(1), MakeContainer(1, 100000)).code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(t->Get(KeyOf(1)).ok());
  ASSERT_TRUE(t->PutSync(KeyOf(1), MakeContainer(1, 100000)).ok());
  EXPECT_EQ(*t->Get(KeyOf(1)), MakeContainer(1, 100000));
}

TEST(SsdFault, TornWriteReportedAsSuccessReadsAsMiss) {
  Fixture f;
  auto t = std::move(*SsdTier::Open(f.Options()));
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(t->PutSync(KeyOf(i), MakeContainer(i, 60000)).ok());
  // The lying device persists only 3 of the record's 16 blocks. Zero-fill the region
  // first would be ideal; here the old bytes are whatever the file held (zeros).
  FaultRule torn{FaultRule::Kind::kTornWrite, IoOp::kWrite};
  torn.blocks = 3;
  f.faults->Add(torn);
  ASSERT_TRUE(t->PutSync(KeyOf(4), MakeContainer(4, 60000)).ok());
  auto got = t->Get(KeyOf(4));
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(t->Contains(KeyOf(4)));  // dropped, not retried
  EXPECT_EQ(t->Stats().checksum_failures, 1u);
  ExpectCorrectOrMiss(*t, 4, 60000);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(t->Get(KeyOf(i)).ok());
}

TEST(SsdFault, ReadErrorAndBitFlipOnRead) {
  Fixture f;
  auto t = std::move(*SsdTier::Open(f.Options()));
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(t->PutSync(KeyOf(i), MakeContainer(i, 8000)).ok());
  FaultRule flip{FaultRule::Kind::kFlipBit, IoOp::kRead};
  flip.bit = 100;  // inside the record header, whichever read path is taken
  f.faults->Add(flip);
  EXPECT_EQ(t->Get(KeyOf(0)).status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(t->Contains(KeyOf(0)));
  EXPECT_EQ(*t->Get(KeyOf(1)), MakeContainer(1, 8000));

  f.faults->Add(FaultRule{FaultRule::Kind::kError, IoOp::kRead, EIO});
  EXPECT_EQ(t->Get(KeyOf(2)).status().code(), absl::StatusCode::kUnavailable);
  auto s = t->Stats();
  EXPECT_EQ(s.slots_failed, 1u);
  ExpectCorrectOrMiss(*t, 8, 8000);
  ASSERT_TRUE(t->PutSync(KeyOf(20), MakeContainer(20, 8000)).ok());
  EXPECT_EQ(*t->Get(KeyOf(20)), MakeContainer(20, 8000));
}

// Corrupts segment files on disk while the tier is closed, then reopens with the index
// intact (reads catch it) and with the index deleted (the rebuild scan catches it).
TEST(SsdFault, FlippedBitsAndTornBlocksOnDisk) {
  for (bool drop_index : {false, true}) {
    Fixture f;
    constexpr int kN = 24;
    constexpr uint64_t kSize = 20000;  // record = 4 KiB header + 20 KiB = 6 blocks
    std::vector<SsdLocation> locs;
    std::vector<std::string> paths;
    {
      auto t = std::move(*SsdTier::Open(f.Options()));
      for (int i = 0; i < kN; ++i) ASSERT_TRUE(t->PutSync(KeyOf(i), MakeContainer(i, kSize)).ok());
      for (uint32_t s = 0; s < t->slot_count(); ++s) paths.push_back(t->SlotPath(s));
    }
    // Find each record on disk through its header (slot 0 holds them all here).
    const std::string& seg = paths[0];
    std::vector<uint64_t> offsets;
    {
      int fd = ::open(seg.c_str(), O_RDONLY);
      ASSERT_GE(fd, 0);
      std::vector<std::byte> blk(kSsdBlock);
      for (uint64_t off = kSsdBlock; off < (4u << 20); off += kSsdBlock) {
        ASSERT_EQ(::pread(fd, blk.data(), kSsdBlock, off), static_cast<ssize_t>(kSsdBlock));
        if (ValidateRecordHeader(blk, nullptr).ok()) offsets.push_back(off);
      }
      ::close(fd);
    }
    ASSERT_EQ(offsets.size(), static_cast<size_t>(kN));
    // Record 3: bit flip in the payload. Record 7: bit flip in the header.
    // Record 11: a torn block (one payload block zeroed). Record 15: header block zeroed.
    ASSERT_TRUE(FlipBitInFile(seg, offsets[3] + kSsdBlock + 5000, 3).ok());
    ASSERT_TRUE(FlipBitInFile(seg, offsets[7] + 20, 0).ok());
    {
      int fd = ::open(seg.c_str(), O_WRONLY);
      std::vector<char> zeros(kSsdBlock, 0);
      ASSERT_EQ(::pwrite(fd, zeros.data(), kSsdBlock, offsets[11] + 2 * kSsdBlock), static_cast<ssize_t>(kSsdBlock));
      ASSERT_EQ(::pwrite(fd, zeros.data(), kSsdBlock, offsets[15]), static_cast<ssize_t>(kSsdBlock));
      ::fsync(fd);
      ::close(fd);
    }
    if (drop_index) std::filesystem::remove_all(f.dir.path() + "/index");
    auto t = std::move(*SsdTier::Open(f.Options()));
    int hits = 0;
    ExpectCorrectOrMiss(*t, kN, kSize, &hits);
    EXPECT_EQ(hits, kN - 4) << "drop_index=" << drop_index;
    for (int bad : {3, 7, 11, 15}) EXPECT_FALSE(t->Contains(KeyOf(bad)));
    EXPECT_GE(t->Stats().checksum_failures, drop_index ? 2u : 4u);
  }
}

TEST(SsdFault, CorruptSegmentHeaderLosesOnlyThatSegment) {
  Fixture f;
  std::string seg0;
  {
    auto t = std::move(*SsdTier::Open(f.Options()));
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(t->PutSync(KeyOf(i), MakeContainer(i, 1000)).ok());
    seg0 = t->SlotPath(0);
  }
  ASSERT_TRUE(FlipBitInFile(seg0, 17, 1).ok());
  auto t = std::move(*SsdTier::Open(f.Options()));
  ExpectCorrectOrMiss(*t, 10, 1000);
  EXPECT_EQ(t->Stats().entries, 0u);
  ASSERT_TRUE(t->PutSync(KeyOf(1), MakeContainer(1, 1000)).ok());
  EXPECT_EQ(*t->Get(KeyOf(1)), MakeContainer(1, 1000));
}

TEST(SsdFault, InjectorIsInertWhenCleared) {
  FaultInjector fi;
  EXPECT_FALSE(fi.Decide(IoOp::kWrite, "x").fire);
  FaultRule r{FaultRule::Kind::kError, IoOp::kWrite, EIO, "seg", 2, 1};
  fi.Add(r);
  EXPECT_FALSE(fi.Decide(IoOp::kWrite, "other").fire);
  EXPECT_FALSE(fi.Decide(IoOp::kWrite, "seg1").fire);  // skip 1
  EXPECT_FALSE(fi.Decide(IoOp::kRead, "seg1").fire);
  EXPECT_FALSE(fi.Decide(IoOp::kWrite, "seg1").fire);  // skip 2
  EXPECT_TRUE(fi.Decide(IoOp::kWrite, "seg1").fire);
  EXPECT_FALSE(fi.Decide(IoOp::kWrite, "seg1").fire);  // count exhausted
  fi.Clear();
  EXPECT_EQ(fi.fired(), 1u);
}

}  // namespace
}  // namespace adaptcache
