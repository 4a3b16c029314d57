// Crash test of the daemon with an SSD tier (issue 5): writer and reader threads run
// Puts and Gets against the real daemon, which is killed with SIGKILL at a random
// moment, restarted on the same SSD directory, and checked against an oracle, for many
// rounds ($AC_CRASH_ROUNDS, default 18). The writers keep writing until the kill, so each
// SIGKILL lands while Puts are in flight (counted: most rounds must).
//
// "Acknowledged durable": a Put with PutHeader.durable = true whose OK response has
// PutResponse.durable = true. The daemon sends that only after the SSD record and its
// index entry are durable (fdatasync + RocksDB WAL write).
//
// Oracle: key i's tensor is RandomBytes(i), fixed, so every Get at any time must return
// exactly those bytes (checked after decoding, CRC verified) or a miss. After each
// restart, >= 99% of the keys acknowledged durable so far must be present (the load is
// bounded and the SSD sized so nothing is reclaimed: 100% is expected).
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "tiering_test_util.h"

namespace adaptcache::testing {
namespace {

constexpr char kNs[] = "crash-it";
constexpr int kDefaultRounds = 18;
constexpr int kWriters = 2;
constexpr uint64_t kSegmentBytes = 16ull << 20;
constexpr int kSegments = 64;  // 1 GiB of SSD

int Rounds() {
  const char* e = std::getenv("AC_CRASH_ROUNDS");
  const int n = e != nullptr ? std::atoi(e) : 0;
  return n > 0 ? n : kDefaultRounds;
}

std::string Tensor(uint64_t i) { return RandomBytes(ShapeBytes(SmallShape()), static_cast<uint32_t>(i)); }

TEST(TieringCrashTest, SigkillUnderLoadKeepsDurableEntriesAndNeverServesWrongBytes) {
  SsdDir ssd;
  ASSERT_FALSE(ssd.path().empty());
  DaemonOptions opts = TieredOptions(ssd.path());
  opts.extra_args[3] = "16MiB";  // --ssd-segment-bytes
  opts.extra_args[5] = std::to_string(kSegments);
  DaemonProcess daemon(opts);
  const int rounds = Rounds();
  // Puts per writer and round, so the whole run stays within 60% of the SSD: reclaim may
  // drop entries by design, and this test measures crash loss only. A writer stops at
  // the cap or at the kill, whichever comes first.
  const uint64_t entry_bytes = ShapeBytes(SmallShape()) + 4096;
  const uint64_t cap = std::max<uint64_t>(
      8, kSegments * kSegmentBytes * 6 / 10 / entry_bytes / (uint64_t{kWriters} * rounds));
  int kills_during_writes = 0;
  ASSERT_EQ(daemon.Start(), "");
  std::mt19937_64 rng(20261126);
  std::set<uint64_t> durable;   // acknowledged durable
  std::set<uint64_t> attempted; // every key a Put was sent for
  uint64_t next_key = 0;
  uint64_t wrong = 0, gets_ok = 0, gets_miss = 0;

  for (int round = 0; round < rounds; ++round) {
    auto stub = daemon.NewStub();
    std::atomic<bool> stop{false};
    std::mutex mu;  // guards durable, attempted, next_key, counters
    std::atomic<int> in_flight{0};
    auto writer = [&](int) {
      auto st = daemon.NewStub();
      for (uint64_t n = 0; n < cap && !stop.load(); ++n) {
        uint64_t k;
        {
          std::lock_guard<std::mutex> l(mu);
          k = next_key++;
          attempted.insert(k);
        }
        v1::PutHeader h = Header(kNs, TestKey(k));
        h.set_durable(k % 4 != 0);  // a quarter are plain puts (DRAM, maybe demoted)
        v1::PutResponse resp;
        in_flight.fetch_add(1);
        auto s = PutBytes(st.get(), h, Tensor(k), 64 << 10, &resp);
        in_flight.fetch_sub(1);
        if (s.ok() && resp.durable()) {
          std::lock_guard<std::mutex> l(mu);
          durable.insert(k);
        }
      }
    };
    auto reader = [&](uint64_t seed) {
      auto st = daemon.NewStub();
      std::mt19937_64 r(seed);
      while (!stop.load()) {
        uint64_t k;
        {
          std::lock_guard<std::mutex> l(mu);
          if (next_key == 0) continue;
          k = r() % next_key;
        }
        std::string raw;
        auto s = GetRaw(st.get(), kNs, TestKey(k), &raw);
        std::lock_guard<std::mutex> l(mu);
        if (s.ok()) {
          ++gets_ok;
          if (raw != Tensor(k)) ++wrong;
        } else if (s.error_code() == grpc::StatusCode::NOT_FOUND) {
          ++gets_miss;
        } else if (s.error_code() == grpc::StatusCode::DATA_LOSS) {
          ++wrong;  // a container that fails its CRC or decode reached the client
        }
        // UNAVAILABLE/CANCELLED: the daemon died mid-call.
      }
    };
    std::vector<std::thread> threads;
    threads.emplace_back(writer, 0);
    threads.emplace_back(writer, 1);
    threads.emplace_back(reader, rng());
    std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng() % 400));
    kills_during_writes += in_flight.load() > 0;
    ::kill(daemon.pid(), SIGKILL);
    stop.store(true);
    for (auto& t : threads) t.join();
    ASSERT_EQ(daemon.Restart(/*crash=*/true), "") << "round " << round;

    // Oracle check of everything ever attempted.
    auto st = daemon.NewStub();
    uint64_t present = 0;
    for (uint64_t k : attempted) {
      std::string raw;
      auto s = GetRaw(st.get(), kNs, TestKey(k), &raw);
      if (s.ok()) {
        ASSERT_EQ(raw, Tensor(k)) << "round " << round << " key " << k;
        present += durable.count(k);
      } else {
        ASSERT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND)
            << "round " << round << " key " << k << ": " << s.error_message() << "\n"
            << daemon.Log().substr(daemon.Log().size() > 4000 ? daemon.Log().size() - 4000 : 0);
      }
    }
    EXPECT_GE(present * 100, durable.size() * 99)
        << "round " << round << ": " << present << " of " << durable.size() << " durable keys";
    ASSERT_EQ(wrong, 0u) << "round " << round;
  }
  EXPECT_GT(durable.size(), 200u);  // the load really ran
  EXPECT_GT(gets_ok, 100u);
  EXPECT_GE(kills_during_writes * 2, rounds) << "most kills must land while Puts are in flight";
  RecordProperty("durable_keys", static_cast<int>(durable.size()));
  RecordProperty("attempted_keys", static_cast<int>(attempted.size()));
  RecordProperty("kills_during_writes", kills_during_writes);
  std::printf("rounds %d, kills during writes %d, keys attempted %zu, acknowledged durable %zu, gets ok %lu, "
              "miss %lu\n",
              rounds, kills_during_writes, attempted.size(), durable.size(), static_cast<unsigned long>(gets_ok),
              static_cast<unsigned long>(gets_miss));
}

}  // namespace
}  // namespace adaptcache::testing
