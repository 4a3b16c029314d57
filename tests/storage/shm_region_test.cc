#include "storage/shm_region.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/storage/shm_test_util.h"

namespace adaptcache {
namespace {

using testing::DeadPid;
using testing::LiveChild;
using testing::PathExists;
using testing::TempDir;
using testing::WriteFile;

std::string UniqueName(const char* tag) {
  static int counter = 0;
  return absl::StrCat("ac-test-", tag, "-", getpid(), "-", counter++, ".pool");
}

// CAP_IPC_LOCK (bit 14 of the effective set) lets mlock ignore RLIMIT_MEMLOCK.
bool HasCapIpcLock() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("CapEff:", 0) == 0) return (std::stoull(line.substr(7), nullptr, 16) >> 14) & 1;
  }
  return false;
}

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

TEST(ShmRegionTest, CreatesSizedPrivateFileAndUnlinksIt) {
  ShmRegionOptions o;
  o.file_name = UniqueName("create");
  o.size = 4 * 1024 * 1024 + 1;  // rounded up to a page
  std::string path;
  {
    auto r = ShmRegion::Create(o);
    ASSERT_TRUE(r.ok()) << r.status();
    path = (*r)->path();
    EXPECT_EQ(path, "/dev/shm/" + o.file_name);
    const long page = sysconf(_SC_PAGESIZE);
    EXPECT_EQ((*r)->size() % page, 0u);
    EXPECT_GE((*r)->size(), o.size);
    struct stat st;
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    EXPECT_EQ(static_cast<uint64_t>(st.st_size), (*r)->size());
    // posix_fallocate reserved the blocks up front.
    EXPECT_GE(static_cast<uint64_t>(st.st_blocks) * 512, (*r)->size());
    // The mapping is writable end to end.
    std::memset((*r)->base(), 0xab, (*r)->size());
    EXPECT_EQ((*r)->base()[(*r)->size() - 1], std::byte{0xab});
  }
  EXPECT_FALSE(Exists(path));
}

TEST(ShmRegionTest, SecondMappingOfThePathSeesTheSameBytes) {
  ShmRegionOptions o;
  o.file_name = UniqueName("share");
  o.size = 1 << 20;
  auto r = ShmRegion::Create(o);
  ASSERT_TRUE(r.ok()) << r.status();
  const int fd = open((*r)->path().c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  void* p = mmap(nullptr, (*r)->size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  ASSERT_NE(p, MAP_FAILED);
  auto* other = static_cast<unsigned char*>(p);
  std::memcpy((*r)->base() + 4096, "hello pool", 10);
  EXPECT_EQ(std::memcmp(other + 4096, "hello pool", 10), 0);
  other[123456] = 0x5a;  // and the other way round
  EXPECT_EQ((*r)->base()[123456], std::byte{0x5a});
  munmap(p, (*r)->size());
}

TEST(ShmRegionTest, RefusesAnExistingFile) {
  ShmRegionOptions o;
  o.file_name = UniqueName("excl");
  o.size = 1 << 16;
  auto first = ShmRegion::Create(o);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = ShmRegion::Create(o);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kAlreadyExists);
  // The failed attempt must not have removed the first region's file.
  EXPECT_TRUE(Exists((*first)->path()));
}

TEST(ShmRegionTest, RejectsBadOptionsAndLeavesNothingBehind) {
  ShmRegionOptions o;
  o.size = 1 << 16;
  for (const char* bad : {"", ".", "..", "a/b"}) {
    o.file_name = bad;
    EXPECT_EQ(ShmRegion::Create(o).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  o.file_name = UniqueName("zero");
  o.size = 0;
  EXPECT_EQ(ShmRegion::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(Exists("/dev/shm/" + o.file_name));
  o.size = 1 << 16;
  o.dir = "/nonexistent-adaptcache-dir";
  EXPECT_EQ(ShmRegion::Create(o).status().code(), absl::StatusCode::kNotFound);
}

TEST(ShmRegionTest, PoolLargerThanTheFilesystemFailsAtCreate) {
  ShmRegionOptions o;
  o.file_name = UniqueName("huge");
  o.size = uint64_t{1} << 49;  // 512 TiB: no tmpfs here has that
  auto r = ShmRegion::Create(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  EXPECT_FALSE(Exists("/dev/shm/" + o.file_name));
}

TEST(ShmRegionTest, ReportsMlockOutcomeConsistently) {
  struct rlimit lim;
  ASSERT_EQ(getrlimit(RLIMIT_MEMLOCK, &lim), 0);
  ShmRegionOptions o;
  o.file_name = UniqueName("mlock");
  o.size = 1 << 20;
  auto r = ShmRegion::Create(o);
  ASSERT_TRUE(r.ok()) << r.status();
  const ShmRegionStatus& st = (*r)->status();
  EXPECT_EQ(st.mlocked, st.mlock_error.empty());
  if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < (*r)->size()) {
    // Only privileged processes can exceed the limit.
    if (!HasCapIpcLock()) {
      EXPECT_FALSE(st.mlocked);
    }
  }
  if (!st.huge_pages_advised) {
    EXPECT_FALSE(st.huge_pages_effective);
  }

  o.file_name = UniqueName("nolock");
  o.mlock = false;
  o.huge_pages = false;
  auto plain = ShmRegion::Create(o);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE((*plain)->status().mlocked);
  EXPECT_TRUE((*plain)->status().mlock_error.empty());
  EXPECT_FALSE((*plain)->status().huge_pages_advised);
}

TEST(ShmRegionTest, MlockBeyondTheLimitWarnsAndStillWorks) {
  if (HasCapIpcLock()) GTEST_SKIP() << "CAP_IPC_LOCK ignores RLIMIT_MEMLOCK";
  struct rlimit saved;
  ASSERT_EQ(getrlimit(RLIMIT_MEMLOCK, &saved), 0);
  struct rlimit low = saved;
  low.rlim_cur = std::min<rlim_t>(saved.rlim_cur, 1 << 20);
  ASSERT_EQ(setrlimit(RLIMIT_MEMLOCK, &low), 0);
  ShmRegionOptions o;
  o.file_name = UniqueName("bigmlock");
  o.size = 4u << 20;
  auto r = ShmRegion::Create(o);
  ASSERT_EQ(setrlimit(RLIMIT_MEMLOCK, &saved), 0);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE((*r)->status().mlocked);
  EXPECT_FALSE((*r)->status().mlock_error.empty());
  (*r)->base()[(*r)->size() - 1] = std::byte{1};  // the pool works unlocked
}

// Names "t-<pid>.f" carry a pid; anything else is not ours.
pid_t TestOwner(std::string_view name) {
  int32_t pid = 0;
  if (name.size() < 5 || name.substr(0, 2) != "t-" || name.substr(name.size() - 2) != ".f" ||
      !absl::SimpleAtoi(absl::string_view(name.data() + 2, name.size() - 4), &pid)) {
    return 0;
  }
  return pid;
}

TEST(RemoveDeadShmFilesTest, RemovesOnlyUnlockedFilesOfDeadOwners) {
  TempDir dir(testing::kShmDirTemplate);
  const pid_t dead = DeadPid();
  LiveChild live;
  const auto file = [&](pid_t pid) { return dir / absl::StrCat("t-", pid, ".f"); };
  ASSERT_TRUE(WriteFile(file(dead), 5000));
  ASSERT_TRUE(WriteFile(file(getpid()), 3000));  // an earlier instance in our (reused) pid
  ASSERT_TRUE(WriteFile(file(live.pid()), 10));
  ASSERT_TRUE(WriteFile(dir / "other.f", 10));
  // A dead pid's file that someone still holds the lock on.
  const std::string locked = file(DeadPid());
  ASSERT_TRUE(WriteFile(locked, 10));
  const int lfd = open(locked.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(lfd, 0);
  ASSERT_EQ(flock(lfd, LOCK_EX), 0);
  // Non-regular entries with a matching name: a directory and a symlink to a file.
  const pid_t dead2 = DeadPid();
  ASSERT_EQ(mkdir(file(dead2).c_str(), 0700), 0);
  ASSERT_TRUE(WriteFile(dir / "target", 10));
  ASSERT_EQ(symlink((dir / "target").c_str(), file(DeadPid()).c_str()), 0);

  const ShmCleanup c = RemoveDeadShmFiles(dir.path(), TestOwner);
  EXPECT_EQ(c.removed, 2u);
  EXPECT_EQ(c.removed_bytes, 8000u);
  EXPECT_EQ(c.live, 2u);  // the live pid's and the locked one
  EXPECT_FALSE(PathExists(file(dead)));
  EXPECT_FALSE(PathExists(file(getpid())));
  EXPECT_TRUE(PathExists(file(live.pid())));
  EXPECT_TRUE(PathExists(locked));
  EXPECT_TRUE(PathExists(dir / "other.f"));
  EXPECT_TRUE(PathExists(file(dead2)));
  EXPECT_TRUE(PathExists(dir / "target"));
  close(lfd);
  // With the lock gone the file is a dead instance's like any other.
  EXPECT_EQ(RemoveDeadShmFiles(dir.path(), TestOwner).removed, 1u);
  EXPECT_FALSE(PathExists(locked));
  // A missing directory is nothing to clean.
  EXPECT_EQ(RemoveDeadShmFiles(dir / "missing", TestOwner).removed, 0u);
}

TEST(RemoveDeadShmFilesTest, ALiveRegionOfThisProcessKeepsItsFile) {
  TempDir dir(testing::kShmDirTemplate);
  ShmRegionOptions o;
  o.dir = dir.path();
  o.file_name = absl::StrCat("t-", getpid(), ".f");
  o.size = 1 << 16;
  o.mlock = false;
  auto r = ShmRegion::Create(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(testing::ModeOf((*r)->path()), 0600u);
  const ShmCleanup c = RemoveDeadShmFiles(dir.path(), TestOwner);
  EXPECT_EQ(c.removed, 0u);
  EXPECT_EQ(c.live, 1u);
  EXPECT_TRUE(PathExists((*r)->path()));
  (*r)->base()[0] = std::byte{1};
}

}  // namespace
}  // namespace adaptcache
