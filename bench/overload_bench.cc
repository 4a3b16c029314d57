// Overload: many concurrent clients against a real adaptcached on loopback (its Unix
// socket), some of them hostile. The daemon is started by this program on its embedded
// defaults (plus a private socket, pool file and no SSD tier), so what is measured is what
// a user gets.
//
// Hostile clients, each on a connection of its own, repeat until the run ends:
//   - stalled Put: a header and one 64 KiB data frame, then nothing;
//   - non-reading Get: a streamed Get of an 8 MiB entry whose frames are never read;
//   - header-only Put: the header of a 128 MiB entry, then nothing.
// A refused or cancelled hostile client reconnects after 10 ms.
//
// Well-behaved clients (the rest), started together once the hostile ones hold the
// daemon: Connect (Health), Put a 256 KiB entry, Lookup it, Get it back streamed and
// compare the bytes; each has `--deadline-s` from its start, and the C++ client's
// overload retries (backoff with jitter) inside it.
//
// Measured at the same time: Health latency from a prober process of its own (one call
// every 5 ms, 1 s deadline, no retries: a refusal or timeout counts as a failure), the daemon's RSS (VmRSS, and its
// anonymous part: staging and heap; the pool is shared memory, RssShmem) every 50 ms, and
// whether anything was evicted: 512 MiB of sentinel entries sit in a pool with room for
// them and every good Put, so any eviction or missing sentinel is an unfinished Put's doing.
//
// Prints a markdown table; --csv appends one row per run.
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "adaptcache/v1/cache.grpc.pb.h"
#include "client/client.h"

namespace {

namespace v1 = adaptcache::v1;
using adaptcache::DType;
using adaptcache::Key128;
using adaptcache::KvShape;
using Clock = std::chrono::steady_clock;

struct Args {
  std::string daemon = "build/bin/adaptcached";
  int clients = 1000;
  int misbehaving = 100;
  int deadline_s = 60;
  int runs = 3;
  uint32_t seed = 1;
  std::string csv;
  bool split_cpus = true;  // daemon on the first half of the CPUs, clients on the rest
  std::vector<std::string> daemon_args;  // after "--"
};

void Usage() {
  std::puts(
      "usage: overload_bench [--daemon PATH] [--clients N] [--misbehaving M] [--deadline-s S]\n"
      "                      [--runs R] [--seed S] [--csv FILE] [--split-cpus 1|0]\n"
      "                      [-- extra adaptcached flags]\n"
      "Starts adaptcached (defaults: build/bin/adaptcached, 1000 clients of which 100 hostile,\n"
      "60 s deadline per good client, 3 runs) and prints one table row per run. With\n"
      "--split-cpus 1 (default) the daemon runs on the first half of the CPUs and the\n"
      "clients on the other half, as a sidecar next to its engine would.");
}

bool ParseArgs(int argc, char** argv, Args* a) {
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (k == "--") {
      for (++i; i < argc; ++i) a->daemon_args.push_back(argv[i]);
      break;
    }
    if (k == "-h" || k == "--help") {
      Usage();
      std::exit(0);
    }
    if (i + 1 >= argc) return false;
    std::string v = argv[++i];
    if (k == "--daemon") a->daemon = v;
    else if (k == "--clients") a->clients = std::stoi(v);
    else if (k == "--misbehaving") a->misbehaving = std::stoi(v);
    else if (k == "--deadline-s") a->deadline_s = std::stoi(v);
    else if (k == "--runs") a->runs = std::stoi(v);
    else if (k == "--seed") a->seed = static_cast<uint32_t>(std::stoul(v));
    else if (k == "--csv") a->csv = v;
    else if (k == "--split-cpus") a->split_cpus = v != "0" && v != "false";
    else return false;
  }
  return a->clients > a->misbehaving && a->misbehaving >= 0 && a->runs > 0 && a->deadline_s > 0;
}

// The daemon under test, in a private directory under /dev/shm.
class Daemon {
 public:
  explicit Daemon(std::vector<int> cpus) : daemon_cpus_(std::move(cpus)) {}
  ~Daemon() { Stop(); }
  std::string Start(const Args& a) {
    char tmpl[] = "/dev/shm/ac-overload-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) return "mkdtemp failed";
    dir_ = tmpl;
    std::vector<std::string> args = {a.daemon, "--socket", socket(), "--shm-dir", dir_, "--pool-size", "2GiB",
                                     "--ssd-enabled", "false", "--metrics-listen", "", "--ready-file",
                                     dir_ + "/ready", "--log-level", "warn"};
    for (const auto& x : a.daemon_args) args.push_back(x);
    pid_ = ::fork();
    if (pid_ == 0) {
      if (!daemon_cpus_.empty()) {
        cpu_set_t set;
        CPU_ZERO(&set);
        for (int c : daemon_cpus_) CPU_SET(c, &set);
        ::sched_setaffinity(0, sizeof(set), &set);
      }
      const int log = ::open((dir_ + "/log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      if (log >= 0) {
        ::dup2(log, 1);
        ::dup2(log, 2);
      }
      std::vector<char*> argv;
      for (auto& s : args) argv.push_back(s.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    for (int i = 0; i < 600; ++i) {
      if (std::filesystem::exists(dir_ + "/ready")) return "";
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return "adaptcached exited at start; log:\n" + Log();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return "adaptcached wrote no ready file in 30 s; log:\n" + Log();
  }
  void Stop() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);  // nothing to flush: no SSD tier; the pool file goes with the dir
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
      dir_.clear();
    }
  }
  std::string socket() const { return dir_ + "/s.sock"; }
  const std::string& dir() const { return dir_; }
  std::string target() const { return "unix:" + socket(); }
  pid_t pid() const { return pid_; }
  std::string Log() const {
    std::ifstream f(dir_ + "/log");
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }

 private:
  std::vector<int> daemon_cpus_;
  std::string dir_;
  pid_t pid_ = -1;
};

// The CPUs this process may use, split in two halves (daemon, clients); empty when
// there are fewer than two.
std::pair<std::vector<int>, std::vector<int>> SplitCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) != 0) return {};
  std::vector<int> all;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) all.push_back(c);
  }
  if (all.size() < 2) return {};
  const size_t half = all.size() / 2;
  return {std::vector<int>(all.begin(), all.begin() + half), std::vector<int>(all.begin() + half, all.end())};
}

// kB of "VmRSS" and "RssAnon" from /proc/<pid>/status.
std::pair<uint64_t, uint64_t> ReadRss(pid_t pid) {
  std::ifstream f(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  uint64_t rss = 0, anon = 0;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) rss = std::strtoull(line.c_str() + 6, nullptr, 10);
    if (line.rfind("RssAnon:", 0) == 0) anon = std::strtoull(line.c_str() + 8, nullptr, 10);
  }
  return {rss, anon};
}

std::unique_ptr<v1::AdaptCache::Stub> OwnStub(const std::string& target) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetMaxReceiveMessageSize(-1);
  return v1::AdaptCache::NewStub(grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args));
}

void FillShape(const KvShape& s, v1::KvShape* p) {
  p->set_layers(s.layers);
  p->set_tokens(s.tokens);
  p->set_kv_heads(s.kv_heads);
  p->set_head_dim(s.head_dim);
  p->set_dtype(v1::DTYPE_BF16);
}

std::string KeyBytes(const Key128& k) { return k.ToBytes(); }

// One hostile client; runs until `stop`. Counts its attempts.
void Hostile(int kind, int id, const std::string& target, const Key128& big_key, const std::atomic<bool>& stop,
             std::atomic<uint64_t>* attempts) {
  auto stub = OwnStub(target);
  while (!stop.load()) {
    attempts->fetch_add(1);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(300));
    std::atomic<bool> done{false};
    std::thread canceller([&] {  // ends the attempt when the run ends
      while (!stop.load() && !done.load()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      if (!done.load()) ctx.TryCancel();
    });
    if (kind == 1) {  // non-reading Get
      v1::GetRequest req;
      req.set_namespace_("sentinel");
      req.set_key(KeyBytes(big_key));
      req.set_transfer(v1::TRANSFER_STREAM);
      auto reader = stub->Get(&ctx, req);
      // Never Read: Finish returns once the daemon (or `stop`) cancels the call.
      (void)reader->Finish();
    } else {  // stalled Put (kind 0) or header-only Put (kind 2)
      v1::PutResponse resp;
      auto writer = stub->Put(&ctx, &resp);
      v1::PutRequest h;
      auto* hdr = h.mutable_header();
      hdr->set_namespace_("hostile");
      hdr->set_key(KeyBytes(Key128{0xbad, static_cast<uint64_t>(id)}));
      FillShape(kind == 0 ? KvShape{2, 1024, 2, 64, DType::kBF16} : KvShape{32, 1024, 8, 128, DType::kBF16},
                hdr->mutable_shape());
      hdr->set_codec("raw");
      writer->Write(h);
      if (kind == 0) {
        v1::PutRequest d;
        d.set_data(std::string(64 << 10, 'x'));
        writer->Write(d);
      }
      (void)writer->Finish();  // blocks until the daemon cancels or refuses the stream
    }
    done.store(true);
    canceller.join();
    if (!stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

struct GoodResult {
  bool ok = false;
  double seconds = 0;
  std::string error;
};

GoodResult Good(int id, const std::string& target, int deadline_s, uint32_t seed) {
  const auto t0 = Clock::now();
  GoodResult r;
  adaptcache::client::ClientOptions o;
  o.own_connection = true;
  o.rpc_timeout = std::chrono::seconds(deadline_s);
  o.overload_retry_for = std::chrono::seconds(deadline_s);
  auto fail = [&](const absl::Status& st) {
    r.error = std::string(st.message());
    r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    return r;
  };
  auto c = adaptcache::client::Client::Connect(target, o);
  if (!c.ok()) return fail(c.status());
  adaptcache::client::PutSpec spec;
  spec.ns = "good";
  spec.key = Key128{seed, static_cast<uint64_t>(id)};
  spec.shape = KvShape{2, 1024, 2, 32, DType::kBF16};  // 256 KiB
  std::vector<std::byte> raw(spec.shape.Bytes());
  std::mt19937 rng(seed * 100003u + static_cast<uint32_t>(id));
  for (auto& b : raw) b = static_cast<std::byte>(rng());
  auto put = (*c)->Put(spec, raw);
  if (!put.ok()) return fail(put.status());
  std::vector<Key128> keys{spec.key};
  auto lk = (*c)->Lookup("good", keys);
  if (!lk.ok()) return fail(lk.status());
  if (lk->prefix_hits != 1) return fail(absl::NotFoundError("Lookup missed the entry just put"));
  auto got = (*c)->Get("good", spec.key);
  if (!got.ok()) return fail(got.status());
  // A raw entry's container is a header followed by the tensor bytes.
  if (got->size() < raw.size() ||
      std::memcmp(got->data() + (got->size() - raw.size()), raw.data(), raw.size()) != 0) {
    return fail(absl::DataLossError("Get returned different bytes"));
  }
  r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  r.ok = r.seconds <= deadline_s;
  if (!r.ok) r.error = "finished after its deadline";
  return r;
}

double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * (v.size() - 1) + 0.5))];
}

struct RunResult {
  int good_total = 0, good_completed = 0;
  double good_p50_s = 0, good_max_s = 0;
  double health_p50_ms = 0, health_p99_ms = 0, health_max_ms = 0;
  uint64_t health_calls = 0, health_failures = 0;
  double rss_mb = 0, anon_mb = 0;
  uint64_t evictions = 0, sentinels_lost = 0, hostile_attempts = 0;
  bool prober_rt = false;
  std::string first_error, health_error;
};

int Run(const Args& a, uint32_t seed, const std::vector<int>& daemon_cpus, RunResult* out) {
  Daemon d(daemon_cpus);
  if (auto err = d.Start(a); !err.empty()) {
    std::fprintf(stderr, "%s\n", err.c_str());
    return 1;
  }
  auto main_client = adaptcache::client::Client::Connect(d.target());
  if (!main_client.ok()) {
    std::fprintf(stderr, "connect: %s\n", std::string(main_client.status().message()).c_str());
    return 1;
  }
  // Sentinels: 64 x 8 MiB.
  constexpr int kSentinels = 64;
  std::vector<Key128> sentinels;
  {
    adaptcache::client::PutSpec spec;
    spec.ns = "sentinel";
    spec.shape = KvShape{32, 128, 8, 64, DType::kBF16};  // 8 MiB
    std::vector<std::byte> raw(spec.shape.Bytes(), std::byte{7});
    for (int i = 0; i < kSentinels; ++i) {
      spec.key = Key128{0x5e, static_cast<uint64_t>(i)};
      auto st = (*main_client)->Put(spec, raw);
      if (!st.ok()) {
        std::fprintf(stderr, "sentinel put: %s\n", std::string(st.status().message()).c_str());
        return 1;
      }
      sentinels.push_back(spec.key);
    }
  }
  auto stats0 = (*main_client)->Stats();
  if (!stats0.ok()) return 1;

  std::atomic<bool> stop{false};
  // RSS sampler.
  uint64_t rss_max = 0, anon_max = 0;
  std::thread sampler([&] {
    while (!stop.load()) {
      auto [rss, anon] = ReadRss(d.pid());
      rss_max = std::max(rss_max, rss);
      anon_max = std::max(anon_max, anon);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  // Health prober: a process of its own (own gRPC threads, real-time priority where
  // allowed), so that what is timed is the daemon's answer, not this process's 1000 threads.
  const std::string probe_out = d.dir() + "/probe.txt";
  const pid_t prober = ::fork();
  if (prober == 0) {
    const std::string self = "/proc/self/exe";
    std::string target = d.target();
    std::string out_path = probe_out;
    char* argv2[] = {const_cast<char*>("overload_bench"), const_cast<char*>("--probe"), target.data(),
                     out_path.data(), nullptr};
    ::execv(self.c_str(), argv2);
    ::_exit(127);
  }
  std::atomic<uint64_t> attempts{0};
  std::vector<std::thread> hostile;
  for (int i = 0; i < a.misbehaving; ++i) {
    hostile.emplace_back(Hostile, i % 3, i, d.target(), sentinels[0], std::cref(stop), &attempts);
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));  // let them take the daemon
  const int good_n = a.clients - a.misbehaving;
  std::vector<GoodResult> results(good_n);
  std::vector<std::thread> good;
  for (int i = 0; i < good_n; ++i) {
    good.emplace_back([&, i] { results[i] = Good(i, d.target(), a.deadline_s, seed); });
  }
  for (auto& t : good) t.join();
  stop.store(true);
  ::kill(prober, SIGTERM);
  for (auto& t : hostile) t.join();
  ::waitpid(prober, nullptr, 0);
  sampler.join();
  std::vector<double> health_ms;
  uint64_t health_fail = 0;
  bool prober_rt = false;
  std::string health_error;
  {
    std::ifstream f(probe_out);
    std::string word;
    while (f >> word) {
      if (word == "rt") {
        prober_rt = true;
      } else if (word == "ok") {
        double ms;
        f >> ms;
        health_ms.push_back(ms);
      } else if (word == "fail") {
        std::string rest;
        std::getline(f, rest);
        if (health_fail++ == 0) health_error = rest;
      }
    }
  }

  RunResult& r = *out;
  r.good_total = good_n;
  std::vector<double> secs;
  for (const auto& g : results) {
    r.good_completed += g.ok;
    secs.push_back(g.seconds);
    if (!g.ok && r.first_error.empty()) r.first_error = g.error;
  }
  r.good_p50_s = Quantile(secs, 0.5);
  r.good_max_s = Quantile(secs, 1.0);
  r.health_calls = health_ms.size() + health_fail;
  r.health_failures = health_fail;
  r.health_p50_ms = Quantile(health_ms, 0.5);
  r.health_p99_ms = Quantile(health_ms, 0.99);
  r.health_max_ms = Quantile(health_ms, 1.0);
  r.rss_mb = rss_max / 1024.0;
  r.anon_mb = anon_max / 1024.0;
  r.hostile_attempts = attempts.load();
  r.prober_rt = prober_rt;
  r.health_error = health_error;
  auto stats1 = (*main_client)->Stats();
  if (!stats1.ok()) return 1;
  r.evictions = stats1->evictions - stats0->evictions;
  auto lk = (*main_client)->Lookup("sentinel", sentinels);
  if (!lk.ok()) return 1;
  for (const auto& e : lk->entries) r.sentinels_lost += !e.hit();
  return 0;
}

}  // namespace

std::atomic<bool> g_probe_stop{false};

// `overload_bench --probe TARGET OUT`: one Health call every 5 ms until SIGTERM; writes
// "ok <ms>" or "fail <code> <message> <ms>" lines (and "rt" if real-time priority held).
int Probe(const std::string& target, const std::string& out) {
  sched_param sp{};
  sp.sched_priority = 10;
  const bool rt = ::sched_setscheduler(0, SCHED_FIFO, &sp) == 0;  // before gRPC makes threads
  signal(SIGTERM, [](int) { g_probe_stop.store(true); });
  std::vector<std::string> lines;
  if (rt) lines.push_back("rt");
  auto stub = OwnStub(target);
  while (!g_probe_stop.load()) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
    v1::HealthResponse resp;
    const auto t = Clock::now();
    auto st = stub->Health(&ctx, v1::HealthRequest(), &resp);
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t).count();
    if (st.ok() && resp.serving()) {
      lines.push_back(absl::StrCat("ok ", ms));
    } else {
      lines.push_back(absl::StrCat("fail ", st.error_code(), " ", st.error_message(), " after ", ms, " ms"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::ofstream f(out);
  for (const auto& l : lines) f << l << "\n";
  return f.good() ? 0 : 1;
}

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc == 4 && std::string(argv[1]) == "--probe") return Probe(argv[2], argv[3]);
  Args a;
  if (!ParseArgs(argc, argv, &a)) {
    Usage();
    return 2;
  }
  std::FILE* csv = nullptr;
  if (!a.csv.empty()) {
    const bool fresh = !std::filesystem::exists(a.csv);
    csv = std::fopen(a.csv.c_str(), "a");
    if (csv == nullptr) {
      std::fprintf(stderr, "cannot write %s\n", a.csv.c_str());
      return 1;
    }
    if (fresh) std::fputs("clients,misbehaving,good_completed,good_total,health_p99_ms,rss_mb,evicted_by_unfinished\n", csv);
  }
  std::printf(
      "| run | seed | clients | hostile | good completed | good p50 / max s | Health calls (failed) | Health p50 / p99 / max ms "
      "| daemon RSS max MB (anon) | hostile attempts | evictions | sentinels lost |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
  std::vector<int> daemon_cpus;
  if (a.split_cpus) {
    auto [dc, cc] = SplitCpus();
    if (!cc.empty()) {
      daemon_cpus = dc;
      cpu_set_t set;
      CPU_ZERO(&set);
      for (int c : cc) CPU_SET(c, &set);
      ::sched_setaffinity(0, sizeof(set), &set);  // this process's threads inherit it
      std::fprintf(stderr, "daemon on %zu CPU(s), clients on %zu\n", dc.size(), cc.size());
    }
  }
  int rc = 0;
  for (int run = 0; run < a.runs; ++run) {
    const uint32_t seed = a.seed + static_cast<uint32_t>(run);
    std::fprintf(stderr, "run %d/%d (seed %u): %d clients, %d hostile...\n", run + 1, a.runs, seed, a.clients,
                 a.misbehaving);
    RunResult r;
    if (Run(a, seed, daemon_cpus, &r) != 0) return 1;
    std::printf("| %d | %u | %d | %d | %d / %d | %.2f / %.2f | %llu (%llu) | %.2f / %.2f / %.2f | %.0f (%.0f) | %llu | %llu | %llu |\n",
                run + 1, seed, a.clients, a.misbehaving, r.good_completed, r.good_total, r.good_p50_s, r.good_max_s,
                static_cast<unsigned long long>(r.health_calls), static_cast<unsigned long long>(r.health_failures),
                r.health_p50_ms, r.health_p99_ms, r.health_max_ms, r.rss_mb, r.anon_mb,
                static_cast<unsigned long long>(r.hostile_attempts), static_cast<unsigned long long>(r.evictions),
                static_cast<unsigned long long>(r.sentinels_lost));
    std::fflush(stdout);
    if (!r.prober_rt) std::fprintf(stderr, "  (the Health prober ran without real-time priority)\n");
    if (!r.health_error.empty()) std::fprintf(stderr, "  first Health failure: %s\n", r.health_error.c_str());
    if (!r.first_error.empty()) std::fprintf(stderr, "  first failure of a good client: %s\n", r.first_error.c_str());
    if (csv != nullptr) {
      std::fprintf(csv, "%d,%d,%d,%d,%.3f,%.1f,%llu\n", a.clients, a.misbehaving, r.good_completed, r.good_total,
                   r.health_p99_ms, r.rss_mb, static_cast<unsigned long long>(r.evictions + r.sentinels_lost));
    }
    if (r.good_completed != r.good_total || r.health_failures != 0 || r.evictions + r.sentinels_lost != 0) rc = 3;
  }
  if (csv != nullptr) std::fclose(csv);
  return rc;
}
