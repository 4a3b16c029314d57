// Crash safety (DESIGN.md §9): a child process writes and reads through the SSD tier
// and is killed with SIGKILL at random moments, round after round. After each kill the
// parent reopens the directory and checks against the oracle of acknowledged ids:
// every entry present holds exactly the bytes that were put, and >= 99% of the
// acknowledged entries are present.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <random>
#include <set>
#include <thread>

#include "gtest/gtest.h"
#include "tests/storage/ssd_crash_common.h"
#include "tests/storage/ssd_test_util.h"

namespace adaptcache {
namespace {

std::set<uint64_t> ReadOracle(const std::string& path) {
  std::set<uint64_t> ids;
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return ids;
  uint64_t v;
  while (::read(fd, &v, sizeof v) == sizeof v) ids.insert(v);
  ::close(fd);
  return ids;
}

TEST(SsdCrash, KillNineRoundsKeepAcknowledgedEntries) {
  const char* bin = std::getenv("ADAPTCACHE_BIN_DIR");
  ASSERT_NE(bin, nullptr);
  const std::string child = std::string(bin) + "/ssd_crash_child";
  testing::TempDir dir;
  const std::string data = dir.path() + "/data", oracle = dir.path() + "/oracle";
  std::mt19937_64 rng(12345);
  constexpr int kRounds = 25;
  constexpr uint64_t kPerRound = 150;
  uint64_t total_acked = 0, total_present = 0, kills_while_running = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(50);
  for (int round = 0; round < kRounds && std::chrono::steady_clock::now() < deadline; ++round) {
    const uint64_t first = uint64_t(round) * kPerRound;
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      const std::string a = std::to_string(first), b = std::to_string(kPerRound);
      ::execl(child.c_str(), child.c_str(), data.c_str(), oracle.c_str(), a.c_str(), b.c_str(), (char*)nullptr);
      ::_exit(127);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5 + rng() % 400));
    ::kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) {
      ++kills_while_running;
    } else {
      ASSERT_TRUE(WIFEXITED(status));
      ASSERT_NE(WEXITSTATUS(status), 3) << "child read wrong bytes";
      ASSERT_NE(WEXITSTATUS(status), 127) << "cannot exec " << child;
    }
    // Reopen and check against the oracle.
    auto t = SsdTier::Open(crash::Options(data));
    ASSERT_TRUE(t.ok()) << "round " << round << ": " << t.status();
    const std::set<uint64_t> acked = ReadOracle(oracle);
    uint64_t present = 0;
    for (uint64_t id : acked) {
      auto got = (*t)->Get(crash::Key(id));
      if (got.ok()) {
        ++present;
        ASSERT_EQ(*got, crash::Content(id)) << "wrong bytes for acked id " << id << " round " << round;
      }
    }
    // Entries that were durable but never acknowledged may be present: still exact.
    std::vector<EntryKey> all;
    (*t)->ForEach([&](const EntryKey& k, const SsdEntryInfo&) { all.push_back(k); });
    for (const EntryKey& k : all) {
      uint64_t id;
      ASSERT_TRUE(crash::IdOf(k, &id));
      auto got = (*t)->Get(k);
      if (got.ok()) ASSERT_EQ(*got, crash::Content(id)) << "wrong bytes for id " << id;
    }
    ASSERT_EQ((*t)->Stats().slots_failed, 0u);
    total_acked = acked.size();
    total_present = present;
    EXPECT_GE(present * 100, acked.size() * 99) << "round " << round;
  }
  EXPECT_GT(total_acked, kPerRound);  // the load made progress across rounds
  EXPECT_GT(kills_while_running, 5u);
  std::printf("crash test: %lu acknowledged, %lu present after the last kill, %lu kills mid-run\n",
              (unsigned long)total_acked, (unsigned long)total_present, (unsigned long)kills_while_running);
}

}  // namespace
}  // namespace adaptcache
