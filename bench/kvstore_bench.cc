// Issue-2 benchmark: Put/Get throughput of adaptcached (gRPC bytes and shared memory)
// against Redis, and Lookup latency with 100k entries stored. See bench/scripts/10_kvstore.sh.
//
// Throughput counts the raw tensor bytes moved per second, between a caller-owned
// buffer and the store:
//   grpc put   Client::Put (client-streamed 1 MiB frames)
//   shm put    ReservePut -> memcpy into the pool -> CommitPut
//   grpc get   Client::GetInto (streamed frames -> caller buffer, whole-container CRC check)
//   shm get    Get(TRANSFER_SHM) lease -> copy out of the mapping -> CRC check -> release
//              (releases batched by 16, the client default; "shm get rel=1" releases each)
//   redis      SET / GET of the same container bytes with a minimal RESP client; GET reads
//              the bulk reply straight into the caller buffer
// Each figure is the median of --reps repetitions over --entries distinct entries.
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <functional>
#include <random>
#include <thread>

#include <CLI/CLI.hpp>

#include "bench/kvstore_resp.h"
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

struct Args {
  std::string target;
  int redis_port = 0;
  std::string redis_unix;
  int reps = 5;
  int entries_1m = 64;
  int entries_16m = 16;
  int lookup_entries = 100'000;
  int lookup_calls = 5'000;
  std::string csv;
  size_t put_frame_kib = 1024;
  int window_kib = 0;
  int frame_kib = 0;
  bool skip_lookup = false;
};

ClientOptions Opts(const Args& a) {
  ClientOptions o;
  o.put_frame_bytes = a.put_frame_kib << 10;
  o.receive_window_bytes = a.window_kib << 10;
  o.http2_max_frame_bytes = std::min((a.frame_kib << 10), (16 << 20) - 1);
  return o;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0 : (n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2);
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  if (v.empty()) return 0;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5));
  return v[i];
}

void Die(const std::string& what, const absl::Status& st) {
  std::fprintf(stderr, "kvstore_bench: %s: %s\n", what.c_str(), st.ToString().c_str());
  std::exit(1);
}

struct Row {
  std::string size;
  std::string op;
  std::string path;
  double gbps_median = 0, gbps_min = 0, gbps_max = 0;
};

// The variants of one phase (put or get) run interleaved: each repetition runs every
// variant once, so load from other processes on the machine hits them alike.
struct Variant {
  std::string path;
  std::function<void(int)> op;
};

void MeasurePhase(const std::string& size, const std::string& op, int reps, int entries, uint64_t bytes_per_op,
                  const std::vector<Variant>& variants, const std::function<void(const std::string&)>& after_each,
                  std::vector<Row>* rows) {
  std::vector<std::vector<double>> gbps(variants.size());
  for (int r = 0; r < reps; ++r) {
    for (size_t v = 0; v < variants.size(); ++v) {
      const auto t0 = Clock::now();
      for (int i = 0; i < entries; ++i) variants[v].op(i);
      const double s = std::chrono::duration<double>(Clock::now() - t0).count();
      gbps[v].push_back(static_cast<double>(bytes_per_op) * entries / s / 1e9);
      after_each(variants[v].path);
    }
  }
  for (size_t v = 0; v < variants.size(); ++v) {
    const auto& g = gbps[v];
    rows->push_back(Row{size, op, variants[v].path, Median(g), *std::min_element(g.begin(), g.end()),
                        *std::max_element(g.begin(), g.end())});
  }
}

void RunSize(const Args& a, const std::string& label, const KvShape& shape, int entries, std::vector<Row>* rows) {
  auto c = Client::Connect(a.target, Opts(a));
  if (!c.ok()) Die("connect", c.status());
  ClientOptions each = Opts(a);
  each.release_batch = 1;
  auto c1 = Client::Connect(a.target, each);
  if (!c1.ok()) Die("connect", c1.status());
  auto redis = RespClient::ConnectTcp("127.0.0.1", a.redis_port);
  if (!redis.ok()) Die("redis", redis.status());
  std::unique_ptr<RespClient> redis_unix;
  if (!a.redis_unix.empty()) {
    auto r = RespClient::ConnectUnix(a.redis_unix);
    if (!r.ok()) Die("redis unix", r.status());
    redis_unix = std::move(*r);
  }

  std::vector<std::vector<std::byte>> raw(entries), containers(entries);
  std::vector<Key128> keys(entries);
  std::vector<std::string> redis_keys(entries);
  for (int i = 0; i < entries; ++i) {
    raw[i] = client::RandomKvBytes(shape, 1000 + i);
    auto enc = EncodeToVector(CodecConfig{}, shape, raw[i]);
    if (!enc.ok()) Die("encode", enc.status());
    containers[i] = std::move(*enc);
    keys[i] = Key128{static_cast<uint64_t>(i) + 1, shape.Bytes()};
    redis_keys[i] = absl::StrCat("kv:", label, ":", i);
  }
  const uint64_t bytes = shape.Bytes();
  const std::string ns_grpc = "bench/grpc", ns_shm = "bench/shm";
  std::vector<std::byte> buf(containers[0].size());
  auto spec = [&](const std::string& ns, int i) {
    PutSpec s;
    s.ns = ns;
    s.key = keys[i];
    s.shape = shape;
    return s;
  };
  auto check = [&](bool ok, const char* what) {
    if (!ok) Die(what, absl::DataLossError("bytes differ"));
  };
  // What each timed call answered (container size, CRC32C; redis: size only), checked
  // after each run against the containers, which the daemon's raw encoding reproduces.
  std::vector<uint32_t> want_crc(entries);
  for (int i = 0; i < entries; ++i) want_crc[i] = Crc32c(containers[i].data(), containers[i].size());
  std::vector<std::pair<uint64_t, uint32_t>> got(entries);
  auto check_got = [&](const std::string& op, const std::string& path) {
    const bool redis = path.rfind("redis", 0) == 0;
    for (int i = 0; i < entries; ++i) {
      if (got[i].first != containers[i].size() || (!redis && got[i].second != want_crc[i])) {
        Die(op + " " + path, absl::DataLossError(absl::StrCat("entry ", i, ": ", got[i].first, " bytes, crc ",
                                                              got[i].second, "; expected ", containers[i].size(),
                                                              " bytes, crc ", want_crc[i])));
      }
    }
    std::fill(got.begin(), got.end(), std::pair<uint64_t, uint32_t>{0, 0});
  };

  // Puts (the store overwrites the same keys each repetition).
  std::vector<Variant> puts = {
      {"adaptcache grpc",
       [&](int i) {
         auto r = (*c)->Put(spec(ns_grpc, i), raw[i]);
         if (!r.ok()) Die("grpc put", r.status());
         got[i] = {r->stored_bytes, r->payload_crc32c};
       }},
      {"adaptcache shm",
       [&](int i) {
         auto r = (*c)->PutShm(spec(ns_shm, i), raw[i]);
         if (!r.ok()) Die("shm put", r.status());
         got[i] = {r->stored_bytes, r->payload_crc32c};
       }},
      {"redis tcp",
       [&](int i) {
         if (auto st = (*redis)->Set(redis_keys[i], containers[i]); !st.ok()) Die("redis set", st);
       }},
  };
  if (redis_unix) {
    puts.push_back({"redis unix", [&](int i) {
                      if (auto st = redis_unix->Set(redis_keys[i], containers[i]); !st.ok()) Die("redis set", st);
                    }});
  }
  // Redis SET answers only +OK; what it stored is checked by the gets below.
  MeasurePhase(label, "put", a.reps, entries, bytes, puts, [&](const std::string& path) {
    if (path.rfind("redis", 0) != 0) check_got("put", path);
  }, rows);

  // Gets into the caller's buffer; the last entry's bytes are checked after each run.
  std::vector<Variant> gets = {
      {"adaptcache grpc",
       [&](int i) {
         auto r = (*c)->GetInto(ns_grpc, keys[i], buf);
         if (!r.ok()) Die("grpc get", r.status());
         got[i] = {r->stored_bytes, r->payload_crc32c};
       }},
      {"adaptcache shm",
       [&](int i) {
         auto r = (*c)->GetShmInto(ns_shm, keys[i], buf);
         if (!r.ok()) Die("shm get", r.status());
         got[i] = {r->stored_bytes, r->payload_crc32c};
       }},
      {"adaptcache shm rel=1",
       [&](int i) {
         auto r = (*c1)->GetShmInto(ns_shm, keys[i], buf);
         if (!r.ok()) Die("shm get", r.status());
         got[i] = {r->stored_bytes, r->payload_crc32c};
       }},
      {"redis tcp",
       [&](int i) {
         auto r = (*redis)->GetInto(redis_keys[i], buf);
         if (!r.ok()) Die("redis get", r.status());
         got[i] = {*r, 0};
       }},
  };
  if (redis_unix) {
    gets.push_back({"redis unix", [&](int i) {
                      auto r = redis_unix->GetInto(redis_keys[i], buf);
                      if (!r.ok()) Die("redis get", r.status());
                      got[i] = {*r, 0};
                    }});
  }
  MeasurePhase(label, "get", a.reps, entries, bytes, gets, [&](const std::string& path) {
    check(buf == containers[entries - 1], path.c_str());
    check_got("get", path);
    std::fill(buf.begin(), buf.end(), std::byte{0});
  }, rows);
  (void)(*c)->FlushReleases();
  if (auto r = (*c)->Delete(ns_grpc, keys); !r.ok()) Die("delete", r.status());
  if (auto r = (*c)->Delete(ns_shm, keys); !r.ok()) Die("delete", r.status());
  (void)(*redis)->Command({"FLUSHALL"});
}

struct LookupResult {
  int entries = 0;
  double p50_us = 0, p99_us = 0, max_p99_us = 0, mean_us = 0;
  double load_s = 0;
};

LookupResult RunLookup(const Args& a) {
  constexpr int kBatch = 64;
  const int sequences = (a.lookup_entries + kBatch - 1) / kBatch;
  const KvShape tiny{1, 4, 1, 8, DType::kBF16};  // 128 raw bytes
  const std::string ns = "bench/lookup";
  std::vector<std::vector<Key128>> seq_keys(sequences);
  for (int s = 0; s < sequences; ++s) {
    std::vector<uint32_t> tokens(kBatch * 4);
    for (size_t t = 0; t < tokens.size(); ++t) tokens[t] = static_cast<uint32_t>(s * 7919 + t);
    seq_keys[s] = Client::HashTokens(ns, tokens, 4);
  }
  const auto raw = client::RandomKvBytes(tiny, 1);
  LookupResult res;
  res.entries = sequences * kBatch;
  const auto t0 = Clock::now();
  const int threads = 4;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      auto c = Client::Connect(a.target);
      if (!c.ok()) Die("connect", c.status());
      for (int s = t; s < sequences; s += threads) {
        for (const auto& k : seq_keys[s]) {
          PutSpec spec;
          spec.ns = ns;
          spec.key = k;
          spec.shape = tiny;
          auto r = (*c)->Put(spec, raw);
          if (!r.ok()) Die("lookup load put", r.status());
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  res.load_s = std::chrono::duration<double>(Clock::now() - t0).count();

  auto c = Client::Connect(a.target);
  if (!c.ok()) Die("connect", c.status());
  std::mt19937_64 rng(7);
  std::vector<double> p50s, p99s, means;
  for (int r = 0; r < a.reps; ++r) {
    std::vector<double> lat;
    lat.reserve(a.lookup_calls);
    for (int i = 0; i < a.lookup_calls; ++i) {
      const auto& keys = seq_keys[rng() % sequences];
      const auto s = Clock::now();
      auto l = (*c)->Lookup(ns, keys);
      lat.push_back(std::chrono::duration<double, std::micro>(Clock::now() - s).count());
      if (!l.ok()) Die("lookup", l.status());
      if (l->prefix_hits != kBatch) Die("lookup", absl::InternalError("expected a full prefix hit"));
    }
    p50s.push_back(Percentile(lat, 0.50));
    p99s.push_back(Percentile(lat, 0.99));
    double sum = 0;
    for (double x : lat) sum += x;
    means.push_back(sum / static_cast<double>(lat.size()));
  }
  res.p50_us = Median(p50s);
  res.p99_us = Median(p99s);
  res.max_p99_us = *std::max_element(p99s.begin(), p99s.end());
  res.mean_us = Median(means);
  return res;
}

}  // namespace
}  // namespace adaptcache::bench

int main(int argc, char** argv) {
  using namespace adaptcache;
  using namespace adaptcache::bench;
  Args a;
  CLI::App app{"kvstore_bench: adaptcached vs Redis throughput, and Lookup latency"};
  app.add_option("--target", a.target, "adaptcached socket")->required();
  app.add_option("--redis-port", a.redis_port, "redis-server TCP port on 127.0.0.1")->required();
  app.add_option("--redis-unix", a.redis_unix, "redis-server unix socket (optional extra rows)");
  app.add_option("--reps", a.reps, "repetitions per figure")->capture_default_str();
  app.add_option("--entries-1m", a.entries_1m, "distinct 1 MiB entries")->capture_default_str();
  app.add_option("--entries-16m", a.entries_16m, "distinct 16 MiB entries")->capture_default_str();
  app.add_option("--lookup-entries", a.lookup_entries, "entries stored for the Lookup test")->capture_default_str();
  app.add_option("--lookup-calls", a.lookup_calls, "Lookup calls per repetition")->capture_default_str();
  app.add_option("--csv", a.csv, "write rows as CSV here");
  app.add_option("--put-frame-kib", a.put_frame_kib, "client Put frame size")->capture_default_str();
  app.add_option("--window-kib", a.window_kib, "client HTTP/2 receive window (0 = gRPC default)");
  app.add_option("--http2-frame-kib", a.frame_kib, "largest HTTP/2 frame the daemon may send (0 = gRPC default)");
  app.add_flag("--skip-lookup", a.skip_lookup, "only the throughput part");
  CLI11_PARSE(app, argc, argv);

  std::vector<Row> rows;
  // 1 MiB and 16 MiB of raw bf16 KV (Llama-3.1-8B geometry: 8 KV heads x 128).
  RunSize(a, "1MiB", KvShape{1, 256, 8, 128, DType::kBF16}, a.entries_1m, &rows);
  RunSize(a, "16MiB", KvShape{16, 256, 8, 128, DType::kBF16}, a.entries_16m, &rows);
  const LookupResult lk = a.skip_lookup ? LookupResult{} : RunLookup(a);

  auto find = [&](const std::string& size, const std::string& op, const std::string& path) {
    for (const auto& r : rows) {
      if (r.size == size && r.op == op && r.path == path) return r.gbps_median;
    }
    return 0.0;
  };
  std::printf("| size | op | path | GB/s (median) | min | max | vs redis tcp |\n");
  std::printf("|---|---|---|---:|---:|---:|---:|\n");
  for (const auto& r : rows) {
    const double base = find(r.size, r.op, "redis tcp");
    std::printf("| %s | %s | %s | %.2f | %.2f | %.2f | %.2fx |\n", r.size.c_str(), r.op.c_str(), r.path.c_str(),
                r.gbps_median, r.gbps_min, r.gbps_max, base > 0 ? r.gbps_median / base : 0);
  }
  std::printf("\nLookup of 64-key batches, %d entries stored (loaded in %.1f s): p50 %.1f us, p99 %.1f us "
              "(worst rep %.1f us), mean %.1f us; %d calls x %d reps\n",
              lk.entries, lk.load_s, lk.p50_us, lk.p99_us, lk.max_p99_us, lk.mean_us, a.lookup_calls, a.reps);
  const double shm16 = find("16MiB", "get", "adaptcache shm"), grpc16 = find("16MiB", "get", "adaptcache grpc"),
               redis16 = find("16MiB", "get", "redis tcp");
  std::printf("\nTargets: shm get >= 5x redis GET at 16 MiB: %.2fx (%s); grpc get >= redis at 16 MiB: %.2fx (%s); "
              "Lookup p99 < 200 us: %.1f us (%s)\n",
              shm16 / redis16, shm16 >= 5 * redis16 ? "met" : "NOT met", grpc16 / redis16,
              grpc16 >= redis16 ? "met" : "NOT met", lk.p99_us, lk.p99_us < 200 ? "met" : "NOT met");
  if (!a.csv.empty()) {
    std::ofstream out(a.csv);
    out << "size,op,path,gbps_median,gbps_min,gbps_max,ratio_vs_redis_tcp\n";
    for (const auto& r : rows) {
      const double base = find(r.size, r.op, "redis tcp");
      out << r.size << "," << r.op << "," << r.path << "," << r.gbps_median << "," << r.gbps_min << "," << r.gbps_max
          << "," << (base > 0 ? r.gbps_median / base : 0) << "\n";
    }
    out << "lookup64,lookup,adaptcache grpc,p50_us=" << lk.p50_us << ",p99_us=" << lk.p99_us
        << ",entries=" << lk.entries << ",\n";
  }
  return 0;
}
