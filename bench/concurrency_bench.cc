// Issue-17 item 3: throughput of a running adaptcached against the number of client
// threads, for Lookup, Get (shared memory) and Put (streamed). See
// bench/scripts/70_concurrency.sh.
//
// Every thread has a Client of its own, on its own connection (own_connection), as
// separate engine processes would. A figure is one thread count run for --seconds after
// --warmup-s; each repetition runs every thread count once (so load from other jobs hits
// them alike) and the table gives the median over --reps repetitions.
//   lookup   Lookup of a random stored 64-key chain (of --lookup-entries tiny entries);
//            every answer must be a full prefix hit
//   get_shm  GetShm of a random one of --get-entries 256 KiB raw bf16 entries, CRC32C of
//            the leased bytes checked against the entry's metadata and the CRC of the
//            container encoded here, then release (batched by 16, the client default)
//   put      Put (client-streamed) of a 256 KiB entry over a ring of --put-ring keys per
//            thread; the answer's sizes and CRC checked
// GB/s counts raw tensor bytes (1e9 B/s), as kvstore_bench does.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/client.h"
#include "client/kv_files.h"
#include "common/crc32c.h"
#include "kernels/codec.h"

namespace adaptcache::bench {
namespace {

using client::Client;
using client::ClientOptions;
using client::PutSpec;
using Clock = std::chrono::steady_clock;

constexpr int kBatch = 64;  // keys per Lookup, as in kvstore_bench and issue 2
const KvShape kTiny{1, 1, 1, 8, DType::kBF16};  // 32 raw bytes; each still takes a 4 KiB extent

struct Args {
  std::string target;
  std::string threads = "1,2,4,8,16";
  std::string ops = "lookup,get,put";
  double seconds = 3;
  double warmup_s = 0.5;
  int reps = 3;
  int lookup_entries = 1'000'000;
  int load_threads = 8;
  int get_entries = 256;
  int entry_kib = 256;
  int put_ring = 8;
  std::string csv;
};

[[noreturn]] void Die(const std::string& what, const absl::Status& st) {
  std::fprintf(stderr, "concurrency_bench: %s: %s\n", what.c_str(), st.ToString().c_str());
  std::fflush(stderr);
  std::_Exit(1);  // from any thread: no destructors racing the other workers
}
[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "concurrency_bench: %s\n", what.c_str());
  std::fflush(stderr);
  std::_Exit(1);
}

std::string Fmt(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0 : (n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2);
}

double Percentile(std::vector<float>& v, double p) {  // sorts v
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5));
  return v[i];
}

std::unique_ptr<Client> Connect(const Args& a) {
  ClientOptions o;
  o.own_connection = true;  // one connection per thread, not gRPC's shared one
  auto c = Client::Connect(a.target, o);
  if (!c.ok()) Die("connect " + a.target, c.status());
  return std::move(*c);
}

// One measured run: ops/s, raw GB/s and latency percentiles over all threads' calls.
struct Sample {
  double ops_per_s = 0, gbps = 0, p50_us = 0, p99_us = 0;
};

// What one thread does per call; `rng` is the thread's own. Must check its answer.
using OpFn = std::function<void(int thread, std::mt19937_64& rng)>;

// Runs `op` on `n` threads (thread i on clients[i]'s behalf, via the closure), counting
// the calls that start after the warm-up and before the stop.
Sample RunTimed(int n, const Args& a, uint64_t bytes_per_op, const OpFn& op) {
  enum Phase : int { kWarm, kMeasure, kStop };
  std::atomic<int> phase{kWarm};
  std::vector<std::vector<float>> lat(n);
  std::vector<Clock::time_point> last_end(n);
  std::vector<std::thread> pool;
  for (int t = 0; t < n; ++t) {
    pool.emplace_back([&, t] {
      std::mt19937_64 rng(0x5eed + 7919 * t);
      lat[t].reserve(1 << 16);
      for (;;) {
        const int ph = phase.load(std::memory_order_acquire);
        if (ph == kStop) break;
        const auto s = Clock::now();
        op(t, rng);
        const auto e = Clock::now();
        if (ph == kMeasure) {
          lat[t].push_back(std::chrono::duration<float, std::micro>(e - s).count());
          last_end[t] = e;
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(a.warmup_s));
  const auto t0 = Clock::now();
  phase.store(kMeasure, std::memory_order_release);
  std::this_thread::sleep_for(std::chrono::duration<double>(a.seconds));
  phase.store(kStop, std::memory_order_release);
  for (auto& th : pool) th.join();
  // The window ends with the last counted call, which may finish after the stop.
  auto t1 = t0;
  std::vector<float> all;
  for (int t = 0; t < n; ++t) {
    if (!lat[t].empty()) t1 = std::max(t1, last_end[t]);
    all.insert(all.end(), lat[t].begin(), lat[t].end());
  }
  Sample s;
  const double secs = std::chrono::duration<double>(t1 - t0).count();
  if (all.empty() || secs <= 0) return s;
  s.ops_per_s = static_cast<double>(all.size()) / secs;
  s.gbps = s.ops_per_s * static_cast<double>(bytes_per_op) / 1e9;
  s.p50_us = Percentile(all, 0.50);
  s.p99_us = Percentile(all, 0.99);
  return s;
}

// ---- lookup -------------------------------------------------------------------------

struct LookupSet {
  std::string ns = "bench/conc/lookup";
  std::vector<std::vector<Key128>> seqs;  // each a chain of kBatch keys
  double load_s = 0;
};

// Stores --lookup-entries tiny entries as chained 64-key sequences (kvstore_bench's
// RunLookup layout), then checks that every chain is a full prefix hit.
LookupSet LoadLookup(const Args& a) {
  LookupSet ls;
  const int sequences = (a.lookup_entries + kBatch - 1) / kBatch;
  ls.seqs.resize(sequences);
  for (int s = 0; s < sequences; ++s) {
    std::vector<uint32_t> tokens(kBatch);
    for (int t = 0; t < kBatch; ++t) tokens[t] = static_cast<uint32_t>(s) * 7919u + static_cast<uint32_t>(t);
    ls.seqs[s] = Client::HashTokens(ls.ns, tokens, 1);
  }
  const auto raw = client::RandomKvBytes(kTiny, 1);
  const auto t0 = Clock::now();
  std::atomic<int> next{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < a.load_threads; ++t) {
    pool.emplace_back([&] {
      auto c = Connect(a);
      PutSpec spec;
      spec.ns = ls.ns;
      spec.shape = kTiny;
      for (int s; (s = next.fetch_add(1)) < sequences;) {
        for (const auto& k : ls.seqs[s]) {
          spec.key = k;
          if (auto r = c->Put(spec, raw); !r.ok()) Die("lookup load put", r.status());
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  ls.load_s = std::chrono::duration<double>(Clock::now() - t0).count();
  // A chain evicted while loading (pool too small) would only show up mid-run otherwise.
  next = 0;
  pool.clear();
  for (int t = 0; t < a.load_threads; ++t) {
    pool.emplace_back([&] {
      auto c = Connect(a);
      for (int s; (s = next.fetch_add(1)) < sequences;) {
        auto l = c->Lookup(ls.ns, ls.seqs[s]);
        if (!l.ok()) Die("lookup after load", l.status());
        if (l->prefix_hits != kBatch) {
          Fail(absl::StrCat("after loading, chain ", s, " has ", l->prefix_hits, " of ", kBatch,
                            " keys stored: entries were evicted (pool too small for --lookup-entries?)"));
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  return ls;
}

OpFn LookupOp(const LookupSet& ls, std::vector<std::unique_ptr<Client>>& clients) {
  return [&ls, &clients](int t, std::mt19937_64& rng) {
    const size_t s = rng() % ls.seqs.size();
    auto l = clients[t]->Lookup(ls.ns, ls.seqs[s]);
    if (!l.ok()) Die("lookup", l.status());
    if (l->prefix_hits != kBatch || l->entries.size() != static_cast<size_t>(kBatch)) {
      Fail(absl::StrCat("lookup of stored chain ", s, ": prefix_hits ", l->prefix_hits, " of ", kBatch,
                        " (entries evicted or lost)"));
    }
  };
}

// ---- data entries for get and put ----------------------------------------------------

struct Payloads {
  KvShape shape;
  std::vector<std::vector<std::byte>> raw;
  std::vector<uint32_t> crc;  // CRC32C of raw[i]'s raw-codec container, encoded here
  uint64_t container_bytes = 0;
};

Payloads MakePayloads(const Args& a) {
  Payloads p;
  // [2][1 layer][tokens][8 heads][128] bf16: 4 KiB per token.
  p.shape = KvShape{1, static_cast<uint32_t>(a.entry_kib / 4), 8, 128, DType::kBF16};
  if (auto st = ValidateShape(p.shape); !st.ok()) Die("--entry-kib", st);
  for (int i = 0; i < a.get_entries; ++i) {
    p.raw.push_back(client::RandomKvBytes(p.shape, 1000 + i));
    auto enc = EncodeToVector(CodecConfig{}, p.shape, p.raw.back());
    if (!enc.ok()) Die("encode", enc.status());
    p.crc.push_back(Crc32c(enc->data(), enc->size()));
    p.container_bytes = enc->size();
  }
  return p;
}

// The daemon's answer to a Put of payload `i`: a raw DRAM entry of the container we
// encoded ourselves.
void CheckPut(const absl::StatusOr<client::EntryInfo>& r, const Payloads& p, size_t i, const char* what) {
  if (!r.ok()) Die(what, r.status());
  if (r->stored_bytes != p.container_bytes || r->raw_bytes != p.shape.Bytes() || r->payload_crc32c != p.crc[i] ||
      r->tier != Tier::kDram || r->codec != "raw") {
    Fail(absl::StrCat(what, ": answer has stored ", r->stored_bytes, " B (want ", p.container_bytes, "), raw ",
                      r->raw_bytes, " B (want ", p.shape.Bytes(), "), crc ", r->payload_crc32c, " (want ", p.crc[i],
                      "), tier ", std::string(TierName(r->tier)), ", codec ", r->codec));
  }
}

Key128 GetKey(int i) { return Key128{static_cast<uint64_t>(i) + 1, 0x6e7c0000}; }
Key128 PutKey(int thread, int slot) {
  return Key128{static_cast<uint64_t>(slot) + 1, 0x907c0000ull + static_cast<uint64_t>(thread)};
}

OpFn GetOp(const std::string& ns, const Payloads& p, std::vector<std::unique_ptr<Client>>& clients) {
  return [&ns, &p, &clients](int t, std::mt19937_64& rng) {
    const size_t i = rng() % p.raw.size();
    auto le = clients[t]->GetShm(ns, GetKey(static_cast<int>(i)));
    if (!le.ok()) Die("get shm", le.status());
    const auto b = le->bytes();
    // Checked while the lease pins the bytes.
    const uint32_t crc = Crc32c(b.data(), b.size());
    if (b.size() != p.container_bytes || crc != le->info().payload_crc32c || crc != p.crc[i]) {
      Fail(absl::StrCat("get shm of entry ", i, ": ", b.size(), " B (want ", p.container_bytes, "), crc ", crc,
                        ", metadata says ", le->info().payload_crc32c, ", want ", p.crc[i]));
    }
    le->Release();
  };
}

// Thread t overwrites its own ring of keys; each call sends a different payload.
OpFn PutOp(const std::string& ns, const Payloads& p, int ring, std::vector<std::unique_ptr<Client>>& clients,
           std::vector<uint64_t>& counters) {
  return [&ns, &p, ring, &clients, &counters](int t, std::mt19937_64&) {
    const uint64_t n = counters[t]++;
    const size_t i = (static_cast<uint64_t>(t) * 7 + n) % p.raw.size();
    PutSpec spec;
    spec.ns = ns;
    spec.key = PutKey(t, static_cast<int>(n % static_cast<uint64_t>(ring)));
    spec.shape = p.shape;
    CheckPut(clients[t]->Put(spec, p.raw[i]), p, i, "put");
  };
}

// ---- driver --------------------------------------------------------------------------

struct Row {
  std::string op;
  int threads = 0;
  std::vector<Sample> reps;
  Sample med;
};

Sample MedianOf(const std::vector<Sample>& v) {
  std::vector<double> o, g, p50, p99;
  for (const auto& s : v) {
    o.push_back(s.ops_per_s);
    g.push_back(s.gbps);
    p50.push_back(s.p50_us);
    p99.push_back(s.p99_us);
  }
  return Sample{Median(o), Median(g), Median(p50), Median(p99)};
}

std::vector<int> ParseThreads(const std::string& text) {
  std::vector<int> out;
  for (const auto& part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    const int n = std::atoi(std::string(part).c_str());
    if (n < 1 || n > 1024) Fail("--threads: bad count '" + std::string(part) + "'");
    out.push_back(n);
  }
  if (out.empty()) Fail("--threads: empty");
  return out;
}

}  // namespace
}  // namespace adaptcache::bench

int main(int argc, char** argv) {
  using namespace adaptcache;
  using namespace adaptcache::bench;
  Args a;
  CLI::App app{"concurrency_bench: Lookup / shm Get / Put throughput against client threads"};
  app.add_option("--target", a.target, "adaptcached socket path (or unix:///path)")->required();
  app.add_option("--threads", a.threads, "client thread counts, comma separated")->capture_default_str();
  app.add_option("--ops", a.ops, "phases to run: lookup,get,put")->capture_default_str();
  app.add_option("--seconds", a.seconds, "measured seconds per figure")->capture_default_str();
  app.add_option("--warmup-s", a.warmup_s, "unmeasured seconds before each figure")->capture_default_str();
  app.add_option("--reps", a.reps, "repetitions (median reported)")->capture_default_str();
  app.add_option("--lookup-entries", a.lookup_entries, "tiny entries stored for Lookup")->capture_default_str();
  app.add_option("--load-threads", a.load_threads, "threads loading the Lookup entries")->capture_default_str();
  app.add_option("--get-entries", a.get_entries, "entries Get picks from (also Put's payloads)")
      ->capture_default_str();
  app.add_option("--entry-kib", a.entry_kib, "raw KiB per Get/Put entry (multiple of 4)")->capture_default_str();
  app.add_option("--put-ring", a.put_ring, "keys each Put thread overwrites in turn")->capture_default_str();
  app.add_option("--csv", a.csv, "write rows as CSV here");
  CLI11_PARSE(app, argc, argv);
  if (a.reps < 1 || a.seconds <= 0 || a.warmup_s < 0 || a.lookup_entries < 1 || a.load_threads < 1 ||
      a.get_entries < 1 || a.put_ring < 1 || a.entry_kib < 4 || a.entry_kib % 4 != 0) {
    Fail("bad arguments (see --help)");
  }
  const std::vector<int> counts = ParseThreads(a.threads);
  const int max_threads = *std::max_element(counts.begin(), counts.end());
  std::map<std::string, bool> want;
  for (const auto& part : absl::StrSplit(a.ops, ',', absl::SkipEmpty())) {
    const std::string op(part);
    if (op != "lookup" && op != "get" && op != "put") Fail("--ops: unknown phase '" + op + "'");
    want[op] = true;
  }

  std::vector<std::unique_ptr<Client>> clients;
  for (int t = 0; t < max_threads; ++t) clients.push_back(Connect(a));

  std::vector<Row> rows;
  auto measure = [&](const std::string& op, uint64_t bytes_per_op, const OpFn& fn) {
    std::vector<Row> mine;
    for (int n : counts) mine.push_back(Row{op, n, {}, {}});
    for (int r = 0; r < a.reps; ++r) {
      for (auto& row : mine) {
        row.reps.push_back(RunTimed(row.threads, a, bytes_per_op, fn));
        std::fprintf(stderr, "  %s threads=%d rep %d: %.0f ops/s, p99 %.0f us\n", op.c_str(), row.threads, r + 1,
                     row.reps.back().ops_per_s, row.reps.back().p99_us);
      }
    }
    for (auto& row : mine) {
      row.med = MedianOf(row.reps);
      rows.push_back(row);
    }
  };

  LookupSet ls;
  if (want["lookup"]) {
    std::fprintf(stderr, "loading %d Lookup entries...\n", a.lookup_entries);
    ls = LoadLookup(a);
    std::fprintf(stderr, "loaded %zu entries in %.1f s\n", ls.seqs.size() * kBatch, ls.load_s);
    measure("lookup", 0, LookupOp(ls, clients));
  }
  Payloads p;
  if (want["get"] || want["put"]) p = MakePayloads(a);
  const std::string ns_get = "bench/conc/get", ns_put = "bench/conc/put";
  if (want["get"]) {
    auto c = Connect(a);
    for (int i = 0; i < a.get_entries; ++i) {
      PutSpec spec;
      spec.ns = ns_get;
      spec.key = GetKey(i);
      spec.shape = p.shape;
      CheckPut(c->Put(spec, p.raw[i]), p, static_cast<size_t>(i), "get set put");
    }
    measure("get_shm", p.shape.Bytes(), GetOp(ns_get, p, clients));
    for (auto& cl : clients) (void)cl->FlushReleases();
  }
  if (want["put"]) {
    std::vector<uint64_t> counters(max_threads, 0);
    measure("put", p.shape.Bytes(), PutOp(ns_put, p, a.put_ring, clients, counters));
  }

  // Table: keys/s only for Lookup, GB/s only for data ops; scaling is vs the first count.
  std::printf("| op | threads | ops/s | keys/s | GB/s | p50 us | p99 us | x vs %d thread%s |\n", counts[0],
              counts[0] == 1 ? "" : "s");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|\n");
  std::map<std::string, double> base;
  for (const auto& r : rows) {
    if (!base.count(r.op)) base[r.op] = r.med.ops_per_s;
    const bool lk = r.op == "lookup";
    std::printf("| %s | %d | %.0f | %s | %s | %.1f | %.1f | %.2f |\n", r.op.c_str(), r.threads, r.med.ops_per_s,
                lk ? absl::StrCat(static_cast<int64_t>(r.med.ops_per_s * kBatch + 0.5)).c_str() : "",
                lk ? "" : Fmt("%.2f", r.med.gbps).c_str(), r.med.p50_us, r.med.p99_us,
                base[r.op] > 0 ? r.med.ops_per_s / base[r.op] : 0);
  }
  std::printf("\nMedians of %d repetition%s of %.1f s (after %.1f s warm-up) per row.", a.reps, a.reps == 1 ? "" : "s",
              a.seconds, a.warmup_s);
  if (want["lookup"]) {
    std::printf(" Lookup: 64-key chains over %zu stored entries (loaded in %.1f s by %d threads).",
                ls.seqs.size() * kBatch, ls.load_s, a.load_threads);
  }
  if (want["get"] || want["put"]) {
    std::printf(" Get/Put: %d KiB raw bf16 entries (%d for Get; Put rings of %d keys per thread).", a.entry_kib,
                a.get_entries, a.put_ring);
  }
  std::printf("\n");
  for (const auto& r : rows) {
    if (r.op == "lookup" && r.threads == 8) {
      std::printf("\nTarget: Lookup p99 < 200 us with 8 concurrent clients and %zu entries: %.1f us (%s)\n",
                  ls.seqs.size() * kBatch, r.med.p99_us, r.med.p99_us < 200 ? "met" : "NOT met");
    }
  }
  if (!a.csv.empty()) {
    std::ofstream out(a.csv);
    out << "op,threads,ops_per_s,gbps,p50_us,p99_us\n";
    for (const auto& r : rows) {
      out << r.op << "," << r.threads << "," << Fmt("%.1f", r.med.ops_per_s) << ","
          << (r.op == "lookup" ? "" : Fmt("%.4f", r.med.gbps)) << ","
          << Fmt("%.1f", r.med.p50_us) << "," << Fmt("%.1f", r.med.p99_us) << "\n";
    }
    if (!out) Fail("cannot write " + a.csv);
  }
  return 0;
}
