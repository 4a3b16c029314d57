// eval_replay: daemon-replay mode of the evaluation (docs/evaluation.md). For each
// workload and policy it starts a real adaptcached (small DRAM pool, SSD tier in a temp
// directory, --policy <p>), replays a trace through the client library and measures, per
// request: Lookup + GetShm/CopyOut + CPU Decode of the reused prefix (wall clock), plus
// modelled GPU decode (bench/results/cuda_decode.csv, scaled to the entry size) and
// recompute of everything after the first miss (DelayModel per-token prefill time).
// Quality = token-weighted est_quality_loss the daemon reports for the entries served.
// Entries are scaled down ([layers][chunk_tokens][kv_heads][head_dim] bf16) to fit a
// small machine; the data is the synthetic KV of bench/eval/profile.h.
// The "oracle" is the same daemon with a pool holding everything and no policy (raw).
//
// Full-scale delay: a replay entry stands for a real chunk S = 128 KiB x chunk_tokens /
// entry bytes times larger (Llama-3.1-8B bf16). The daemons plan with their delay
// model's bandwidths and decode speeds divided by S (so they weigh DRAM against SSD and
// compression as they would at full size), and each request also gets a modelled
// full-scale delay: DelayModel (measured H100 decode speeds) applied to the tier, codec
// and S x stored bytes of every entry the daemon actually served, plus recompute. That
// figure is free of this machine's load; the curves (--points-csv) use it.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/eval/profile.h"
#include "bench/eval/sim.h"
#include "bench/eval/trace.h"
#include "client/client.h"
#include "client/npy.h"
#include "httplib.h"
#include "kernels/codec.h"
#include "policy/delay_model.h"

namespace adaptcache::eval {
namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  std::string daemon = "build/bin/adaptcached";
  std::vector<Workload> workloads = {Workload::kChat, Workload::kDocQa, Workload::kCode};
  std::vector<std::string> policies = {"oracle", "lru-raw", "static:fp8", "static:quant-k4v4-g64",
                                       "static:quant-k2v2-g64", "greedy-downgrade", "adaptive",
                                       "adaptive@0.0001"};
  std::string configs = "fp8,quant-k8v8-g128,quant-k4v4-g64,quant-k2v2-g64,drop-50+quant-k4v4-g64";
  uint32_t requests = 300;
  double warmup = 0.3;  // share of requests replayed before measuring
  double scale = 0.1;   // trace population scale
  // chunk_tokens >= 128: the chat generator's tail draw Range(512, 6 * chunk_tokens) is
  // inverted below ~86 tokens and yields millions of chunks (bench/eval/trace.cc).
  uint32_t layers = 2, chunk_tokens = 128, kv_heads = 2, head_dim = 64;
  std::vector<double> dram_fracs = {0.15};  // DRAM pool / distinct chunk bytes of the trace
  std::vector<double> sweep_alphas;  // expand "adaptive" and "greedy-downgrade" into @alpha runs
  std::string points_csv;            // eval_points.csv-format rows (mode "replay")
  std::vector<std::string> daemon_flags;  // passed to every policy daemon (not the oracle)
  std::string real_kv;  // directory of kv_*.npy real KV samples to use instead of synthetic KV
  uint64_t real_bytes_per_token = 131072;
  double ssd_frac = 0.35;   // SSD tier (4 MiB segments, at least 3) / distinct chunk bytes
  double alpha = 0.01;
  uint32_t interval_ms = 200;
  uint32_t settle_ms = 1500;  // after warm-up, for the mover to act
  std::string cuda_csv = "bench/results/cuda_decode.csv";
  std::string out_csv = "bench/results/eval_daemon.csv";
  std::string calibration;
  // > 0: send request i at trace time_s / speedup (after warm-up), giving the mover the
  // trace's pace; 0: back to back.
  double speedup = 0;
  std::string log_level = "warn";
  std::string keep_logs;  // directory: copy each daemon's log there as <workload>-<policy>.log
};

class Daemon {
 public:
  explicit Daemon(std::string log_level) : log_level_(std::move(log_level)) {}
  ~Daemon() { Stop(); }
  absl::Status Start(const std::string& bin, uint64_t pool_bytes, uint32_t ssd_segments,
                     std::vector<std::string> extra) {
    char shm[] = "/dev/shm/ac-evalreplay-XXXXXX";
    char ssd[] = "/var/tmp/ac-evalreplay-ssd-XXXXXX";
    if (!::mkdtemp(shm) || !::mkdtemp(ssd)) return absl::InternalError("mkdtemp failed");
    shm_ = shm; ssd_ = ssd;
    const std::string ready = shm_ + "/ready", log = shm_ + "/log";
    std::vector<std::string> a = {bin, "--socket", shm_ + "/sock", "--metrics-listen", "127.0.0.1:0",
                                  "--pool-size", std::to_string(pool_bytes), "--shm-dir", shm_,
                                  "--pool-name", "evalreplay", "--ready-file", ready, "--log-level", log_level_,
                                  "--ssd-dir", ssd_, "--ssd-segment-bytes", "4MiB",
                                  "--ssd-segment-count", std::to_string(ssd_segments)};
    for (auto& e : extra) a.push_back(e);
    pid_ = ::fork();
    if (pid_ < 0) return absl::InternalError("fork failed");
    if (pid_ == 0) {
      FILE* f = std::fopen(log.c_str(), "a");
      if (f) { ::dup2(fileno(f), 1); ::dup2(fileno(f), 2); }
      std::vector<char*> argv;
      for (auto& s : a) argv.push_back(s.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    const auto deadline = Clock::now() + std::chrono::seconds(30);
    while (Clock::now() < deadline) {
      int st;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return absl::InternalError(absl::StrCat("daemon exited at start: ", Log()));
      }
      if (std::filesystem::exists(ready)) {
        auto c = client::Client::Connect("unix://" + shm_ + "/sock");
        if (c.ok()) { client_ = std::move(*c); return absl::OkStatus(); }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return absl::DeadlineExceededError(absl::StrCat("daemon not ready: ", Log()));
  }
  std::string Log() const {
    std::ifstream in(shm_ + "/log");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  // False when the daemon died on its own.
  bool Alive() { int st; return pid_ > 0 && ::waitpid(pid_, &st, WNOHANG) == 0; }
  void Stop() {
    client_.reset();
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int st;
      ::waitpid(pid_, &st, 0);
      pid_ = -1;
    }
    std::error_code ec;
    if (!shm_.empty()) std::filesystem::remove_all(shm_, ec);
    if (!ssd_.empty()) std::filesystem::remove_all(ssd_, ec);
    shm_.clear(); ssd_.clear();
  }
  client::Client* client() { return client_.get(); }
  // The daemon's mover counters (/metrics lines adaptcache_mover_{plans,moves,
  // quality_estimates}_total with a non-zero value), joined by ';'.
  std::string MoverCounters() const {
    std::ifstream in(shm_ + "/ready");
    std::string line;
    int port = 0;
    while (std::getline(in, line)) {
      if (absl::StartsWith(line, "metrics_port=") && !absl::SimpleAtoi(line.substr(13), &port)) port = 0;
    }
    if (port == 0) return "no metrics port";
    httplib::Client http("127.0.0.1", port);
    auto res = http.Get("/metrics");
    if (!res || res->status != 200) return "metrics unavailable";
    std::string out;
    std::istringstream body(res->body);
    while (std::getline(body, line)) {
      if (!absl::StartsWith(line, "adaptcache_mover_plans_total") &&
          !absl::StartsWith(line, "adaptcache_mover_moves_total") &&
          !absl::StartsWith(line, "adaptcache_mover_quality_estimates_total") &&
          !absl::StartsWith(line, "adaptcache_mover_admissions_total")) {
        continue;
      }
      const auto sp = line.rfind(' ');
      double v = 0;
      if (sp == std::string::npos || !absl::SimpleAtod(line.substr(sp + 1), &v) || v == 0) continue;
      std::string name = line.substr(std::string("adaptcache_mover_").size());
      for (char& ch : name) if (ch == ',' || ch == '"') ch = ch == ',' ? '/' : '\'';
      if (!out.empty()) out += ';';
      out += name;
    }
    return out.empty() ? "none" : out;
  }

 private:
  std::string log_level_;
  pid_t pid_ = -1;
  std::string shm_, ssd_;
  std::unique_ptr<client::Client> client_;
};

struct Row {
  std::string workload, policy;
  uint32_t measured = 0;
  double med_delay = 0, mean_delay = 0, med_fetch = 0, mean_fetch = 0, mean_gpu = 0, mean_recompute = 0,
         mean_cold = 0, mean_loss = 0;
  double hit_share = 0, dram_share = 0, ssd_share = 0, get_fail_share = 0;
  double mean_modelled = 0;  // full-scale modelled delay (see the top of the file)
  uint64_t reads = 0, put_errors = 0, bad_bytes = 0;
  std::string mover;  // mover counters at the end of the run
};

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

Key128 KeyOf(uint64_t id) { return Key128{id * 0x9E3779B97F4A7C15ull + 1, id}; }

// The daemon's delay-model flags at 1/S scale (see the top of the file); the decode
// speeds go through a scaled copy of the CUDA CSV written to `dir`.
std::vector<std::string> ScaledDelayFlags(const std::map<std::string, double>& cuda, double S,
                                          const std::string& dir) {
  const policy::DelayModelOptions d;
  std::vector<std::string> f = {"--policy-dram-gbps", absl::StrCat(d.dram.bandwidth_Bps / 1e9 / S),
                                "--policy-ssd-gbps", absl::StrCat(d.ssd.bandwidth_Bps / 1e9 / S)};
  if (cuda.empty()) return f;
  const std::string path = dir + "/decode_scaled.csv";
  std::ofstream out(path);
  out << "config,ratio,decode_ms,decode_gbs\n";
  for (const auto& [name, gbs] : cuda) out << name << ",0,0," << gbs / S << "\n";
  f.push_back("--policy-decode-csv");
  f.push_back(std::filesystem::absolute(path).string());
  return f;
}

absl::StatusOr<Row> RunOne(const Args& a, const Trace& trace, const std::string& policy, uint64_t pool,
                           uint32_t ssd_segments,
                           const KvShape& shape, const std::vector<std::vector<std::byte>>& tmpl,
                           const std::map<std::string, double>& cuda, const policy::DelayModel& dm,
                           const policy::DelayModel& full, double S) {
  Daemon d(a.log_level);
  std::vector<std::string> extra;
  char tmpdir[] = "/tmp/ac-evalreplay-cfg-XXXXXX";
  if (!::mkdtemp(tmpdir)) return absl::InternalError("mkdtemp failed");
  struct Cleanup {
    std::string dir;
    ~Cleanup() { std::error_code ec; std::filesystem::remove_all(dir, ec); }
  } cleanup{tmpdir};
  if (policy != "oracle") {
    // "<policy>@<alpha>" overrides --alpha for that run.
    const auto at = policy.find('@');
    extra = {"--policy", policy.substr(0, at), "--policy-interval-ms", std::to_string(a.interval_ms),
             "--policy-alpha", at == std::string::npos ? absl::StrCat(a.alpha) : policy.substr(at + 1)};
    std::string cfgs = a.configs;
    if (policy.rfind("static:", 0) == 0 && cfgs.find(policy.substr(7)) == std::string::npos) {
      cfgs += "," + policy.substr(7);
    }
    extra.push_back("--policy-configs");
    extra.push_back(cfgs);
    if (!a.calibration.empty()) { extra.push_back("--policy-calibration"); extra.push_back(a.calibration); }
    for (auto& f : ScaledDelayFlags(cuda, S, tmpdir)) extra.push_back(f);
    for (auto& f : a.daemon_flags) extra.push_back(f);
  }
  if (auto st = d.Start(a.daemon, pool, ssd_segments, extra); !st.ok()) return st;
  client::Client* c = d.client();
  const std::string ns = "eval";
  Row row;
  row.workload = WorkloadName(trace.workload);
  row.policy = policy;
  const size_t warm = static_cast<size_t>(trace.requests.size() * a.warmup);
  std::set<uint64_t> seen;
  std::vector<double> delays, fetches, gpu, rec, cold, loss, modelled;
  uint64_t ssd_hits = 0;
  uint64_t hits = 0, dram_hits = 0, get_fail = 0;
  std::vector<std::byte> container(shape.Bytes() + (1 << 20)), decoded(shape.Bytes());
  Clock::time_point base;  // pacing origin: the first measured request
  double base_t = 0;
  for (size_t ri = 0; ri < trace.requests.size(); ++ri) {
    if (ri == warm && a.settle_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(a.settle_ms));
    const TraceRequest& r = trace.requests[ri];
    if (a.speedup > 0 && ri >= warm) {
      if (ri == warm) base = Clock::now(), base_t = r.time_s;
      std::this_thread::sleep_until(base + std::chrono::duration_cast<Clock::duration>(
                                               std::chrono::duration<double>((r.time_s - base_t) / a.speedup)));
    }
    std::vector<Key128> keys;
    for (const auto& ch : r.context) keys.push_back(KeyOf(ch.id));
    const auto t0 = Clock::now();
    double gpu_s = 0, loss_tok = 0, tok = 0, model_s = 0;
    size_t served = 0;
    uint64_t req_dram = 0;
    std::vector<bool> stored(keys.size(), false);  // as Lookup reported, minus failed Gets
    if (!keys.empty()) {
      auto lr = c->Lookup(ns, keys);
      if (!lr.ok()) return absl::InternalError(absl::StrCat("Lookup: ", lr.status().ToString(), "\n", d.Log()));
      for (size_t i = 0; i < keys.size() && i < lr->entries.size(); ++i) stored[i] = lr->entries[i].hit();
      for (; served < lr->prefix_hits; ++served) {
        auto le = c->GetShm(ns, keys[served]);
        // Moved or evicted since Lookup: a miss from here on.
        if (!le.ok()) { ++get_fail; stored[served] = false; break; }
        auto n = le->CopyOut(container);
        if (!n.ok()) { ++get_fail; stored[served] = false; break; }
        const client::EntryInfo info = le->info();
        le->Release();
        auto bad = [&](const std::string& why) {
          if (row.bad_bytes++ < 5) {
            std::fprintf(stderr, "BAD entry %lu (codec %s, tier %d, %zu bytes): %s\n",
                         static_cast<unsigned long>(r.context[served].id), info.codec.c_str(),
                         static_cast<int>(info.tier), static_cast<size_t>(*n), why.c_str());
          }
        };
        if (auto st = Decode(std::span<const std::byte>(container.data(), *n), decoded); !st.ok()) {
          bad("decode: " + st.ToString());
          break;
        }
        if (info.raw_bytes != shape.Bytes()) { bad("raw_bytes " + std::to_string(info.raw_bytes)); break; }
        // Lossless entries must decode to exactly the bytes put.
        if (info.codec == "raw" &&
            !std::equal(decoded.begin(), decoded.end(), tmpl[TemplateOf(r.context[served].id, tmpl.size())].begin())) {
          bad("raw bytes differ from what was put");
          break;
        }
        if (info.tier == client::Tier::kDram) ++req_dram;
        {
          const auto fam = ParseCodecConfig(info.codec).value_or(CodecConfig{}).family;
          model_s += full.Delay(info.tier == client::Tier::kDram ? Tier::kDram : Tier::kSsd, fam,
                                static_cast<uint64_t>(static_cast<double>(*n) * S),
                                static_cast<uint64_t>(static_cast<double>(info.raw_bytes) * S));
        }
        if (info.codec != "raw") {
          auto it = cuda.find(info.codec);
          const double gbs = it != cuda.end() ? it->second * 1e9
                                              : dm.options().decode_Bps[static_cast<int>(
                                                    ParseCodecConfig(info.codec).value_or(CodecConfig{}).family)];
          gpu_s += dm.options().decode_launch_s + (gbs > 0 ? info.raw_bytes / gbs : 0);
        }
        loss_tok += info.est_quality_loss * r.context[served].tokens;
      }
    }
    const double fetch_s = std::chrono::duration<double>(Clock::now() - t0).count();
    double rec_s = 0, cold_s = 0;
    for (size_t i = 0; i < r.context.size(); ++i) {
      tok += r.context[i].tokens;
      if (i < served) continue;
      (seen.count(r.context[i].id) ? rec_s : cold_s) += dm.MissCost(r.context[i].tokens, 0);
    }
    // Store what was recomputed plus the request's own chunks (raw; the policy decides).
    std::vector<TraceChunk> to_put;
    for (size_t i = served; i < r.context.size(); ++i) {
      if (!stored[i]) to_put.push_back(r.context[i]);
    }
    to_put.insert(to_put.end(), r.puts.begin(), r.puts.end());
    for (const auto& ch : to_put) {
      client::PutSpec spec;
      spec.ns = ns;
      spec.key = KeyOf(ch.id);
      spec.shape = shape;
      auto p = c->Put(spec, tmpl[TemplateOf(ch.id, tmpl.size())]);
      if (!p.ok()) ++row.put_errors;
    }
    for (const auto& ch : r.context) seen.insert(ch.id);
    for (const auto& ch : r.puts) seen.insert(ch.id);
    if (ri < warm) continue;
    row.reads += r.context.size();
    hits += served;
    dram_hits += req_dram;
    ssd_hits += served - req_dram;
    delays.push_back(fetch_s + gpu_s + rec_s);
    modelled.push_back(model_s + rec_s);
    fetches.push_back(fetch_s);
    gpu.push_back(gpu_s);
    rec.push_back(rec_s);
    cold.push_back(cold_s);
    loss.push_back(tok > 0 ? loss_tok / tok : 0);
  }
  if (!d.Alive()) return absl::InternalError(absl::StrCat("daemon died during replay:\n", d.Log()));
  row.mover = policy == "oracle" ? "no policy" : d.MoverCounters();
  if (!a.keep_logs.empty()) {
    std::string name = absl::StrCat(a.keep_logs, "/", row.workload, "-", policy, ".log");
    for (size_t i = a.keep_logs.size() + 1; i < name.size(); ++i) if (name[i] == ':' || name[i] == '/') name[i] = '_';
    std::ofstream(name) << d.Log();
  }
  auto mean = [](const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return v.empty() ? 0 : s / v.size();
  };
  row.measured = delays.size();
  row.med_delay = Median(delays);
  row.mean_delay = mean(delays);
  row.med_fetch = Median(fetches);
  row.mean_fetch = mean(fetches);
  row.mean_gpu = mean(gpu);
  row.mean_recompute = mean(rec);
  row.mean_cold = mean(cold);
  row.mean_loss = mean(loss);
  row.mean_modelled = mean(modelled);
  row.ssd_share = row.reads ? double(ssd_hits) / row.reads : 0;
  row.hit_share = row.reads ? double(hits) / row.reads : 0;
  row.dram_share = row.reads ? double(dram_hits) / row.reads : 0;
  row.get_fail_share = row.reads ? double(get_fail) / row.reads : 0;
  return row;
}

int Usage() {
  std::fprintf(stderr,
               "usage: eval_replay [--daemon BIN] [--workloads chat,docqa,code] [--policies p,p]\n"
               "  [--requests N] [--scale S] [--dram-fracs F,F] [--ssd-frac F] [--alpha A] [--interval-ms N] [--settle-ms N]\n"
               "  [--sweep-alphas A,A (run adaptive and greedy-downgrade at each alpha)] [--points-csv FILE]\n"
               "  [--daemon-flags 'FLAGS' (extra adaptcached flags for every policy run)]\n"
               "  [--real-kv DIR (kv_*.npy real KV samples, e.g. tests/data, as the chunks' tensors)]\n"
               "  [--cuda-csv FILE] [--calibration FILE] [--out-csv FILE] [--log-level L] [--keep-logs DIR]\n"
               "  [--speedup X (pace requests at trace time / X after warm-up; 0 = back to back)]\n");
  return 2;
}

int Main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) return Usage();
    const std::string v = argv[++i];
    bool ok = true;
    if (k == "--daemon") a.daemon = v;
    else if (k == "--workloads") {
      a.workloads.clear();
      for (absl::string_view w : absl::StrSplit(v, ',')) {
        auto p = ParseWorkload(std::string(w));
        if (!p.ok()) return Usage();
        a.workloads.push_back(*p);
      }
    } else if (k == "--policies") {
      std::vector<std::string> ps = absl::StrSplit(v, ',');
      for (const std::string& q : ps) {  // "<policy>@<alpha>": the alpha must be a number >= 0
        const auto at = q.find('@');
        double al = 0;
        if (at != std::string::npos && !(absl::SimpleAtod(q.substr(at + 1), &al) && al >= 0)) ok = false;
      }
      a.policies = std::move(ps);
    }
    else if (k == "--requests") ok = absl::SimpleAtoi(v, &a.requests) && a.requests > 0;
    else if (k == "--scale") ok = absl::SimpleAtod(v, &a.scale) && a.scale > 0;
    else if (k == "--dram-frac" || k == "--dram-fracs") ok = ParsePositiveList(v, &a.dram_fracs);
    else if (k == "--sweep-alphas") ok = ParsePositiveList(v, &a.sweep_alphas);
    else if (k == "--points-csv") a.points_csv = v;
    else if (k == "--real-kv") a.real_kv = v;
    else if (k == "--daemon-flags") a.daemon_flags = absl::StrSplit(v, ' ', absl::SkipEmpty());
    else if (k == "--ssd-frac") ok = absl::SimpleAtod(v, &a.ssd_frac) && a.ssd_frac > 0;
    else if (k == "--alpha") ok = absl::SimpleAtod(v, &a.alpha) && a.alpha > 0;
    else if (k == "--interval-ms") ok = absl::SimpleAtoi(v, &a.interval_ms) && a.interval_ms > 0;
    else if (k == "--settle-ms") ok = absl::SimpleAtoi(v, &a.settle_ms);
    else if (k == "--cuda-csv") a.cuda_csv = v;
    else if (k == "--calibration") a.calibration = v;
    else if (k == "--out-csv") a.out_csv = v;
    else if (k == "--log-level") a.log_level = v;
    else if (k == "--speedup") ok = absl::SimpleAtod(v, &a.speedup) && a.speedup >= 0;
    else if (k == "--keep-logs") a.keep_logs = v;
    else return Usage();
    if (!ok) { std::fprintf(stderr, "bad value for %s: %s\n", k.c_str(), v.c_str()); return 2; }
  }
  KvShape shape{a.layers, a.chunk_tokens, a.kv_heads, a.head_dim, DType::kBF16};
  std::vector<std::vector<std::byte>> tmpl;
  if (a.real_kv.empty()) {
    for (uint32_t t = 0; t < 8; ++t) tmpl.push_back(SyntheticKv(shape, t, 7));
  } else {
    // Real KV caches ([2][layers][tokens][heads][dim] f16 .npy, e.g. tests/data/kv_*.npy)
    // as the templates: every chunk's tensor is one of them.
    std::vector<std::filesystem::path> files;
    for (const auto& e : std::filesystem::directory_iterator(a.real_kv)) {
      const std::string n = e.path().filename().string();
      if (absl::StartsWith(n, "kv_") && absl::EndsWith(n, ".npy")) files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      auto t = client::ReadNpy(f.string());
      if (!t.ok()) { std::fprintf(stderr, "%s: %s\n", f.c_str(), t.status().ToString().c_str()); return 1; }
      if (t->type != client::ElemType::kF16 || t->shape.size() != 5 || t->shape[0] != 2) {
        std::fprintf(stderr, "%s: want a [2][layers][tokens][heads][dim] f16 array\n", f.c_str());
        return 1;
      }
      const KvShape s{static_cast<uint32_t>(t->shape[1]), static_cast<uint32_t>(t->shape[2]),
                      static_cast<uint32_t>(t->shape[3]), static_cast<uint32_t>(t->shape[4]), DType::kFP16};
      if (!tmpl.empty() && !(s == shape)) { std::fprintf(stderr, "%s: shape differs\n", f.c_str()); return 1; }
      shape = s;
      tmpl.push_back(std::move(t->data));
    }
    if (tmpl.empty()) { std::fprintf(stderr, "no kv_*.npy in %s\n", a.real_kv.c_str()); return 1; }
    a.chunk_tokens = shape.tokens;  // one chunk per sample
    std::fprintf(stderr, "real KV: %zu samples of [2][%u][%u][%u][%u] f16 (%.0f KiB)\n", tmpl.size(), shape.layers,
                 shape.tokens, shape.kv_heads, shape.head_dim, shape.Bytes() / 1024.0);
  }
  const auto cuda = policy::ReadDecodeCsv(a.cuda_csv).value_or(std::map<std::string, double>{});
  const policy::DelayModel dm;
  // Full scale: the default delay model with the measured H100 decode speeds.
  policy::DelayModelOptions fo;
  {
    const auto fam = policy::FamilyDecodeBps(cuda);
    for (size_t f = 1; f < fam.size(); ++f) {
      if (fam[f] > 0) fo.decode_Bps[f] = fam[f];
    }
  }
  const policy::DelayModel full = *policy::DelayModel::Create(fo);
  const double S = static_cast<double>(a.real_bytes_per_token) * a.chunk_tokens / static_cast<double>(shape.Bytes());
  std::ofstream csv(a.out_csv);
  csv << "workload,dram_frac,policy,requests_measured,median_delay_ms,mean_delay_ms,median_fetch_ms,mean_fetch_ms,"
         "mean_gpu_decode_ms,mean_recompute_ms,mean_cold_ms,modelled_delay_ms,mean_quality_loss,hit_share,"
         "dram_hit_share,get_after_lookup_miss_share,put_errors,bad_bytes,pool_bytes,entry_bytes,cuda_csv,"
         "mover_counters\n";
  std::ofstream points;
  if (!a.points_csv.empty()) {
    points.open(a.points_csv);
    points << "mode,workload,dram_frac,dram_gib,ssd_gib,policy,kind,alpha,mean_delay_ms,delay_x_oracle,mean_loss,"
              "dram_hit,ssd_hit,miss,cold_ms,measured_delay_ms,measured_x_oracle\n";
  }
  // The runs: the oracle once per workload, then every other policy per DRAM size, with
  // adaptive and greedy-downgrade expanded over --sweep-alphas.
  std::vector<std::string> runs;
  for (const std::string& p : a.policies) {
    if (p == "oracle") continue;
    if (!a.sweep_alphas.empty() && (p == "adaptive" || p == "greedy-downgrade")) {
      for (double al : a.sweep_alphas) runs.push_back(absl::StrCat(p, "@", al));
    } else {
      runs.push_back(p);
    }
  }
  const bool with_oracle = std::find(a.policies.begin(), a.policies.end(), "oracle") != a.policies.end();
  int failures = 0;
  for (Workload w : a.workloads) {
    TraceOptions to;
    to.workload = w;
    to.requests = a.requests;
    to.chunk_tokens = a.chunk_tokens;
    to.scale = a.scale;
    auto trace = GenerateTrace(to);
    if (!trace.ok()) { std::fprintf(stderr, "%s\n", trace.status().ToString().c_str()); return 1; }
    const TraceSummary sum = Summarize(*trace);
    const uint64_t working = sum.distinct_chunks * shape.Bytes();
    if (working > (4ull << 30)) {
      std::fprintf(stderr, "%s: %lu distinct chunks (%.0f MiB) is too large for a replay\n", WorkloadName(w),
                   (unsigned long)sum.distinct_chunks, working / 1048576.0);
      return 1;
    }
    const uint32_t ssd_segments =
        std::max<uint32_t>(3, static_cast<uint32_t>(working * a.ssd_frac / (4 << 20) + 0.5));
    std::fprintf(stderr, "%s: %lu requests, %lu distinct chunks (%.1f MiB raw, x%.0f at full scale), SSD %u x 4 MiB\n",
                 WorkloadName(w), (unsigned long)sum.requests, (unsigned long)sum.distinct_chunks,
                 working / 1048576.0, S, ssd_segments);
    double oracle_model = 0, oracle_measured = 0;
    auto one = [&](const std::string& p, double want_frac) {
      // The daemon's smallest pool is 4 MiB: small traces get more than asked, and the
      // fraction reported is the one used.
      const uint64_t pb = p == "oracle" ? working * 2 + (16ull << 20)
                                        : std::max<uint64_t>(static_cast<uint64_t>(working * want_frac), 4ull << 20);
      const double frac = p == "oracle" ? 0.0 : std::round(1000.0 * pb / working) / 1000.0;
      const auto t0 = Clock::now();
      auto row = RunOne(a, *trace, p, pb, p == "oracle" ? 3 : ssd_segments, shape, tmpl, cuda, dm, full, S);
      if (!row.ok()) {
        std::fprintf(stderr, "%s %s FAILED: %s\n", WorkloadName(w), p.c_str(), row.status().ToString().c_str());
        ++failures;
        return;
      }
      if (p == "oracle") oracle_model = row->mean_modelled, oracle_measured = row->mean_delay;
      std::fprintf(stderr, "  dram %.2f %-24s modelled %.3f ms  measured mean %.3f ms  loss %.4f  hit %.2f  (%.1f s)\n",
                   frac, p.c_str(), row->mean_modelled * 1e3, row->mean_delay * 1e3, row->mean_loss, row->hit_share,
                   std::chrono::duration<double>(Clock::now() - t0).count());
      csv << row->workload << ',' << frac << ',' << row->policy << ',' << row->measured << ','
          << row->med_delay * 1e3 << ',' << row->mean_delay * 1e3 << ',' << row->med_fetch * 1e3 << ','
          << row->mean_fetch * 1e3 << ',' << row->mean_gpu * 1e3 << ',' << row->mean_recompute * 1e3 << ','
          << row->mean_cold * 1e3 << ',' << row->mean_modelled * 1e3 << ',' << row->mean_loss << ','
          << row->hit_share << ',' << row->dram_share << ',' << row->get_fail_share << ',' << row->put_errors
          << ',' << row->bad_bytes << ',' << pb << ',' << shape.Bytes() << ',' << (cuda.empty() ? "absent" : "used")
          << ',' << row->mover << '\n';
      csv.flush();
      if (points.is_open()) {
        const auto at = p.find('@');
        const std::string base = p.substr(0, at);
        const std::string kind = base == "oracle"             ? "oracle"
                                 : base == "lru-raw"          ? "lru"
                                 : base == "greedy-downgrade" ? "greedy"
                                 : base == "adaptive"         ? "adaptive"
                                                              : "static";
        std::string name = base == "adaptive" ? "adaptcache" : base;
        if (kind == "static") name = "static-" + base.substr(7);
        double alpha = a.alpha;
        if (at != std::string::npos) (void)absl::SimpleAtod(p.substr(at + 1), &alpha);  // checked at parse
        points << (a.real_kv.empty() ? "replay," : "replay-realkv,") << row->workload << ',' << frac << ',' << pb * S / 1073741824.0 << ','
               << ssd_segments * (4.0 * S / 1024) << ',' << name << ',' << kind << ',' << alpha << ','
               << row->mean_modelled * 1e3 << ','
               << (oracle_model > 0 ? row->mean_modelled / oracle_model : 0) << ',' << row->mean_loss << ','
               << row->dram_share << ',' << row->ssd_share << ',' << 1 - row->hit_share << ','
               << row->mean_cold * 1e3 << ',' << row->mean_delay * 1e3 << ','
               << (oracle_measured > 0 ? row->mean_delay / oracle_measured : 0) << '\n';
        points.flush();
      }
      std::fprintf(stderr, "    mover: %s\n", row->mover.c_str());
    };
    if (with_oracle) one("oracle", 0);
    for (double frac : a.dram_fracs) {
      for (const std::string& p : runs) one(p, frac);
    }
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace adaptcache::eval

int main(int argc, char** argv) { return adaptcache::eval::Main(argc, argv); }
