// Tier manager benchmark: Get latency by path (DRAM hit, SSD hit served from a
// temporary extent, SSD hit promoted), Put throughput when DRAM is full (LRU victims
// demoted to SSD vs. dropped), and durable Put latency. Real DramTier + SsdTier.
// Usage: tiering_bench --dir <dir on SSD> [--entry-bytes N] [--entries N] [--pool-bytes N]
// Prints "key=value" lines (one per measurement) for bench/scripts/35_tiering.sh.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "storage/tier_manager.h"
#include "tests/storage/ssd_test_util.h"

using namespace adaptcache;
using Clock = std::chrono::steady_clock;

namespace {

std::vector<std::byte> Container(uint64_t seed, uint64_t payload) {
  return testing::MakeContainer(seed, payload, CodecId::kRaw, KvShape{1, 16, 1, 64, DType::kFP16});
}

EntryKey Key(uint64_t i) { return EntryKey{3, Key128{i * 7919 + 1, i}}; }

double Us(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

struct Pct {
  double p50, p99;
};
Pct Percentiles(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v[std::min(v.size() - 1, v.size() * 99 / 100)]};
}

std::unique_ptr<TierManager> Make(const std::string& dir, uint64_t pool, bool ssd,
                                  uint32_t promote) {
  TierManagerOptions o;
  o.dram.capacity_bytes = pool;
  o.dram.huge_pages = false;
  o.dram.mlock = false;
  o.dram.name = "ac-tier-bench";
  o.dram.max_reservation_bytes = pool / 4;
  if (ssd) {
    std::filesystem::remove_all(dir);
    SsdTierOptions s;
    s.dir = dir;
    s.segment_bytes = 64ull << 20;
    s.segment_count = 16;
    o.ssd = s;
  }
  o.promote_after_hits = promote;
  auto tm = TierManager::Create(std::move(o));
  if (!tm.ok()) {
    std::fprintf(stderr, "create: %s\n", std::string(tm.status().message()).c_str());
    std::exit(1);
  }
  return std::move(*tm);
}

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "tiering_bench: FAILED: %s\n", what.c_str());
  std::exit(1);
}

// A Get's lease must hold exactly the container that was put under that key.
void CheckLease(TierManager* tm, const TierLease& l, const std::vector<std::byte>& want, uint64_t i) {
  const auto got = tm->Bytes(l.lease.extent);
  if (l.lease.extent.length != want.size() || std::memcmp(got.data(), want.data(), want.size()) != 0) {
    Fail("get of entry " + std::to_string(i) + " returned bytes other than those put");
  }
}

bool Put(TierManager* tm, uint64_t i, const std::vector<std::byte>& c, bool durable) {
  auto e = tm->Allocate(c.size());
  if (!e.ok()) return false;
  std::memcpy(tm->Bytes(*e).data(), c.data(), c.size());
  auto meta = DescribeFromHeader(c);
  TierPutOptions po;
  po.durable = durable;
  auto r = tm->CommitPut(Key(i), *e, *meta, po);
  if (!r.ok()) tm->Free(*e);
  return r.ok() && (!durable || r->durable);
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  uint64_t entry = 1 << 20, entries = 256, pool = 64ull << 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--dir") dir = argv[i + 1];
    if (a == "--entry-bytes") entry = std::strtoull(argv[i + 1], nullptr, 10);
    if (a == "--entries") entries = std::strtoull(argv[i + 1], nullptr, 10);
    if (a == "--pool-bytes") pool = std::strtoull(argv[i + 1], nullptr, 10);
  }
  if (dir.empty()) {
    std::fprintf(stderr, "usage: tiering_bench --dir <dir> [--entry-bytes N] [--entries N]\n");
    return 2;
  }
  const uint64_t payload = entry - 128;  // container ~= entry bytes
  std::vector<std::vector<std::byte>> data;
  for (uint64_t i = 0; i < entries; ++i) data.push_back(Container(i, payload));
  const double mb = entries * entry / 1e6;

  // Put throughput with DRAM full: demote vs. drop.
  for (bool ssd : {false, true}) {
    auto tm = Make(dir, pool, ssd, 1);
    uint64_t put_ok = 0;
    auto t0 = Clock::now();
    for (uint64_t i = 0; i < entries; ++i) put_ok += Put(tm.get(), i, data[i], false);
    const double put_s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (tm->HasSsd()) tm->ssd_for_testing()->Flush();
    const double all_s = std::chrono::duration<double>(Clock::now() - t0).count();
    auto st = tm->Stats();
    // Every put accepted; every entry still readable (from DRAM or SSD) has exactly its
    // bytes, and only the victims counted as lost (or dropped by SSD reclaim) are gone.
    if (put_ok != entries) Fail(std::to_string(entries - put_ok) + " puts failed");
    uint64_t missing = 0;
    for (uint64_t i = 0; i < entries; ++i) {
      auto b = tm->ReadBest(Key(i));
      if (!b.ok()) {
        ++missing;
        continue;
      }
      if (b->container != data[i]) Fail("put phase: entry " + std::to_string(i) + " reads back different bytes");
    }
    const uint64_t gone = st.evictions_lost + st.demotions_refused + st.demotions_failed +
                          (st.ssd ? st.ssd->dropped_on_reclaim : 0);
    if (missing > gone || !tm->ReadBest(Key(entries - 1)).ok()) {
      Fail("put phase: " + std::to_string(missing) + " entries missing, " + std::to_string(gone) +
           " accounted as lost");
    }
    std::printf("mode=put_%s entry_bytes=%lu MBps=%.0f MBps_until_durable=%.0f demoted=%lu lost=%lu\n",
                ssd ? "demote" : "dram_only", (unsigned long)entry, mb / put_s, mb / all_s,
                (unsigned long)st.demotions_done, (unsigned long)st.evictions_lost);
  }

  // Get latency by path.
  for (uint32_t promote : {0u, 1u}) {
    auto tm = Make(dir, pool, true, promote);
    for (uint64_t i = 0; i < entries; ++i) {
      if (!Put(tm.get(), i, data[i], false)) Fail("get setup: put " + std::to_string(i));
    }
    tm->ssd_for_testing()->Flush();
    std::vector<double> dram_us, ssd_us;
    // The newest entries are in DRAM, the oldest only on SSD.
    const uint64_t in_dram = std::min<uint64_t>(entries / 8, pool / entry / 2);
    // DRAM hits are checked after the loop, not between the timed Gets (a 1 MiB compare
    // there would evict the index from the caches); their extents stay valid as long as
    // no Get allocated (an SSD hit does), else they are read again.
    std::vector<std::pair<uint64_t, Extent>> dram_hits;
    bool allocated = false;
    for (int rep = 0; rep < 3; ++rep) {
      for (uint64_t i = entries - in_dram; i < entries; ++i) {
        auto t = Clock::now();
        auto l = tm->Get(Key(i), 0);
        const double us = Us(Clock::now() - t);
        if (!l.ok()) Fail("get of resident entry " + std::to_string(i) + ": " + std::string(l.status().message()));
        if (l->found_in == Tier::kDram) {
          dram_us.push_back(us);
          dram_hits.emplace_back(i, l->lease.extent);
        } else {
          allocated = true;
          CheckLease(tm.get(), *l, data[i], i);
        }
        tm->Release(l->lease.id);
      }
    }
    for (const auto& [i, e] : dram_hits) {
      if (!allocated) {
        if (e.length != data[i].size() || std::memcmp(tm->Bytes(e).data(), data[i].data(), e.length) != 0) {
          Fail("DRAM get of entry " + std::to_string(i) + " leased bytes other than those put");
        }
        continue;
      }
      auto l = tm->GetFromDram(Key(i), 0);
      if (!l.ok()) Fail("DRAM entry " + std::to_string(i) + " vanished");
      CheckLease(tm.get(), *l, data[i], i);
      tm->Release(l->lease.id);
    }
    const uint64_t cold = std::min<uint64_t>(entries / 2, 64);
    for (uint64_t i = 0; i < cold; ++i) {
      auto t = Clock::now();
      auto l = tm->Get(Key(i), 0);
      const double us = Us(Clock::now() - t);
      if (!l.ok()) Fail("get of cold entry " + std::to_string(i) + ": " + std::string(l.status().message()));
      if (l->found_in == Tier::kSsd) ssd_us.push_back(us);
      CheckLease(tm.get(), *l, data[i], i);  // SSD reads dominate; checked before Release
      tm->Release(l->lease.id);
    }
    if (promote == 0 && !dram_us.empty()) {
      auto p = Percentiles(dram_us);
      std::printf("mode=get_dram_hit entry_bytes=%lu p50_us=%.1f p99_us=%.1f n=%zu\n",
                  (unsigned long)entry, p.p50, p.p99, dram_us.size());
    }
    if (!ssd_us.empty()) {
      auto p = Percentiles(ssd_us);
      std::printf("mode=get_ssd_hit_%s entry_bytes=%lu p50_us=%.1f p99_us=%.1f n=%zu\n",
                  promote ? "promote" : "temp_extent", (unsigned long)entry, p.p50, p.p99,
                  ssd_us.size());
    }
  }

  // Durable Put latency (write-through, waits for fdatasync + index commit).
  {
    auto tm = Make(dir, pool, true, 1);
    std::vector<double> us;
    const uint64_t n = std::min<uint64_t>(entries, 64);
    for (uint64_t i = 0; i < n; ++i) {
      auto t = Clock::now();
      if (Put(tm.get(), i, data[i], true)) us.push_back(Us(Clock::now() - t));
      else Fail("durable put " + std::to_string(i) + " failed or was not durable");
    }
    // Each durable put is on SSD with its bytes.
    for (uint64_t i = 0; i < n; ++i) {
      auto b = tm->ssd_for_testing()->Get(Key(i));
      if (!b.ok() || *b != data[i]) Fail("durable put " + std::to_string(i) + " not on SSD as written");
    }
    if (!us.empty()) {
      auto p = Percentiles(us);
      std::printf("mode=put_durable entry_bytes=%lu p50_us=%.1f p99_us=%.1f n=%zu\n",
                  (unsigned long)entry, p.p50, p.p99, us.size());
    }
  }
  std::filesystem::remove_all(dir);
  return 0;
}
