// DRAM tier benchmark: allocator and tier operation costs, fragmentation at steady state,
// and index memory per entry (DESIGN.md §9 budgets 256 bytes).
//
//   dram_bench [--pool_mib 1024] [--entries 200000] [--ops 200000] [--reps 5] [--csv out.csv]
//
// Rows (median of --reps runs, ns per operation on one thread unless noted):
//   alloc_free_steady   ExtentAllocator Allocate+Free pair, sizes 4 KiB..1 MiB, pool ~90% full
//   tier_put_evicting   DramTier Allocate+Commit with LRU eviction (pool kept full)
//   tier_get            DramTier Acquire+Release of a resident entry
//   tier_get_2threads   same, two threads (ns per op per thread)
//   tier_peek           DramTier Peek
// plus pool creation time and heap bytes per indexed entry (index + LRU + meta). No payload is
// copied: this measures the metadata path only.
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "storage/dram_tier.h"
#include "storage/extent_allocator.h"

namespace {

using namespace adaptcache;
using Clock = std::chrono::steady_clock;

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "dram_bench: FAILED: %s\n", what.c_str());
  std::exit(1);
}

// After the churn: the live extents (rounded up) and the free extents must tile
// [0, capacity) exactly; a lost Free or an overlapping Allocate breaks the tiling.
void CheckTiling(const ExtentAllocator& a, std::vector<std::pair<uint64_t, uint64_t>> live) {
  for (auto& e : live) e.second = ExtentAllocator::AlignUp(e.second);
  a.ForEachFree([&](uint64_t off, uint64_t len) { live.emplace_back(off, len); });
  std::sort(live.begin(), live.end());
  uint64_t at = 0;
  for (const auto& [off, len] : live) {
    if (off != at) Fail("allocator: extent at " + std::to_string(off) + ", expected " + std::to_string(at));
    at += len;
  }
  if (at != a.capacity()) {
    Fail("allocator: extents end at " + std::to_string(at) + " of " + std::to_string(a.capacity()));
  }
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double NsSince(Clock::time_point t0, uint64_t ops) {
  return std::chrono::duration<double, std::nano>(Clock::now() - t0).count() /
         static_cast<double>(ops);
}

// Heap bytes in use (brk + mmapped chunks); the shm pool is not part of it. Unlike RSS
// this does not depend on what earlier repetitions left in malloc's free lists.
uint64_t HeapInUseBytes() {
  const struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

EntryKey Key(uint64_t i) { return EntryKey{1, Key128{i, i * 0x9e3779b97f4a7c15ull}}; }

EntryMeta Meta() {
  EntryMeta m;
  m.shape = KvShape{32, 256, 8, 128, DType::kBF16};
  m.codec = "raw";
  m.raw_bytes = m.shape.Bytes();
  return m;
}

uint64_t SizeFor(std::mt19937_64& rng) {  // 4 KiB .. 1 MiB, log-uniform
  const double l = std::uniform_real_distribution<double>(12, 20)(rng);
  return static_cast<uint64_t>(std::exp2(l));
}

double AllocatorSteady(uint64_t capacity, uint64_t ops, double* frag) {
  ExtentAllocator a(capacity);
  std::mt19937_64 rng(1);
  std::vector<std::pair<uint64_t, uint64_t>> live;
  while (a.used_bytes() < capacity * 9 / 10) {
    const uint64_t b = SizeFor(rng);
    auto r = a.Allocate(b);
    if (!r.ok()) break;
    live.emplace_back(*r, b);
  }
  const auto t0 = Clock::now();
  for (uint64_t i = 0; i < ops; ++i) {
    const size_t j = rng() % live.size();
    (void)a.Free(live[j].first, live[j].second);
    const uint64_t b = SizeFor(rng);
    auto r = a.Allocate(b);
    if (r.ok()) {
      live[j] = {*r, b};
    } else {
      live[j] = live.back();
      live.pop_back();
    }
  }
  const double ns = NsSince(t0, ops);
  CheckTiling(a, live);
  *frag = a.Stats().fragmentation;
  return ns;
}

}  // namespace

int main(int argc, char** argv) {
  // As adaptcached runs (server/main.cc): no process-wide Mutex deadlock graph.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  uint64_t pool_mib = 1024, entries = 200000, ops = 200000;
  int reps = 5;
  std::string csv;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const char* v = argv[i + 1];
    if (a == "--pool_mib")
      pool_mib = std::stoull(v);
    else if (a == "--entries")
      entries = std::stoull(v);
    else if (a == "--ops")
      ops = std::stoull(v);
    else if (a == "--reps")
      reps = std::stoi(v);
    else if (a == "--csv")
      csv = v;
    else {
      std::fprintf(stderr, "unknown flag %s\n", a.c_str());
      return 2;
    }
  }
  const uint64_t pool = pool_mib << 20;
  std::vector<double> alloc_ns, frag_v, put_ns, get_ns, get2_ns, peek_ns, create_ms, bpe;

  for (int rep = 0; rep < reps; ++rep) {
    double frag = 0;
    alloc_ns.push_back(AllocatorSteady(pool, ops, &frag));
    frag_v.push_back(frag);

    DramTierOptions o;
    o.capacity_bytes = pool;
    o.name = "ac-dram-bench";
    o.mlock = false;
    const uint64_t heap0 = HeapInUseBytes();
    auto t0 = Clock::now();
    auto tier_or = DramTier::Create(o);
    if (!tier_or.ok()) {
      std::fprintf(stderr, "create: %s\n", std::string(tier_or.status().message()).c_str());
      return 1;
    }
    create_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    DramTier& t = **tier_or;
    // Fill with `entries` one-page entries (the pool must hold them: entries*4 KiB).
    const EntryMeta meta = Meta();
    const uint64_t resident = std::min<uint64_t>(entries, pool / ExtentAllocator::kAlignment);
    for (uint64_t i = 0; i < resident; ++i) {
      auto e = t.Allocate(4000);
      if (!e.ok() || !t.Commit(Key(i), *e, meta).ok()) Fail("fill: put " + std::to_string(i));
    }
    bpe.push_back(static_cast<double>(HeapInUseBytes() - heap0) / static_cast<double>(resident));

    // Gets on resident keys.
    std::mt19937_64 rng(rep + 7);
    t0 = Clock::now();
    for (uint64_t i = 0; i < ops; ++i) {
      auto l = t.Acquire(Key(rng() % resident), 0);
      if (!l.ok() || !t.Release(l->id)) Fail("tier_get: Acquire/Release");
    }
    get_ns.push_back(NsSince(t0, ops));
    t0 = Clock::now();
    uint64_t found = 0;
    for (uint64_t i = 0; i < ops; ++i) found += t.Peek(Key(rng() % resident)).has_value();
    peek_ns.push_back(NsSince(t0, ops));
    if (found != ops) Fail("tier_peek: " + std::to_string(ops - found) + " resident keys not found");
    {
      std::vector<double> per(2);
      std::vector<uint64_t> done(2);  // Acquire+Release pairs that succeeded
      std::vector<std::thread> th;
      for (int k = 0; k < 2; ++k) {
        th.emplace_back([&, k] {
          std::mt19937_64 r(k + 100 * rep);
          uint64_t ok = 0;
          const auto s = Clock::now();
          for (uint64_t i = 0; i < ops / 2; ++i) {
            auto l = t.Acquire(Key(r() % resident), 0);
            if (l.ok() && t.Release(l->id)) ++ok;
          }
          per[k] = NsSince(s, ops / 2);
          done[k] = ok;
        });
      }
      for (auto& x : th) x.join();
      if (done[0] + done[1] != 2 * (ops / 2)) {
        Fail("tier_get_2threads: " + std::to_string(2 * (ops / 2) - done[0] - done[1]) + " Acquire/Release failed");
      }
      get2_ns.push_back((per[0] + per[1]) / 2);
    }
    // Puts of new keys into the full pool: every put evicts.
    t0 = Clock::now();
    for (uint64_t i = 0; i < ops; ++i) {
      auto e = t.Allocate(SizeFor(rng));
      if (!e.ok() || !t.Commit(Key(resident + i), *e, meta).ok()) {
        Fail("tier_put_evicting: put " + std::to_string(i));
      }
    }
    put_ns.push_back(NsSince(t0, ops));
    // After the rep's timed parts: the newest put is resident, no lease or in-flight extent
    // is left, and every indexed key has its own extent inside the pool (fill entries
    // still at 4000 bytes).
    {
      const auto st = t.Stats();
      if (!t.Peek(Key(resident + ops - 1)) || st.inflight_bytes != 0 || st.leases_outstanding != 0 ||
          st.invalid_frees != 0) {
        Fail("tier_put_evicting: newest entry missing, or leases/in-flight extents left");
      }
      std::vector<std::pair<uint64_t, uint64_t>> ext;
      for (uint64_t i = 0; i < resident + ops; ++i) {
        auto v = t.Inspect(Key(i));
        if (!v) continue;
        if ((i < resident && v->extent.length != 4000) || v->extent.length == 0 || v->leases != 0 ||
            v->meta.codec != meta.codec) {
          Fail("index: entry " + std::to_string(i) + " has a wrong length, a lease or other metadata");
        }
        ext.emplace_back(v->extent.offset, ExtentAllocator::AlignUp(v->extent.length));
      }
      if (ext.size() != st.entries) {
        Fail("index: " + std::to_string(ext.size()) + " keys found, stats say " + std::to_string(st.entries));
      }
      std::sort(ext.begin(), ext.end());
      for (size_t k = 0; k < ext.size(); ++k) {
        const uint64_t end = ext[k].first + ext[k].second;
        if (end > t.pool_size() || (k + 1 < ext.size() && end > ext[k + 1].first)) {
          Fail("index: extents overlap or leave the pool");
        }
      }
    }
  }

  std::printf("| metric | median | unit |\n|---|---|---|\n");
  std::printf("| alloc_free_steady (pool %llu MiB, ~90%% full) | %.0f | ns/pair |\n",
              static_cast<unsigned long long>(pool_mib), Median(alloc_ns));
  std::printf("| fragmentation after churn | %.3f | 1 - largest/free |\n", Median(frag_v));
  std::printf("| pool create (fallocate+mmap, no mlock) | %.1f | ms |\n", Median(create_ms));
  std::printf("| index heap bytes per entry (%llu entries) | %.0f | bytes |\n",
              static_cast<unsigned long long>(std::min<uint64_t>(entries, pool / 4096)),
              Median(bpe));
  std::printf("| tier_get (Acquire+Release) | %.0f | ns/op |\n", Median(get_ns));
  std::printf("| tier_get_2threads | %.0f | ns/op/thread |\n", Median(get2_ns));
  std::printf("| tier_peek | %.0f | ns/op |\n", Median(peek_ns));
  std::printf("| tier_put_evicting (Allocate+Commit) | %.0f | ns/op |\n", Median(put_ns));
  if (!csv.empty()) {
    FILE* f = std::fopen(csv.c_str(), "w");
    if (!f) return 1;
    std::fprintf(f, "metric,median,unit\n");
    std::fprintf(f, "alloc_free_steady,%.0f,ns\nfragmentation,%.3f,ratio\n", Median(alloc_ns),
                 Median(frag_v));
    std::fprintf(f, "pool_create,%.1f,ms\nindex_bytes_per_entry,%.0f,bytes\n", Median(create_ms),
                 Median(bpe));
    std::fprintf(f, "tier_get,%.0f,ns\ntier_get_2threads,%.0f,ns\ntier_peek,%.0f,ns\n",
                 Median(get_ns), Median(get2_ns), Median(peek_ns));
    std::fprintf(f, "tier_put_evicting,%.0f,ns\n", Median(put_ns));
    std::fclose(f);
  }
  return 0;
}
