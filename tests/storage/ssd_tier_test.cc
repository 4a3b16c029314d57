// SsdTier: round trips, restart, index rebuild and catch-up, input validation, bounds.
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <latch>
#include <map>

#include "gtest/gtest.h"
#include "storage/ssd_tier.h"
#include "tests/storage/ssd_test_util.h"

namespace adaptcache {
namespace {

using testing::KeyOf;
using testing::MakeContainer;
using testing::SmallOptions;
using testing::TempDir;

std::unique_ptr<SsdTier> OpenOrDie(const SsdTierOptions& o) {
  auto t = SsdTier::Open(o);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(*t) : nullptr;
}

TEST(SsdTier, RoundTripSizesAndPaths) {
  TempDir dir;
  auto t = OpenOrDie(SmallOptions(dir.path()));
  ASSERT_TRUE(t);
  // Sizes around block and I/O-chunk boundaries (io_bytes is 256 KiB here).
  const std::vector<uint64_t> sizes = {1, 100, 4096 - 64 - 24, 4096, 5000, 256 << 10, (256 << 10) + 1, 700000};
  for (size_t i = 0; i < sizes.size(); ++i) {
    auto c = MakeContainer(i, sizes[i]);
    ASSERT_TRUE(t->PutSync(KeyOf(i), c).ok());
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    auto want = MakeContainer(i, sizes[i]);
    auto got = t->Get(KeyOf(i));  // unaligned vector: staged read + copy
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, want) << "size " << sizes[i];
    // Aligned destination with padding room: direct read into dst.
    AlignedBuffer dst(want.size());
    auto n = t->Get(KeyOf(i), ByteSpan(dst.data(), dst.size()));
    ASSERT_TRUE(n.ok()) << n.status();
    ASSERT_EQ(*n, want.size());
    EXPECT_EQ(0, std::memcmp(dst.data(), want.data(), want.size()));
    auto info = t->Lookup(KeyOf(i));
    ASSERT_TRUE(info);
    EXPECT_EQ(info->payload_bytes, want.size());
    EXPECT_EQ(info->codec, 0);
    EXPECT_EQ(info->hits, 2u);
  }
  EXPECT_FALSE(t->Get(KeyOf(1000)).ok());
  EXPECT_EQ(t->Get(KeyOf(1000)).status().code(), absl::StatusCode::kNotFound);
  std::vector<std::byte> small(10);
  EXPECT_EQ(t->Get(KeyOf(7), ByteSpan(small)).status().code(), absl::StatusCode::kOutOfRange);
  auto s = t->Stats();
  EXPECT_EQ(s.entries, sizes.size());
  EXPECT_EQ(s.puts_committed, sizes.size());
  EXPECT_GE(s.write_amplification, 1.0);
  EXPECT_GT(s.device_bytes_read, 0u);
  EXPECT_EQ(s.checksum_failures, 0u);
}

TEST(SsdTier, OverwriteEraseAndForEach) {
  TempDir dir;
  auto t = OpenOrDie(SmallOptions(dir.path()));
  ASSERT_TRUE(t);
  ASSERT_TRUE(t->PutSync(KeyOf(1), MakeContainer(1, 1000)).ok());
  ASSERT_TRUE(t->PutSync(KeyOf(1), MakeContainer(2, 3000)).ok());
  ASSERT_TRUE(t->PutSync(KeyOf(2), MakeContainer(3, 10)).ok());
  EXPECT_EQ(*t->Get(KeyOf(1)), MakeContainer(2, 3000));
  size_t n = 0;
  t->ForEach([&](const EntryKey&, const SsdEntryInfo&) { ++n; });
  EXPECT_EQ(n, 2u);
  EXPECT_TRUE(t->Erase(KeyOf(2)).ok());
  EXPECT_EQ(t->Erase(KeyOf(2)).code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(t->Contains(KeyOf(2)));
  // Namespaces never alias.
  EXPECT_FALSE(t->Contains(KeyOf(1, /*ns=*/8)));
}

TEST(SsdTier, RejectsBadInputWithoutSideEffects) {
  TempDir dir;
  auto t = OpenOrDie(SmallOptions(dir.path()));
  ASSERT_TRUE(t);
  std::vector<std::byte> junk(500, std::byte{7});
  EXPECT_EQ(t->PutSync(KeyOf(1), junk).code(), absl::StatusCode::kInvalidArgument);
  auto c = MakeContainer(1, 1000);
  c.push_back(std::byte{0});  // size no longer matches the header
  EXPECT_EQ(t->PutSync(KeyOf(1), c).code(), absl::StatusCode::kInvalidArgument);
  auto big = MakeContainer(1, 4 << 20);  // larger than a 4 MiB segment
  EXPECT_EQ(t->PutSync(KeyOf(1), big).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(t->Stats().puts_accepted, 0u);
  EXPECT_FALSE(t->Contains(KeyOf(1)));

  SsdTierOptions bad = SmallOptions(dir.path() + "/x");
  bad.segment_bytes = 5000;
  EXPECT_EQ(SsdTier::Open(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad = SmallOptions(dir.path() + "/x");
  bad.segment_count = 2;
  EXPECT_EQ(SsdTier::Open(bad).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SsdTier, LayoutMismatchIsRefused) {
  TempDir dir;
  { ASSERT_TRUE(OpenOrDie(SmallOptions(dir.path()))); }
  SsdTierOptions o = SmallOptions(dir.path());
  o.segment_count = 8;
  EXPECT_EQ(SsdTier::Open(o).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(SsdTier, RestartIsWarm) {
  TempDir dir;
  {
    auto t = OpenOrDie(SmallOptions(dir.path()));
    ASSERT_TRUE(t);
    for (int i = 0; i < 40; ++i) ASSERT_TRUE(t->PutSync(KeyOf(i), MakeContainer(i, 20000 + i)).ok());
    ASSERT_TRUE(t->Erase(KeyOf(3)).ok());
  }
  for (int round = 0; round < 3; ++round) {
    auto t = OpenOrDie(SmallOptions(dir.path()));
    ASSERT_TRUE(t);
    auto s = t->Stats();
    EXPECT_FALSE(s.rebuilt_index);
    EXPECT_EQ(s.recovered_from_scan, 0u);
    EXPECT_EQ(s.entries, 39u + round);
    for (int i = 0; i < 40; ++i) {
      auto got = t->Get(KeyOf(i));
      if (i == 3) {
        EXPECT_FALSE(got.ok());
        continue;
      }
      ASSERT_TRUE(got.ok()) << i << " " << got.status();
      EXPECT_EQ(*got, MakeContainer(i, 20000 + i));
    }
    // Appends continue in the newest segment after a restart.
    ASSERT_TRUE(t->PutSync(KeyOf(100 + round), MakeContainer(100 + round, 5000)).ok());
    EXPECT_EQ(t->Stats().slots_in_use, s.slots_in_use);
  }
}

TEST(SsdTier, MissingIndexIsRebuiltFromLog) {
  TempDir dir;
  {
    auto t = OpenOrDie(SmallOptions(dir.path()));
    ASSERT_TRUE(t);
    for (int i = 0; i < 30; ++i) ASSERT_TRUE(t->PutSync(KeyOf(i), MakeContainer(i, 50000)).ok());
    ASSERT_TRUE(t->PutSync(KeyOf(5), MakeContainer(555, 7000)).ok());  // newer version wins
  }
  std::filesystem::remove_all(dir.path() + "/index");
  auto t = OpenOrDie(SmallOptions(dir.path()));
  ASSERT_TRUE(t);
  auto s = t->Stats();
  EXPECT_TRUE(s.rebuilt_index);
  EXPECT_EQ(s.entries, 30u);
  for (int i = 0; i < 30; ++i) {
    auto got = t->Get(KeyOf(i));
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, i == 5 ? MakeContainer(555, 7000) : MakeContainer(i, 50000));
  }
  // The rebuilt index is persisted: the next open is warm.
  t.reset();
  t = OpenOrDie(SmallOptions(dir.path()));
  EXPECT_FALSE(t->Stats().rebuilt_index);
  EXPECT_EQ(t->Stats().entries, 30u);
}

TEST(SsdTier, GarbageIndexIsRebuilt) {
  TempDir dir;
  {
    auto t = OpenOrDie(SmallOptions(dir.path()));
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(t->PutSync(KeyOf(i), MakeContainer(i, 9000)).ok());
  }
  for (auto& f : std::filesystem::directory_iterator(dir.path() + "/index")) {
    if (f.path().filename().string().rfind("CURRENT", 0) == 0) {
      FILE* fp = fopen(f.path().c_str(), "w");
      fputs("garbage\n", fp);
      fclose(fp);
    }
  }
  auto t = OpenOrDie(SmallOptions(dir.path()));
  ASSERT_TRUE(t);
  EXPECT_TRUE(t->Stats().rebuilt_index);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(*t->Get(KeyOf(i)), MakeContainer(i, 9000));
}

TEST(SsdTier, IndexOlderThanLogIsCaughtUp) {
  TempDir dir;
  const std::string idx = dir.path() + "/index", saved = dir.path() + "/index.old";
  {
    auto t = OpenOrDie(SmallOptions(dir.path()));
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(t->PutSync(KeyOf(i), MakeContainer(i, 30000)).ok());
  }
  std::filesystem::copy(idx, saved, std::filesystem::copy_options::recursive);
  {
    auto t = OpenOrDie(SmallOptions(dir.path()));
    // Enough to roll into new segments too (4 MiB each).
    for (int i = 10; i < 300; ++i) ASSERT_TRUE(t->PutSync(KeyOf(i), MakeContainer(i, 30000)).ok());
    ASSERT_TRUE(t->PutSync(KeyOf(2), MakeContainer(222, 100)).ok());
  }
  std::filesystem::remove_all(idx);
  std::filesystem::rename(saved, idx);  // the index now lags the log
  auto t = OpenOrDie(SmallOptions(dir.path()));
  ASSERT_TRUE(t);
  auto s = t->Stats();
  EXPECT_FALSE(s.rebuilt_index);
  EXPECT_EQ(s.recovered_from_scan, 291u);
  EXPECT_EQ(s.entries, 300u);
  for (int i = 0; i < 300; ++i) {
    auto got = t->Get(KeyOf(i));
    ASSERT_TRUE(got.ok()) << i << " " << got.status();
    EXPECT_EQ(*got, i == 2 ? MakeContainer(222, 100) : MakeContainer(i, 30000));
  }
}

TEST(SsdTier, PutQueueIsBounded) {
  TempDir dir;
  SsdTierOptions o = SmallOptions(dir.path());
  o.max_pending_puts = 3;
  auto t = OpenOrDie(o);
  std::latch release(1);
  std::promise<void> first_done_entered;
  auto c = MakeContainer(1, 1000);
  // The first Put's callback holds the commit thread; the writer stalls once the commit
  // backlog is full, and then the queue (3 puts) fills: the next Put is refused.
  ASSERT_TRUE(t->Put(KeyOf(0), c, [&](absl::Status) {
                 first_done_entered.set_value();
                 release.wait();
               }).ok());
  first_done_entered.get_future().wait();
  int accepted = 0;
  absl::Status st;
  for (int i = 1; i < 100000 && st.ok(); ++i) {
    st = t->Put(KeyOf(i), c, nullptr);
    if (st.ok()) ++accepted;
  }
  EXPECT_GE(accepted, 3);
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_FALSE(IsOverBudget(st));
  release.count_down();
  t->Flush();
  for (int i = 0; i <= accepted; ++i) EXPECT_TRUE(t->Contains(KeyOf(i))) << i;
  EXPECT_EQ(t->Stats().rejected_queue_full, 1u);
}

TEST(SsdTier, ReadQueueIsBounded) {
  TempDir dir;
  SsdTierOptions o = SmallOptions(dir.path());
  o.read_queue_depth = 2;  // a 700 KB entry needs 4 ops at 256 KiB
  auto t = OpenOrDie(o);
  ASSERT_TRUE(t->PutSync(KeyOf(1), MakeContainer(1, 700000)).ok());
  EXPECT_EQ(t->Get(KeyOf(1)).status().code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(t->PutSync(KeyOf(2), MakeContainer(2, 1000)).ok());
  EXPECT_TRUE(t->Get(KeyOf(2)).ok());
}

TEST(SsdTier, AsyncGetsConcurrently) {
  TempDir dir;
  auto t = OpenOrDie(SmallOptions(dir.path()));
  constexpr int kN = 64;
  std::vector<std::promise<absl::Status>> puts(kN);
  for (int i = 0; i < kN; ++i)
    ASSERT_TRUE(t->Put(KeyOf(i), MakeContainer(i, 10000 + 37 * i), [&, i](absl::Status s) { puts[i].set_value(s); }).ok());
  for (auto& p : puts) ASSERT_TRUE(p.get_future().get().ok());
  std::vector<std::vector<std::byte>> bufs(kN);
  std::vector<std::promise<absl::StatusOr<uint64_t>>> gets(kN);
  for (int i = 0; i < kN; ++i) {
    bufs[i].resize(MakeContainer(i, 10000 + 37 * i).size());
    ASSERT_TRUE(t->GetAsync(KeyOf(i), ByteSpan(bufs[i]), [&, i](absl::StatusOr<uint64_t> r) { gets[i].set_value(r); }).ok());
  }
  for (int i = 0; i < kN; ++i) {
    auto r = gets[i].get_future().get();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(bufs[i], MakeContainer(i, 10000 + 37 * i));
  }
  auto s = t->Stats();
  EXPECT_EQ(s.hits, uint64_t{kN});
  EXPECT_GT(s.read_p50_us, 0u);
  EXPECT_GT(s.write_p50_us, 0u);
}

TEST(SsdTier, UnregisteredBuffersWork) {
  TempDir dir;
  SsdTierOptions o = SmallOptions(dir.path());
  o.register_buffers = false;
  auto t = OpenOrDie(o);
  EXPECT_FALSE(t->Stats().registered_buffers);
  ASSERT_TRUE(t->PutSync(KeyOf(1), MakeContainer(1, 300000)).ok());
  EXPECT_EQ(*t->Get(KeyOf(1)), MakeContainer(1, 300000));
}

// Mode bits of `dir` and of every entry below it, by path relative to `dir`.
std::map<std::string, unsigned> ModesUnder(const std::string& dir) {
  std::map<std::string, unsigned> out;
  struct stat st;
  if (::lstat(dir.c_str(), &st) == 0) out["."] = st.st_mode & 07777;
  std::error_code ec;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir, ec)) {
    if (::lstat(e.path().c_str(), &st) == 0)
      out[std::filesystem::relative(e.path(), dir).string()] = st.st_mode & 07777;
  }
  return out;
}

// Every directory 0700 and every file 0600.
void ExpectPrivate(const std::string& dir) {
  const auto modes = ModesUnder(dir);
  ASSERT_TRUE(modes.count("index")) << dir;
  for (const auto& [path, mode] : modes) {
    const bool is_dir = std::filesystem::is_directory(dir + "/" + path);
    EXPECT_EQ(mode, is_dir ? 0700u : 0600u) << path << " has mode " << std::oct << mode;
  }
}

TEST(SsdTier, DirsAndFilesArePrivateAndLooserOnesAreTightened) {
  TempDir dir;
  const std::string tier = dir.path() + "/tier";  // Open creates it
  SsdTierOptions o = SmallOptions(tier);
  struct Umask {  // a common umask (the daemon's is 077), restored at the end
    mode_t saved = ::umask(022);
    ~Umask() { ::umask(saved); }
  } umask;
  {
    auto t = OpenOrDie(o);
    ASSERT_TRUE(t);
    ASSERT_TRUE(t->PutSync(KeyOf(1), MakeContainer(1, 5000)).ok());
    ExpectPrivate(tier);
  }
  // As an older version or a hand-made directory would have left them.
  for (const auto& [path, mode] : ModesUnder(tier)) {
    const std::string p = tier + "/" + path;
    ASSERT_EQ(::chmod(p.c_str(), std::filesystem::is_directory(p) ? 0755 : 0644), 0) << p;
  }
  ASSERT_TRUE(std::ofstream(tier + "/notes.txt") << "hand-made");
  ASSERT_EQ(::chmod((tier + "/notes.txt").c_str(), 0644), 0);
  auto t = OpenOrDie(o);
  ASSERT_TRUE(t);
  ExpectPrivate(tier);
  EXPECT_EQ(*t->Get(KeyOf(1)), MakeContainer(1, 5000));
}

}  // namespace
}  // namespace adaptcache
