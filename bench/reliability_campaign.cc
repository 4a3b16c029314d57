// Crash campaigns against the real adaptcached (issue 15 item 5), run by
// bench/scripts/80_reliability.sh, not by CI. The approach is tests/integration/
// tiering_crash_test.cc's: load threads run against the daemon, which is killed with
// SIGKILL at a random moment, restarted on the same SSD directory and checked against an
// oracle, round after round. Each campaign aims its kills at one activity:
//
//   put       durable Puts (3 of 4 durable, overwrites included)
//   delete    Deletes mixed with durable Puts; a deleted key must never come back
//   reclaim   an SSD of 4 x 1 MiB segments and 64 KiB entries, so FIFO reclaim runs all
//             the time (it may drop entries by design: a miss is allowed, never wrong or
//             stale bytes, never a deleted key)
//   mover     --policy static:quant-k4v4-g64 (or --policy ...) with a short
//             --policy-interval-ms, so the mover transcodes entries while they are read
//   recovery  after the kill, one to three more kills while the daemon starts (before its
//             ready file; the log tells whether the SSD tier had been reopened yet)
//
// Oracle. Keys are owned by one writer thread each, so the operations on a key are
// sequential. Version v of key k is a fixed tensor (Gaussian bf16, seeded by k and v).
// For each key the oracle keeps the set of states a restart may show: "absent" and/or
// versions. An acknowledged-durable Put (PutHeader.durable and PutResponse.durable) of v
// makes it {v}; an acknowledged Delete makes it {absent}; a durable Put that never
// answered adds v; a Put that may have committed without durability (plain, or durable
// answered durable=false) adds v and absent (it erases the older SSD copy); a Delete that
// did not answer adds absent. After every restart every key is read back (Get, container CRC, decode):
//   wrong_bytes  the bytes are no version of the key (raw: byte for byte; a lossy codec:
//                the decoded tensor correlates with no version), a CRC/decode failure, or
//                a shape that is not the key's
//   lost         absent although the set does not allow it (an acked-durable key lost)
//   stale        an older version than the set allows
//   resurrected  a key acknowledged deleted came back
// and the set becomes what was seen. Readers check every Get during the load the same way
// (any version of the key). findings = wrong_bytes + lost + stale + resurrected + daemon
// starts that failed + unexpected errors (a campaign whose design drops entries, reclaim,
// counts its misses as "dropped", not lost).
//
// Output: a RESULT line of key=value pairs on stdout (and in --out), FINDING lines on
// stderr. CPU time is this process's plus its reaped daemons'.
#include <fcntl.h>
#include <httplib.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "adaptcache/v1/cache.grpc.pb.h"
#include "common/crc32c.h"
#include "kernels/codec.h"
#include "tests/testing/kv_data.h"

namespace adaptcache::reliability {
namespace {

namespace v1 = ::adaptcache::v1;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr char kNs[] = "reliability";
constexpr int64_t kAbsent = -1;

// ---------------------------------------------------------------- campaign settings

struct Campaign {
  std::string name;
  int keys = 256;
  uint32_t tokens = 16;  // entry = [2][2 layers][tokens][2 heads][64] bf16 = tokens KiB
  uint64_t pool_bytes = 4ull << 20;
  std::string segment_bytes = "16MiB";
  int segments = 64;
  int writers = 2;
  int readers = 1;
  double p_durable = 0.75, p_plain = 0.25, p_delete = 0.0;  // op mix per writer step
  int min_delay_ms = 20, max_delay_ms = 300;                // load before the kill
  bool drops_allowed = false;
  std::vector<std::string> extra_args;
  std::string log_level = "warn";
  int startup_kills_max = 0;  // recovery: extra kills while starting
  int op_gap_us = 0;          // writers pause between operations
  int aim_ms = 100;           // after the load time, wait up to this long for the target
  int epoch_rounds = 50;      // a fresh SSD directory (and oracle) every this many rounds; 0 = never
  std::string target;         // what a kill must land in to count as on target
};

Campaign MakeCampaign(const std::string& name, const std::string& policy, int interval_ms) {
  Campaign c;
  c.name = name;
  if (name == "put") {
    c.keys = 384;
    c.target = "durable Puts in flight";
  } else if (name == "put-race") {
    // The reproduction of the put campaign's loss: plain and durable Puts of the same
    // keys in equal parts over the 4 MiB pool (the smallest), so an older plain version is often demoted
    // while a durable Put of the key is in progress.
    c.keys = 384;
    c.tokens = 32;  // 32 KiB entries: twice the evictions
    c.p_durable = 0.5, c.p_plain = 0.5;
    c.target = "durable Puts in flight";
  } else if (name == "delete") {
    c.keys = 256;
    c.p_durable = 0.45, c.p_plain = 0.05, c.p_delete = 0.5;
    c.target = "Deletes in flight";
  } else if (name == "reclaim") {
    c.keys = 256;  // 16 MiB of 64 KiB entries over a 4 MiB SSD
    c.tokens = 64;
    c.segment_bytes = "1MiB";
    c.segments = 4;
    c.writers = 3;
    c.p_durable = 0.7, c.p_plain = 0.1, c.p_delete = 0.2;
    c.drops_allowed = true;
    c.epoch_rounds = 0;
    c.target = "SSD segment reclaimed within 20 ms before the kill";
  } else if (name == "mover") {
    c.keys = 512;
    c.writers = 1;
    c.op_gap_us = 8000;  // a key is rewritten every ~5 s, so planned transcodes are mostly not stale
    c.p_durable = 0.6, c.p_plain = 0.3, c.p_delete = 0.1;
    c.min_delay_ms = 1000, c.max_delay_ms = 3000;  // a plan needs ~1 s of quality estimates first
    c.aim_ms = 1500;
    const std::string p = policy.empty() ? "static:quant-k4v4-g64" : policy;
    c.extra_args = {"--policy", p, "--policy-interval-ms", std::to_string(interval_ms)};
    // A static policy's config space is raw + its config: quick quality estimates, quick plans.
    if (p.rfind("static:", 0) == 0) c.extra_args.insert(c.extra_args.end(), {"--policy-configs", p.substr(7)});
    // The mover may evict or demote by plan (adaptive); a miss is then allowed.
    c.drops_allowed = policy == "adaptive" || policy == "greedy-downgrade";
    c.target = "mover move or put transcode done within 20 ms before the kill";
  } else if (name == "recovery") {
    c.keys = 1024;
    c.p_durable = 0.7, c.p_plain = 0.1, c.p_delete = 0.2;
    c.min_delay_ms = 20, c.max_delay_ms = 200;
    c.log_level = "info";  // "SSD tier at ..." marks the end of the SSD reopen
    c.startup_kills_max = 3;
    c.aim_ms = 0;
    c.target = "kill while starting (before the ready file)";
  }
  return c;
}

// ---------------------------------------------------------------- the daemon

// Forks and execs adaptcached as tests/integration/daemon_fixture.h does, with a
// separate spawn and wait, so a kill can land while it starts.
class Daemon {
 public:
  Daemon(std::string bin, const Campaign& c, const std::string& ssd_dir) : bin_(std::move(bin)), c_(c), ssd_(ssd_dir) {
    char tmpl[] = "/dev/shm/adaptcache-rel-XXXXXX";
    if (::mkdtemp(tmpl) != nullptr) dir_ = tmpl;
  }
  ~Daemon() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      Reap();
    }
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }
  bool ok() const { return !dir_.empty(); }
  std::string sock() const { return dir_ + "/adaptcached.sock"; }
  std::string ready_file() const { return dir_ + "/ready"; }
  std::string log_path() const { return dir_ + "/daemon.log"; }
  pid_t pid() const { return pid_; }
  int metrics_port() const { return metrics_port_; }

  void Spawn() {
    std::error_code ec;
    std::filesystem::remove(ready_file(), ec);
    std::vector<std::string> args = {bin_ + "/adaptcached", "--socket", sock(), "--metrics-listen", "127.0.0.1:0",
                                     "--pool-size", std::to_string(c_.pool_bytes), "--shm-dir", dir_,
                                     "--pool-name", "rel", "--ready-file", ready_file(), "--log-level",
                                     c_.log_level, "--ssd-dir", ssd_, "--ssd-segment-bytes", c_.segment_bytes,
                                     "--ssd-segment-count", std::to_string(c_.segments)};
    for (const auto& a : c_.extra_args) args.push_back(a);
    log_offset_ = FileSize(log_path());
    spawned_ = Clock::now();
    const pid_t pid = ::fork();
    if (pid == 0) {
      const int fd = ::open(log_path().c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      }
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    pid_ = pid;
    metrics_port_ = -1;
  }

  // Whether this start has written its ready file.
  bool Ready() {
    std::ifstream in(ready_file());
    if (!in) return false;
    std::string line;
    std::map<std::string, std::string> kv;
    while (std::getline(in, line)) {
      auto eq = line.find('=');
      if (eq != std::string::npos) kv[line.substr(0, eq)] = line.substr(eq + 1);
    }
    if (std::atoi(kv["pid"].c_str()) != pid_) return false;
    metrics_port_ = std::atoi(kv["metrics_port"].c_str());
    return true;
  }

  // Waits for the ready file and a serving Health; "" or what went wrong.
  std::string WaitServing(std::chrono::seconds timeout = std::chrono::seconds(60)) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return "daemon exited during start (status " + std::to_string(status) + ")";
      }
      if (Ready()) break;
      std::this_thread::sleep_for(milliseconds(2));
    }
    if (metrics_port_ < 0) return "no ready file in time";
    ready_after_ = Clock::now() - spawned_;
    channel_ = grpc::CreateChannel("unix:" + sock(), grpc::InsecureChannelCredentials());
    while (Clock::now() < deadline) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
      v1::HealthResponse resp;
      if (Stub()->Health(&ctx, v1::HealthRequest(), &resp).ok() && resp.serving()) return "";
      std::this_thread::sleep_for(milliseconds(5));
    }
    return "never answered Health";
  }
  std::string Start() {
    Spawn();
    return WaitServing();
  }
  void Kill9() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    Reap();
  }
  std::unique_ptr<v1::AdaptCache::Stub> Stub() { return v1::AdaptCache::NewStub(channel_); }
  std::chrono::duration<double> ready_after() const { return ready_after_; }
  std::chrono::duration<double> since_spawn() const { return Clock::now() - spawned_; }
  // The log this start wrote so far.
  std::string LogSinceSpawn() const {
    std::ifstream in(log_path());
    in.seekg(static_cast<std::streamoff>(log_offset_));
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::string LogTail(size_t n = 3000) const {
    std::ifstream in(log_path());
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string s = ss.str();
    return s.size() > n ? s.substr(s.size() - n) : s;
  }

 private:
  static uint64_t FileSize(const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  }
  void Reap() {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    channel_.reset();
  }

  std::string bin_;
  Campaign c_;
  std::string ssd_;
  std::string dir_;
  pid_t pid_ = -1;
  int metrics_port_ = -1;
  uint64_t log_offset_ = 0;
  Clock::time_point spawned_{};
  std::chrono::duration<double> ready_after_{0};
  std::shared_ptr<grpc::Channel> channel_;
};

// ---------------------------------------------------------------- data and RPCs

std::string Key(int k) {
  std::string s(16, '\0');
  for (int b = 0; b < 4; ++b) s[b] = static_cast<char>((k >> (8 * b)) & 0xff);
  s[8] = 'r';
  return s;
}

v1::KvShape Shape(const Campaign& c) {
  v1::KvShape s;
  s.set_layers(2);
  s.set_tokens(c.tokens);
  s.set_kv_heads(2);
  s.set_head_dim(64);
  s.set_dtype(v1::DTYPE_BF16);
  return s;
}
uint64_t Elements(const Campaign& c) { return 2ull * 2 * c.tokens * 2 * 64; }

uint32_t g_seed = 1;
std::string Tensor(const Campaign& c, int key, int64_t version) {
  const uint32_t seed = g_seed * 0x9e3779b9u ^ static_cast<uint32_t>(key) * 0x85ebca6bu ^
                        static_cast<uint32_t>(version) * 0xc2b2ae35u;
  const auto t = testing::GaussianBf16(Elements(c), seed, 64);
  return std::string(reinterpret_cast<const char*>(t.data()), t.size());
}

float Bf16(const char* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  const uint32_t u = uint32_t{h} << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
double Cosine(const std::string& a, const std::string& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i + 1 < a.size() && i + 1 < b.size(); i += 2) {
    const double x = Bf16(&a[i]), y = Bf16(&b[i]);
    if (!std::isfinite(x) || !std::isfinite(y)) return 0;
    ab += x * y, aa += x * x, bb += y * y;
  }
  return aa > 0 && bb > 0 ? ab / std::sqrt(aa * bb) : 0;
}

void Deadline(grpc::ClientContext* ctx, int s = 10) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(s));
}

grpc::Status Put(v1::AdaptCache::Stub* stub, const Campaign& c, int key, const std::string& data, bool durable,
                 v1::PutResponse* resp) {
  grpc::ClientContext ctx;
  Deadline(&ctx);
  auto w = stub->Put(&ctx, resp);
  v1::PutRequest h;
  auto* hd = h.mutable_header();
  hd->set_namespace_(kNs);
  hd->set_key(Key(key));
  *hd->mutable_shape() = Shape(c);
  hd->set_codec("raw");
  hd->set_durable(durable);
  bool ok = w->Write(h);
  for (size_t off = 0; ok && off < data.size(); off += 64 << 10) {
    v1::PutRequest f;
    f.set_data(data.substr(off, 64 << 10));
    ok = w->Write(f);
  }
  w->WritesDone();
  return w->Finish();
}

grpc::Status Delete(v1::AdaptCache::Stub* stub, int key) {
  grpc::ClientContext ctx;
  Deadline(&ctx);
  v1::DeleteRequest req;
  req.set_namespace_(kNs);
  req.add_keys(Key(key));
  v1::DeleteResponse resp;
  return stub->Delete(&ctx, req, &resp);
}

// A streamed Get, CRC-checked and decoded: OK with the tensor bytes (and the entry), NOT_FOUND
// on a miss, DATA_LOSS when the container fails its CRC or decode, else the RPC's error.
grpc::Status Get(v1::AdaptCache::Stub* stub, int key, std::string* raw, v1::EntryInfo* info) {
  grpc::ClientContext ctx;
  Deadline(&ctx);
  v1::GetRequest req;
  req.set_namespace_(kNs);
  req.set_key(Key(key));
  req.set_transfer(v1::TRANSFER_STREAM);
  auto reader = stub->Get(&ctx, req);
  v1::GetResponse frame;
  std::string container;
  bool first = true;
  while (reader->Read(&frame)) {
    if (first) *info = frame.entry();
    first = false;
    container.append(frame.data());
  }
  auto st = reader->Finish();
  if (!st.ok()) return st;
  if (Crc32c(container.data(), container.size()) != info->payload_crc32c()) {
    return grpc::Status(grpc::StatusCode::DATA_LOSS, "container CRC mismatch");
  }
  raw->assign(info->raw_bytes(), '\0');
  auto d = Decode(std::span<const std::byte>(reinterpret_cast<const std::byte*>(container.data()), container.size()),
                  std::span<std::byte>(reinterpret_cast<std::byte*>(raw->data()), raw->size()));
  if (!d.ok()) return grpc::Status(grpc::StatusCode::DATA_LOSS, "decode: " + std::string(d.message()));
  return grpc::Status::OK;
}

// Sum of every series of `family` whose label text contains `label` (as
// tests/integration/mover_daemon_test.cc reads /metrics).
double MetricSum(const std::string& text, const std::string& family, const std::string& label = "") {
  double sum = 0;
  size_t pos = 0;
  while ((pos = text.find("\n" + family, pos)) != std::string::npos) {
    ++pos;
    const size_t eol = text.find('\n', pos);
    const std::string line = text.substr(pos, eol - pos);
    if (line.substr(0, line.find_first_of("{ ")) != family) continue;
    if (!label.empty() && line.find(label) == std::string::npos) continue;
    sum += std::atof(line.c_str() + line.rfind(' ') + 1);
  }
  return sum;
}

std::string FetchMetrics(int port) {
  httplib::Client cli("127.0.0.1", port);
  cli.set_connection_timeout(1);
  cli.set_read_timeout(2);
  auto res = cli.Get("/metrics");
  return res && res->status == 200 ? "\n" + res->body : std::string();
}

// ---------------------------------------------------------------- the oracle

struct KeyState {
  std::set<int64_t> allowed{kAbsent};  // states a restart may show
  std::vector<int64_t> versions;       // every version ever sent for the key
  int64_t next = 0;
  bool acked_delete = false;           // the set is {absent} because of an acked Delete
  std::vector<std::string> history;    // the last operations, for a finding's report
  void Note(std::string e) {
    if (history.size() >= 10) history.erase(history.begin());
    history.push_back(std::move(e));
  }
};

struct Totals {
  uint64_t rounds = 0, kills = 0, kills_on_target = 0, startup_kills = 0, startup_kills_ssd_open = 0;
  uint64_t puts = 0, keys_acked = 0, acked_not_durable = 0, deletes_acked = 0, gets_ok = 0, gets_miss = 0;
  uint64_t checked = 0, wrong = 0, lost = 0, stale = 0, resurrected = 0, dropped = 0, failed_starts = 0,
           errors = 0, lossy_reads = 0;
  uint64_t exec_retries = 0;
  double mover_done = 0, mover_transcodes = 0, ssd_reclaimed = 0, dropped_on_reclaim = 0;
  double ready_ms_sum = 0;
  uint64_t ready_n = 0;
};

class Oracle {
 public:
  Oracle(const Campaign& c) : c_(c), keys_(c.keys) {}

  // What a Get returned: the matching version, or nullopt (no version of the key).
  std::optional<int64_t> Identify(int key, const std::string& raw, const v1::EntryInfo& e) {
    std::vector<int64_t> versions;
    {
      std::lock_guard<std::mutex> l(mu_);
      versions = keys_[key].versions;
    }
    const v1::KvShape want = Shape(c_);
    const auto& s = e.shape();
    if (s.layers() != want.layers() || s.tokens() != want.tokens() || s.kv_heads() != want.kv_heads() ||
        s.head_dim() != want.head_dim() || s.dtype() != want.dtype() || raw.size() != Elements(c_) * 2) {
      return std::nullopt;
    }
    if (e.codec() == "raw") {
      for (auto it = versions.rbegin(); it != versions.rend(); ++it) {
        if (Tensor(c_, key, *it) == raw) return *it;
      }
      return std::nullopt;
    }
    // A transcoded entry decodes to a lossy copy: it must correlate with one version.
    lossy_reads_.fetch_add(1);
    double best = 0;
    int64_t bv = 0;
    for (int64_t v : versions) {
      const double cs = Cosine(Tensor(c_, key, v), raw);
      if (cs > best) best = cs, bv = v;
    }
    if (best >= 0.1) return bv;
    return std::nullopt;
  }

  int64_t BeginPut(int key) {
    std::lock_guard<std::mutex> l(mu_);
    auto& k = keys_[key];
    const int64_t v = k.next++;
    k.versions.push_back(v);
    return v;
  }
  // How a Put of version v ended. A committed Put that is not durable erases the key's
  // older SSD copy (storage/tier_manager.cc CommitPut: "an older, different SSD copy must
  // not resurface"), so it may leave the key absent after a crash; a durable Put that never
  // answered (killed) writes the SSD first and erases the old copy only after, so it leaves
  // the old state or v.
  enum class PutEnd { kAckedDurable, kMaybeDramOnly, kDurableUnanswered };
  void EndPut(int key, int64_t v, PutEnd how, const std::string& what) {
    std::lock_guard<std::mutex> l(mu_);
    auto& k = keys_[key];
    k.Note("put v" + std::to_string(v) + " " + what);
    if (how == PutEnd::kAckedDurable) {
      k.allowed = {v};
      k.acked_delete = false;
      return;
    }
    k.allowed.insert(v);
    if (how == PutEnd::kMaybeDramOnly) k.allowed.insert(kAbsent);
  }
  void EndDelete(int key, bool acked, const std::string& what) {
    std::lock_guard<std::mutex> l(mu_);
    auto& k = keys_[key];
    k.Note("delete " + what);
    if (acked) {
      k.allowed = {kAbsent};
      k.acked_delete = true;
    } else {
      k.allowed.insert(kAbsent);
    }
  }

  // After a restart: what the daemon shows for `key` against what it may show.
  void Check(int key, const grpc::Status& st, const std::string& raw, const v1::EntryInfo& e, Totals& t,
             uint64_t round) {
    std::optional<int64_t> version;
    if (st.ok()) version = Identify(key, raw, e);
    std::lock_guard<std::mutex> l(mu_);
    auto& k = keys_[key];
    ++t.checked;
    int64_t seen;
    if (st.error_code() == grpc::StatusCode::NOT_FOUND) {
      seen = kAbsent;
    } else if (st.ok()) {
      if (!version) {
        ++t.wrong;
        Finding(round, key, "wrong bytes after restart (codec " + e.codec() + ")");
        return;
      }
      seen = *version;
    } else if (st.error_code() == grpc::StatusCode::DATA_LOSS) {
      ++t.wrong;
      Finding(round, key, "after restart: " + st.error_message());
      return;
    } else {
      ++t.errors;
      Finding(round, key, "Get after restart failed: " + std::to_string(st.error_code()) + " " + st.error_message());
      return;
    }
    const bool allowed = k.allowed.count(seen) > 0 || (seen == kAbsent && c_.drops_allowed);
    if (!allowed) {
      std::string h;
      for (const auto& e : k.history) h += " | " + e;
      Finding(round, key, "history:" + h);
      if (seen == kAbsent) {
        ++t.lost;
        Finding(round, key, "acknowledged-durable key lost (may show " + Show(k.allowed) + ")");
      } else if (k.acked_delete) {
        ++t.resurrected;
        Finding(round, key, "deleted key came back as version " + std::to_string(seen));
      } else {
        ++t.stale;
        Finding(round, key, "stale version " + std::to_string(seen) + " (may show " + Show(k.allowed) + ")");
      }
    } else if (seen == kAbsent && k.allowed.count(kAbsent) == 0) {
      ++t.dropped;  // by design (reclaim, a policy's eviction)
    }
    if (seen == kAbsent && k.acked_delete) {
      // still deleted
    } else {
      k.acked_delete = false;
    }
    k.allowed = {seen};
    k.Note("restart r" + std::to_string(round) + ": " + (seen == kAbsent ? std::string("absent") : "v" + std::to_string(seen)));
  }

  uint64_t lossy_reads() const { return lossy_reads_.load(); }
  std::vector<std::string> findings() {
    std::lock_guard<std::mutex> l(fmu_);
    return findings_;
  }
  void Finding(uint64_t round, int key, const std::string& what) {
    std::lock_guard<std::mutex> l(fmu_);
    const std::string s = "campaign=" + c_.name + " round=" + std::to_string(round) + " key=" + std::to_string(key) +
                          ": " + what;
    std::fprintf(stderr, "FINDING %s\n", s.c_str());
    if (findings_.size() < 200) findings_.push_back(s);
  }

 private:
  static std::string Show(const std::set<int64_t>& s) {
    std::string o = "{";
    for (int64_t v : s) o += (o.size() > 1 ? "," : "") + (v == kAbsent ? std::string("absent") : std::to_string(v));
    return o + "}";
  }
  const Campaign c_;
  std::mutex mu_;
  std::vector<KeyState> keys_;
  std::atomic<uint64_t> lossy_reads_{0};
  std::mutex fmu_;
  std::vector<std::string> findings_;
};

// ---------------------------------------------------------------- a campaign

struct Args {
  std::string campaign = "put";
  int rounds = 100;
  uint32_t seed = 20261207;
  std::string bin_dir;
  std::string ssd_parent = "/var/tmp";
  std::string policy;
  int policy_interval_ms = 50;
  std::string out;
  int progress_every = 25;
  int min_delay_ms = -1, max_delay_ms = -1;  // override the campaign's load time per round
  std::string log_level;
};

double CpuSeconds() {
  rusage self {}, kids {};
  ::getrusage(RUSAGE_SELF, &self);
  ::getrusage(RUSAGE_CHILDREN, &kids);
  auto s = [](const rusage& r) {
    return r.ru_utime.tv_sec + r.ru_stime.tv_sec + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
  };
  return s(self) + s(kids);
}

// Samples a /metrics counter every 10 ms; Recent() says whether it rose within `window`.
class CounterWatch {
 public:
  using Series = std::vector<std::pair<std::string, std::string>>;  // (family, label) summed
  CounterWatch(int port, Series series) : series_(std::move(series)), cli_("127.0.0.1", port) {
    cli_.set_connection_timeout(1);
    cli_.set_read_timeout(2);
    thread_ = std::thread([this] {
      while (!stop_.load()) {
        Sample();
        std::this_thread::sleep_for(milliseconds(10));
      }
    });
  }
  ~CounterWatch() { Stop(); }
  void Stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  // Whether the counter rose in the `window` before now (one fresh sample taken first).
  bool Recent(milliseconds window) {
    Sample();
    std::lock_guard<std::mutex> l(mu_);
    if (samples_.empty()) return false;
    const auto now = samples_.back();
    for (auto it = samples_.rbegin(); it != samples_.rend(); ++it) {
      if (now.first - it->first > window) return now.second > it->second;
    }
    return now.second > samples_.front().second;
  }

 private:
  void Sample() {
    auto res = cli_.Get("/metrics");
    if (!res || res->status != 200) return;
    double v = 0;
    for (const auto& [family, label] : series_) v += MetricSum("\n" + res->body, family, label);
    std::lock_guard<std::mutex> l(mu_);
    samples_.emplace_back(Clock::now(), v);
    if (samples_.size() > 400) samples_.erase(samples_.begin(), samples_.begin() + 200);
  }
  Series series_;
  httplib::Client cli_;
  std::mutex mu_;
  std::vector<std::pair<Clock::time_point, double>> samples_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

int Run(const Args& a) {
  Campaign c = MakeCampaign(a.campaign, a.policy, a.policy_interval_ms);
  if (a.min_delay_ms >= 0) c.min_delay_ms = a.min_delay_ms;
  if (a.max_delay_ms >= 0) c.max_delay_ms = std::max(a.max_delay_ms, c.min_delay_ms);
  if (!a.log_level.empty()) c.log_level = a.log_level;
  if (c.target.empty()) {
    std::fprintf(stderr, "unknown campaign '%s' (put, delete, reclaim, mover, recovery)\n", a.campaign.c_str());
    return 2;
  }
  g_seed = a.seed;
  Totals t;
  std::mt19937_64 rng(a.seed);
  const auto t0 = Clock::now();
  const double cpu0 = CpuSeconds();
  std::string ssd_dir;
  std::unique_ptr<Daemon> dp;
  std::unique_ptr<Oracle> op;
  std::vector<std::string> all_findings;
  uint64_t lossy_reads = 0;
  auto end_epoch = [&] {
    if (dp) dp->Kill9();
    dp.reset();
    if (op) {
      for (auto& f : op->findings()) all_findings.push_back(std::move(f));
      lossy_reads += op->lossy_reads();
    }
    op.reset();
    std::error_code ec;
    if (!ssd_dir.empty()) std::filesystem::remove_all(ssd_dir, ec);
    ssd_dir.clear();
  };
  int epochs = 0;

  for (int round = 0; round < a.rounds; ++round) {
    // A fresh SSD directory every epoch_rounds rounds, so the campaign's writes never fill
    // the SSD (reclaim would drop entries by design; only the reclaim campaign wants that).
    if (!dp || (c.epoch_rounds > 0 && round % c.epoch_rounds == 0)) {
      end_epoch();
      ssd_dir = a.ssd_parent + "/adaptcache-rel-" + c.name + "-XXXXXX";
      if (::mkdtemp(ssd_dir.data()) == nullptr) {
        std::perror("mkdtemp");
        return 2;
      }
      dp = std::make_unique<Daemon>(a.bin_dir, c, ssd_dir);
      op = std::make_unique<Oracle>(c);
      ++epochs;
      if (!dp->ok()) return 2;
      if (auto err = dp->Start(); !err.empty()) {
        std::fprintf(stderr, "first start failed: %s\n%s\n", err.c_str(), dp->LogTail().c_str());
        return 2;
      }
    }
    Daemon& d = *dp;
    Oracle& oracle = *op;
    std::atomic<bool> stop{false};
    std::atomic<int> puts_in_flight{0}, deletes_in_flight{0};
    std::atomic<uint64_t> puts{0}, acked{0}, acked_nd{0}, dels{0}, gets_ok{0}, gets_miss{0}, wrong_live{0};
    std::unique_ptr<CounterWatch> watch;
    if (c.name == "reclaim") {
      watch = std::make_unique<CounterWatch>(d.metrics_port(),
                                             CounterWatch::Series{{"adaptcache_ssd_segments_reclaimed_total", ""}});
    }
    if (c.name == "mover") {
      watch = std::make_unique<CounterWatch>(
          d.metrics_port(), CounterWatch::Series{{"adaptcache_mover_moves_total", "result=\"done\""},
                                                 {"adaptcache_mover_admissions_total", "result=\"done\""}});
    }
    auto writer = [&](int w, uint64_t seed) {
      auto stub = d.Stub();
      std::mt19937_64 r(seed);
      std::uniform_real_distribution<double> u(0, 1);
      while (!stop.load()) {
        // Keys k with k % writers == w belong to this writer.
        const int slots = (c.keys - w + c.writers - 1) / c.writers;
        const int key = w + c.writers * static_cast<int>(r() % slots);
        const double x = u(r);
        if (x < c.p_delete) {
          deletes_in_flight.fetch_add(1);
          auto st = Delete(stub.get(), key);
          deletes_in_flight.fetch_sub(1);
          oracle.EndDelete(key, st.ok(), std::to_string(st.error_code()) + " r" + std::to_string(round));
          dels += st.ok();
          continue;
        }
        const bool durable = x < c.p_delete + c.p_durable;
        const int64_t v = oracle.BeginPut(key);
        const std::string data = Tensor(c, key, v);
        if (stop.load()) break;  // never sent: no outcome to record
        v1::PutResponse resp;
        puts_in_flight.fetch_add(1);
        auto st = Put(stub.get(), c, key, data, durable, &resp);
        puts_in_flight.fetch_sub(1);
        const bool ack = st.ok() && durable && resp.durable();
        oracle.EndPut(key, v,
                      ack                     ? Oracle::PutEnd::kAckedDurable
                      : durable && !st.ok()   ? Oracle::PutEnd::kDurableUnanswered
                                              : Oracle::PutEnd::kMaybeDramOnly,
                      std::string(durable ? "durable" : "plain") + " status " + std::to_string(st.error_code()) +
                          (st.ok() ? std::string(" resp.durable ") + (resp.durable() ? "1" : "0") : " " + st.error_message()) +
                          " r" + std::to_string(round));
        ++puts;
        acked += ack;
        acked_nd += st.ok() && !ack && durable;
        if (c.op_gap_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(c.op_gap_us));
      }
    };
    auto reader = [&](uint64_t seed) {
      auto stub = d.Stub();
      std::mt19937_64 r(seed);
      while (!stop.load()) {
        const int key = static_cast<int>(r() % c.keys);
        std::string raw;
        v1::EntryInfo e;
        auto st = Get(stub.get(), key, &raw, &e);
        if (st.ok()) {
          ++gets_ok;
          if (!oracle.Identify(key, raw, e)) {
            ++wrong_live;
            oracle.Finding(round, key, "Get during the load: bytes of no version (codec " + e.codec() + ")");
          }
        } else if (st.error_code() == grpc::StatusCode::NOT_FOUND) {
          ++gets_miss;
        } else if (st.error_code() == grpc::StatusCode::DATA_LOSS) {
          ++wrong_live;
          oracle.Finding(round, key, "Get during the load: " + st.error_message());
        }
        // UNAVAILABLE / CANCELLED: the daemon died mid-call.
      }
    };
    std::vector<std::thread> threads;
    for (int w = 0; w < c.writers; ++w) threads.emplace_back(writer, w, rng());
    for (int i = 0; i < c.readers; ++i) threads.emplace_back(reader, rng());
    std::this_thread::sleep_for(milliseconds(c.min_delay_ms + rng() % (c.max_delay_ms - c.min_delay_ms + 1)));

    // Aim: wait (a little) for the activity the campaign targets, then kill at once.
    auto on = [&] {
      if (c.name == "put" || c.name == "put-race") return puts_in_flight.load() > 0;
      if (c.name == "delete") return deletes_in_flight.load() > 0;
      if (watch) return watch->Recent(milliseconds(20));
      return false;
    };
    bool on_target = on();
    for (const auto aim_end = Clock::now() + milliseconds(c.aim_ms); !on_target && Clock::now() < aim_end;) {
      std::this_thread::sleep_for(std::chrono::microseconds(c.name == "put" || c.name == "put-race" || c.name == "delete" ? 200 : 2000));
      on_target = on();
    }
    {  // what this start did before the kill (counters restart with the daemon)
      const std::string m = FetchMetrics(d.metrics_port());
      t.mover_done += MetricSum(m, "adaptcache_mover_moves_total", "result=\"done\"");
      t.mover_transcodes += MetricSum(m, "adaptcache_mover_moves_total", "kind=\"transcode\",result=\"done\"");
      t.ssd_reclaimed += MetricSum(m, "adaptcache_ssd_segments_reclaimed_total");
      t.dropped_on_reclaim += MetricSum(m, "adaptcache_ssd_dropped_on_reclaim_total");
      if (std::getenv("AC_REL_DEBUG") != nullptr) {
        std::istringstream in(m);
        for (std::string line; std::getline(in, line);) {
          if (line.rfind("adaptcache_mover", 0) == 0) std::fprintf(stderr, "  %s\n", line.c_str());
        }
      }
    }
    // Writers start nothing after this: an operation begun after the kill would fail
    // without reaching the daemon, yet widen its key's allowed states (a plain Put or a
    // Delete adds "absent"). The operations in flight now are the ones the kill lands in.
    stop.store(true);
    d.Kill9();
    ++t.kills;
    for (auto& th : threads) th.join();
    watch.reset();
    t.puts += puts, t.keys_acked += acked, t.acked_not_durable += acked_nd, t.deletes_acked += dels;
    t.gets_ok += gets_ok, t.gets_miss += gets_miss, t.wrong += wrong_live;

    // Recovery: kill again while the daemon starts.
    if (c.startup_kills_max > 0) {
      const int n = 1 + static_cast<int>(rng() % c.startup_kills_max);
      const double typical_ms = t.ready_n ? t.ready_ms_sum / t.ready_n : 100.0;
      int landed = 0;
      for (int i = 0; i < n; ++i) {
        d.Spawn();
        const auto delay = std::chrono::microseconds(static_cast<int64_t>(rng() % static_cast<uint64_t>(typical_ms * 1000 + 1)));
        std::this_thread::sleep_for(delay);
        const bool ready = d.Ready();
        const std::string log = d.LogSinceSpawn();
        d.Kill9();
        ++t.kills;
        ++t.startup_kills;
        if (!ready) {
          ++landed;
          // Past main() (pool allocated) but the SSD tier not yet reopened.
          if (log.find("allocating the DRAM pool") != std::string::npos && log.find("SSD tier at") == std::string::npos) {
            ++t.startup_kills_ssd_open;
          }
        }
      }
      on_target = landed > 0;
    }
    t.kills_on_target += on_target;

    std::string err = d.Start();
    // Exit status 127: execv failed (the binary was being replaced, e.g. by a rebuild), not
    // the daemon's doing: wait and try again.
    for (int i = 0; i < 30 && err.find("(status 32512)") != std::string::npos; ++i) {
      ++t.exec_retries;
      std::this_thread::sleep_for(std::chrono::seconds(1));
      err = d.Start();
    }
    if (!err.empty()) {
      ++t.failed_starts;
      oracle.Finding(round, -1, "restart failed: " + err + "; log tail:\n" + d.LogTail());
      err = d.Start();
      if (!err.empty()) {
        oracle.Finding(round, -1, "second restart failed too; campaign stopped");
        ++t.rounds;
        break;
      }
    }
    t.ready_ms_sum += d.ready_after().count() * 1000, ++t.ready_n;

    auto stub = d.Stub();
    for (int key = 0; key < c.keys; ++key) {
      std::string raw;
      v1::EntryInfo e;
      auto st = Get(stub.get(), key, &raw, &e);
      oracle.Check(key, st, raw, e, t, round);
    }
    ++t.rounds;
    if (a.progress_every > 0 && (round + 1) % a.progress_every == 0) {
      std::fprintf(stderr,
                   "[%s] round %d: kills %lu (on target %lu), acked %lu, checked %lu, wrong %lu, lost %lu, stale %lu, "
                   "resurrected %lu, dropped %lu, %.0f s\n",
                   c.name.c_str(), round + 1, (unsigned long)t.kills, (unsigned long)t.kills_on_target,
                   (unsigned long)t.keys_acked, (unsigned long)t.checked, (unsigned long)t.wrong,
                   (unsigned long)t.lost, (unsigned long)t.stale, (unsigned long)t.resurrected,
                   (unsigned long)t.dropped, std::chrono::duration<double>(Clock::now() - t0).count());
    }
  }
  end_epoch();
  t.lossy_reads = lossy_reads;

  const uint64_t findings = t.wrong + t.lost + t.stale + t.resurrected + t.failed_starts + t.errors;
  char buf[2048];
  std::snprintf(buf, sizeof buf,
                "RESULT campaign=%s rounds=%lu kills=%lu kills_on_target=%lu target=\"%s\" startup_kills=%lu "
                "startup_kills_before_ssd_open=%lu puts=%lu keys_acked=%lu acked_not_durable=%lu deletes_acked=%lu "
                "gets_ok=%lu gets_miss=%lu checked=%lu lossy_reads=%lu wrong_bytes=%lu lost=%lu stale=%lu "
                "resurrected=%lu dropped=%lu failed_starts=%lu errors=%lu findings=%lu mover_moves_done=%.0f "
                "mover_transcodes_done=%.0f ssd_segments_reclaimed=%.0f ssd_dropped_on_reclaim=%.0f mean_ready_ms=%.1f "
                "epochs=%d exec_retries=%lu wall_s=%.1f cpu_s=%.1f args=\"%s\"",
                c.name.c_str(), (unsigned long)t.rounds, (unsigned long)t.kills, (unsigned long)t.kills_on_target,
                c.target.c_str(), (unsigned long)t.startup_kills, (unsigned long)t.startup_kills_ssd_open,
                (unsigned long)t.puts, (unsigned long)t.keys_acked, (unsigned long)t.acked_not_durable,
                (unsigned long)t.deletes_acked, (unsigned long)t.gets_ok, (unsigned long)t.gets_miss,
                (unsigned long)t.checked, (unsigned long)t.lossy_reads, (unsigned long)t.wrong,
                (unsigned long)t.lost, (unsigned long)t.stale, (unsigned long)t.resurrected,
                (unsigned long)t.dropped, (unsigned long)t.failed_starts, (unsigned long)t.errors,
                (unsigned long)findings, t.mover_done, t.mover_transcodes, t.ssd_reclaimed, t.dropped_on_reclaim,
                t.ready_n ? t.ready_ms_sum / t.ready_n : 0.0,
                epochs, (unsigned long)t.exec_retries, std::chrono::duration<double>(Clock::now() - t0).count(), CpuSeconds() - cpu0, [&] {
                  std::string s = "--pool-size " + std::to_string(c.pool_bytes) + " --ssd-segment-bytes " +
                                  c.segment_bytes + " --ssd-segment-count " + std::to_string(c.segments);
                  for (const auto& x : c.extra_args) s += " " + x;
                  return s;
                }().c_str());
  std::printf("%s\n", buf);
  if (!a.out.empty()) {
    std::ofstream o(a.out, std::ios::app);
    o << buf << "\n";
    for (const auto& f : all_findings) o << "FINDING " << f << "\n";
  }
  return findings == 0 ? 0 : 1;
}

}  // namespace
}  // namespace adaptcache::reliability

int main(int argc, char** argv) {
  using adaptcache::reliability::Args;
  ::signal(SIGPIPE, SIG_IGN);
  Args a;
  a.bin_dir = ADAPTCACHE_DEFAULT_BIN_DIR;
  if (const char* e = std::getenv("ADAPTCACHE_BIN_DIR"); e != nullptr && *e != '\0') a.bin_dir = e;
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", f.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (f == "--campaign") a.campaign = val();
    else if (f == "--rounds") a.rounds = std::atoi(val().c_str());
    else if (f == "--seed") a.seed = static_cast<uint32_t>(std::strtoul(val().c_str(), nullptr, 10));
    else if (f == "--bin-dir") a.bin_dir = val();
    else if (f == "--ssd-parent") a.ssd_parent = val();
    else if (f == "--policy") a.policy = val();
    else if (f == "--policy-interval-ms") a.policy_interval_ms = std::atoi(val().c_str());
    else if (f == "--out") a.out = val();
    else if (f == "--progress-every") a.progress_every = std::atoi(val().c_str());
    else if (f == "--delay-ms") {  // MIN:MAX
      const std::string v = val();
      a.min_delay_ms = std::atoi(v.c_str());
      a.max_delay_ms = v.find(':') == std::string::npos ? a.min_delay_ms : std::atoi(v.c_str() + v.find(':') + 1);
    } else if (f == "--log-level") a.log_level = val();
    else {
      std::fprintf(stderr,
                   "usage: reliability_campaign --campaign put|delete|reclaim|mover|recovery [--rounds N] [--seed S]\n"
                   "       [--bin-dir DIR] [--ssd-parent DIR] [--policy P] [--policy-interval-ms MS] [--out FILE]\n"
                   "       [--delay-ms MIN:MAX] [--log-level L] [--progress-every N]\n");
      return 2;
    }
  }
  return adaptcache::reliability::Run(a);
}
