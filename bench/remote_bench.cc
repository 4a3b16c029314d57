// Issue-16 benchmark: a remote-tier (Redis Cluster) hit against an SSD-tier hit and a
// plain hiredis client reading the same bytes. See bench/scripts/65_remote.sh, which
// starts the cluster and the daemons and runs this binary twice:
//
//   --phase put      Puts every entry on daemon A (remote write-through) and on the SSD
//                    daemon (durable=true), checks that both stored exactly the
//                    container this binary encodes locally (size and CRC32C), and waits
//                    until Redis holds A's copy of each entry.
//   --phase measure  (the script has stopped A, restarted the SSD daemon so its DRAM is
//                    empty, and started daemon B, which holds nothing locally) times:
//     path adaptcache-remote  daemon B: every Get is a remote hit (--ssd-promote-after-hits 0,
//                             no SSD tier: served through an anonymous lease each time)
//     path adaptcache-ssd     the SSD daemon: every Get is an SSD hit (promote-after-hits 0)
//     path redis-plain        hiredis GET (GETRANGE 0 63 for lookup) to the node that owns
//                             the key; the reply is copied into the caller buffer
//     path redis-resp         (get only) bench/kvstore_resp.h: the bulk reply is read
//                             straight from the socket into the caller buffer
//   ops: lookup   Client::Lookup of the key (remote: one GETRANGE round trip)
//        get      headline: Client::GetShmInto = GetShm lease + CopyOut into the caller
//                 buffer (+ its verification) + release (batched by 16, the default)
//        get-grpc Client::GetInto: the streamed gRPC Get into the caller buffer (+ verify)
//   Every Get's bytes are compared (memcmp, outside the timed region) with the container
//   that was put, and the tier the daemon reports is checked, before anything is reported.
//   The paths run interleaved in each repetition, so load hits them alike.
#include <hiredis/hiredis.h>

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/kvstore_resp.h"
#include "client/client.h"
#include "client/kv_files.h"
#include "common/crc32c.h"
#include "common/key.h"
#include "kernels/codec.h"

namespace adaptcache::bench {
namespace {

using client::Client;
using client::PutSpec;
using Clock = std::chrono::steady_clock;

constexpr char kNs[] = "bench/remote";
const char* const kCodecs[] = {"raw", "quant-k4v4-g64", "quant-k2v2-g64", "fp8"};

[[noreturn]] void Die(const std::string& what, const absl::Status& st = absl::OkStatus()) {
  std::fprintf(stderr, "remote_bench: FAILED: %s%s%s\n", what.c_str(), st.ok() ? "" : ": ", st.ok() ? "" : st.ToString().c_str());
  std::exit(1);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0 : (n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2);
}

struct Args {
  std::string phase;
  std::string a, b, ssd;  // daemon sockets
  std::string nodes;      // "127.0.0.1:P,..."
  std::string prefix;     // --remote-key-prefix of the daemons
  int reps = 15;
  int warmup = 3;
  std::string csv;
  std::string pids;  // "b=PID,ssd=PID,redis=PID+PID+PID": CPU and page-fault accounting
};

struct Entry {
  std::string size;  // "1MiB", "16MiB": raw bytes
  KvShape shape;
  std::string codec;
  Key128 key;
  std::vector<std::byte> container;  // exactly what the daemons store
  std::string redis_key;
  int owner = -1;  // index into the hiredis connections
};

std::vector<Entry> MakeEntries(const std::string& prefix) {
  // bf16 [2, layers, tokens, 8 KV heads, 128]: layers x tokens = 256 -> 1 MiB, 4096 -> 16 MiB.
  const std::pair<const char*, KvShape> sizes[] = {{"1MiB", KvShape{1, 256, 8, 128, DType::kBF16}},
                                                   {"16MiB", KvShape{16, 256, 8, 128, DType::kBF16}}};
  std::vector<Entry> out;
  for (size_t s = 0; s < std::size(sizes); ++s) {
    const auto raw = client::RandomKvBytes(sizes[s].second, 4242 + s);
    for (size_t c = 0; c < std::size(kCodecs); ++c) {
      Entry e;
      e.size = sizes[s].first;
      e.shape = sizes[s].second;
      e.codec = kCodecs[c];
      e.key = Key128{0x6500 + s * 16 + c, 0x72656d6f7465ull};
      auto cfg = ParseCodecConfig(e.codec);
      if (!cfg.ok()) Die("codec " + e.codec, cfg.status());
      auto enc = EncodeToVector(*cfg, e.shape, raw);
      if (!enc.ok()) Die("encode " + e.codec, enc.status());
      e.container = std::move(*enc);
      e.redis_key = absl::StrFormat("%s%016x:%s", prefix, NamespaceId(kNs), e.key.ToHex());
      out.push_back(std::move(e));
    }
  }
  return out;
}

// One hiredis connection per cluster node; `Owner` finds a key's node from a MOVED reply.
class Nodes {
 public:
  explicit Nodes(const std::string& list) {
    for (auto hp : absl::StrSplit(list, ',')) {
      std::vector<std::string> parts = absl::StrSplit(hp, ':');
      int port = 0;
      if (parts.size() != 2 || !absl::SimpleAtoi(parts[1], &port)) Die("bad node " + std::string(hp));
      timeval tv{10, 0};
      redisContext* c = redisConnectWithTimeout(parts[0].c_str(), port, tv);
      if (c == nullptr || c->err) Die("connect to redis " + std::string(hp), absl::UnavailableError(c ? c->errstr : "oom"));
      redisSetTimeout(c, tv);
      names_.push_back(std::string(hp));
      ctx_.push_back(c);
    }
  }
  ~Nodes() {
    for (auto* c : ctx_) redisFree(c);
  }
  redisContext* at(int i) const { return ctx_[i]; }

  // argv command on node i; dies on a transport error (an error reply is returned).
  redisReply* Run(int i, std::initializer_list<std::string_view> argv) const {
    std::vector<const char*> p;
    std::vector<size_t> l;
    for (auto a : argv) {
      p.push_back(a.data());
      l.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(redisCommandArgv(ctx_[i], static_cast<int>(p.size()), p.data(), l.data()));
    if (r == nullptr) Die("redis " + names_[i], absl::UnavailableError(ctx_[i]->errstr));
    return r;
  }

  int Owner(const std::string& key) const {
    redisReply* r = Run(0, {"STRLEN", key});
    int owner = 0;
    if (r->type == REDIS_REPLY_ERROR) {
      // "MOVED <slot> <host>:<port>"
      std::vector<std::string> w = absl::StrSplit(std::string(r->str, r->len), ' ');
      if (w.size() != 3 || w[0] != "MOVED") Die("redis STRLEN " + key + ": " + std::string(r->str, r->len));
      owner = -1;
      for (size_t i = 0; i < names_.size(); ++i) {
        if (names_[i] == w[2]) owner = static_cast<int>(i);
      }
      if (owner < 0) Die("MOVED to a node not in --nodes: " + w[2]);
    }
    freeReplyObject(r);
    return owner;
  }
  long long Strlen(int node, const std::string& key) const {
    redisReply* r = Run(node, {"STRLEN", key});
    if (r->type != REDIS_REPLY_INTEGER) Die("redis STRLEN " + key + ": unexpected reply");
    const long long n = r->integer;
    freeReplyObject(r);
    return n;
  }
  const std::string& name(int i) const { return names_[i]; }
  int size() const { return static_cast<int>(ctx_.size()); }

 private:
  std::vector<std::string> names_;
  std::vector<redisContext*> ctx_;
};

std::unique_ptr<Client> Connect(const std::string& target) {
  auto c = Client::Connect(target);
  if (!c.ok()) Die("connect " + target, c.status());
  return std::move(*c);
}

PutSpec SpecOf(const Entry& e, bool durable) {
  PutSpec s;
  s.ns = kNs;
  s.key = e.key;
  s.shape = e.shape;
  s.codec = e.codec;
  s.durable = durable;
  return s;
}

int PhasePut(const Args& a) {
  auto entries = MakeEntries(a.prefix);
  auto ca = Connect(a.a), cs = Connect(a.ssd);
  Nodes nodes(a.nodes);
  for (auto& e : entries) {
    const std::string what = e.size + " " + e.codec;
    const auto raw = client::RandomKvBytes(e.shape, 4242 + (e.size == "1MiB" ? 0 : 1));
    const uint32_t crc = Crc32c(e.container.data(), e.container.size());
    for (int d = 0; d < 2; ++d) {
      auto info = (d == 0 ? ca : cs)->Put(SpecOf(e, d == 1), raw);
      if (!info.ok()) Die("put " + what, info.status());
      if (info->stored_bytes != e.container.size() || info->payload_crc32c != crc) {
        Die(absl::StrFormat("put %s on %s: the daemon stored %d bytes (crc %08x), the local encoder %d (crc %08x)",
                            what, d == 0 ? "A" : "ssd", info->stored_bytes, info->payload_crc32c,
                            e.container.size(), crc));
      }
      if (d == 1 && !info->durable) Die("put " + what + " on the SSD daemon was not durable");
    }
    e.owner = nodes.Owner(e.redis_key);
  }
  // A's write-through is asynchronous: wait until Redis holds every container.
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  for (const auto& e : entries) {
    while (nodes.Strlen(e.owner, e.redis_key) != static_cast<long long>(e.container.size())) {
      if (Clock::now() > deadline) Die("daemon A never wrote " + e.redis_key + " to the remote tier");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::printf("put %-6s %-15s container %9zu B  redis %s (node %s)\n", e.size.c_str(), e.codec.c_str(),
                e.container.size(), e.redis_key.c_str(), nodes.name(e.owner).c_str());
  }
  return 0;
}

// CPU time (all threads: the process's CPU clock) and minor page faults (/proc/<pid>/stat) of the processes taking part, sampled outside the timed
// region around every operation.
struct Usage {
  double cpu_ms = 0;
  double minflt = 0;
};
constexpr int kGroups = 4;
const char* const kGroupNames[kGroups] = {"client", "b", "ssd", "redis"};

class Accounting {
 public:
  explicit Accounting(const std::string& spec) {
    pids_[0] = {::getpid()};
    for (auto part : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
      std::pair<std::string, std::string> kv = absl::StrSplit(part, '=');
      int g = -1;
      for (int i = 1; i < kGroups; ++i) {
        if (kv.first == kGroupNames[i]) g = i;
      }
      if (g < 0) Die("--pids: unknown name " + kv.first);
      for (auto p : absl::StrSplit(kv.second, '+')) {
        int pid = 0;
        if (!absl::SimpleAtoi(p, &pid)) Die("--pids: bad pid " + std::string(p));
        pids_[g].push_back(pid);
      }
    }
  }
  // The client's own CPU is read last before an operation and first after it, so the
  // cost of reading the other processes' /proc files is not charged to the operation.
  std::array<Usage, kGroups> Sample(bool before) const {
    std::array<Usage, kGroups> u{};
    static constexpr int kBefore[kGroups] = {1, 2, 3, 0}, kAfter[kGroups] = {0, 1, 2, 3};
    for (int g : before ? kBefore : kAfter) {
      for (int pid : pids_[g]) {
        u[g].cpu_ms += CpuNs(pid) / 1e6;
        u[g].minflt += static_cast<double>(MinFlt(pid));
      }
    }
    return u;
  }
  bool has(int g) const { return !pids_[g].empty(); }

 private:
  static double CpuNs(int pid) {  // the process's CPU clock: every thread, ns resolution
    clockid_t cid;
    timespec ts{};
    if (::clock_getcpuclockid(pid, &cid) != 0 || ::clock_gettime(cid, &ts) != 0) {
      Die(absl::StrCat("CPU clock of pid ", pid), absl::NotFoundError(std::strerror(errno)));
    }
    return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
  }
  static uint64_t MinFlt(int pid) {
    std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t close = all.rfind(')');
    if (close == std::string::npos) Die(absl::StrCat("read /proc/", pid, "/stat"));
    std::vector<std::string> f = absl::StrSplit(all.substr(close + 2), ' ');
    uint64_t v = 0;
    if (f.size() < 8 || !absl::SimpleAtoi(f[7], &v)) Die(absl::StrCat("parse /proc/", pid, "/stat"));
    return v;  // field 10: minflt
  }
  std::vector<int> pids_[kGroups];
};

struct Row {
  std::string op, size, codec, path;
  double ms_median = 0, gbps_median = 0, ms_min = 0, ms_max = 0;
  uint64_t bytes = 0;  // per op, over which gbps is computed
  std::array<Usage, kGroups> per_op{};  // mean over the timed repetitions
};

// One timed variant: `op` does the operation into the caller's buffer, `check` verifies
// its result afterwards (outside the timed region) and dies on a mismatch.
struct Variant {
  std::string path;
  uint64_t bytes;
  std::function<void()> op;
  std::function<void()> check;
};

void Measure(const std::string& op, const Entry& e, const std::vector<Variant>& vs, int warmup, int reps,
             const Accounting& acct, std::vector<Row>* rows) {
  std::vector<std::vector<double>> ms(vs.size());
  std::vector<std::array<Usage, kGroups>> use(vs.size());
  for (int r = 0; r < warmup + reps; ++r) {
    for (size_t v = 0; v < vs.size(); ++v) {
      const auto before = acct.Sample(true);
      const auto t0 = Clock::now();
      vs[v].op();
      const double t = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      const auto after = acct.Sample(false);
      vs[v].check();
      if (r >= warmup) {
        ms[v].push_back(t);
        for (int g = 0; g < kGroups; ++g) {
          use[v][g].cpu_ms += (after[g].cpu_ms - before[g].cpu_ms) / reps;
          use[v][g].minflt += (after[g].minflt - before[g].minflt) / reps;
        }
      }
    }
  }
  for (size_t v = 0; v < vs.size(); ++v) {
    Row row{op, e.size, e.codec, vs[v].path};
    row.ms_median = Median(ms[v]);
    row.ms_min = *std::min_element(ms[v].begin(), ms[v].end());
    row.ms_max = *std::max_element(ms[v].begin(), ms[v].end());
    row.bytes = vs[v].bytes;
    row.per_op = use[v];
    row.gbps_median = static_cast<double>(vs[v].bytes) / (row.ms_median * 1e-3) / 1e9;
    rows->push_back(row);
  }
}

// Host-side costs of the copies and checks on the remote get path, for the write-up.
struct PassCost {
  double memcpy_ms = 0, crc_ms = 0;
};
std::map<std::string, PassCost> Components(const std::vector<Entry>& entries) {
  std::map<std::string, PassCost> out;
  std::printf("\nHost-side costs of one pass over a container (medians of 15, this machine):\n\n");
  std::printf("| container | memcpy ms | GB/s | CRC32C ms | GB/s |\n|---|---:|---:|---:|---:|\n");
  for (const auto& e : entries) {
    if (e.codec != "raw") continue;
    std::vector<std::byte> dst(e.container.size(), std::byte{1});
    std::vector<double> cp, crc;
    uint32_t sink = 0;
    for (int r = 0; r < 18; ++r) {
      auto t0 = Clock::now();
      std::memcpy(dst.data(), e.container.data(), e.container.size());
      auto t1 = Clock::now();
      sink ^= Crc32c(dst.data(), dst.size());
      auto t2 = Clock::now();
      if (r >= 3) {
        cp.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        crc.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
      }
    }
    // Before reporting: the copy equals the container, and the 18 timed CRCs cancelled
    // in pairs (as equal values do) and equal the container's CRC, taken again untimed.
    if (std::memcmp(dst.data(), e.container.data(), dst.size()) != 0 || sink != 0 ||
        Crc32c(dst.data(), dst.size()) != Crc32c(e.container.data(), e.container.size())) {
      Die("host-side pass over " + e.size + " raw: the copy or its CRC32C is wrong");
    }
    const double n = static_cast<double>(e.container.size());
    std::printf("| %s raw (%zu B) | %.3f | %.2f | %.3f | %.2f |\n", e.size.c_str(), e.container.size(), Median(cp),
                n / Median(cp) / 1e6, Median(crc), n / Median(crc) / 1e6);
    if (sink == 0x12345678) std::printf(" ");
    out[e.size] = PassCost{Median(cp), Median(crc)};
  }
  return out;
}

int PhaseMeasure(const Args& a) {
  auto entries = MakeEntries(a.prefix);
  auto cb = Connect(a.b), cs = Connect(a.ssd);
  Nodes nodes(a.nodes);
  const Accounting acct(a.pids);
  for (auto& e : entries) e.owner = nodes.Owner(e.redis_key);
  // Connections of the plain-RESP reader, one per node.
  std::vector<std::unique_ptr<RespClient>> resp;
  for (int i = 0; i < nodes.size(); ++i) {
    std::vector<std::string> hp = absl::StrSplit(nodes.name(i), ':');
    auto r = RespClient::ConnectTcp(hp[0], std::stoi(hp[1]));
    if (!r.ok()) Die("resp connect", r.status());
    resp.push_back(std::move(*r));
  }

  size_t max_bytes = 0;
  for (const auto& e : entries) max_bytes = std::max(max_bytes, e.container.size());
  std::vector<std::byte> buf(max_bytes);
  std::vector<Row> rows;

  for (const auto& e : entries) {
    const std::string what = e.size + " " + e.codec;
    const uint64_t n = e.container.size();
    const Key128 keys[] = {e.key};
    auto clear = [&] { std::memset(buf.data(), 0, n); };
    auto same = [&](const char* path) {
      if (std::memcmp(buf.data(), e.container.data(), n) != 0) Die(std::string(path) + " get " + what + ": bytes differ from what was put");
    };
    // Every lookup must report a hit in the expected tier (remote on B, ssd on the SSD
    // daemon) with the container's size; every get must say it was served from there.
    client::LookupResult lk_b, lk_s;
    client::EntryInfo info_b, info_s;
    auto lookup = [&](Client* c, client::LookupResult* out) {
      auto r = c->Lookup(kNs, keys);
      if (!r.ok()) Die("lookup " + what, r.status());
      *out = *r;
    };
    auto lookup_check = [&](const client::LookupResult& r, Tier want, const char* path) {
      if (r.prefix_hits != 1 || r.entries[0].tier != want || r.entries[0].stored_bytes != n) {
        Die(absl::StrFormat("%s lookup %s: tier %s, %d bytes; expected a %s hit of %d bytes", path, what,
                            TierName(r.entries[0].tier), r.entries[0].stored_bytes, TierName(want), n));
      }
    };
    auto info_check = [&](const client::EntryInfo& i, Tier want, const char* path) {
      if (i.tier != want || i.stored_bytes != n) {
        Die(absl::StrFormat("%s get %s: served from %s (%d bytes); expected a %s hit of %d bytes", path, what,
                            TierName(i.tier), i.stored_bytes, TierName(want), n));
      }
    };
    redisReply* head = nullptr;
    std::vector<Variant> lookups = {
        {"adaptcache-remote", kContainerHeaderBytes, [&] { lookup(cb.get(), &lk_b); },
         [&] { lookup_check(lk_b, Tier::kRemote, "adaptcache-remote"); }},
        {"adaptcache-ssd", kContainerHeaderBytes, [&] { lookup(cs.get(), &lk_s); },
         [&] { lookup_check(lk_s, Tier::kSsd, "adaptcache-ssd"); }},
        {"redis-plain", kContainerHeaderBytes, [&] { head = nodes.Run(e.owner, {"GETRANGE", e.redis_key, "0", "63"}); },
         [&] {
           if (head->type != REDIS_REPLY_STRING || head->len != kContainerHeaderBytes ||
               std::memcmp(head->str, e.container.data(), kContainerHeaderBytes) != 0) {
             Die("redis-plain GETRANGE " + what + ": not the container's header");
           }
           freeReplyObject(head);
         }},
    };
    Measure("lookup", e, lookups, a.warmup, a.reps, acct, &rows);

    auto shm_get = [&](Client* c, client::EntryInfo* out) {
      auto r = c->GetShmInto(kNs, e.key, buf);
      if (!r.ok()) Die("shm get " + what, r.status());
      *out = *r;
    };
    auto grpc_get = [&](Client* c, client::EntryInfo* out) {
      auto r = c->GetInto(kNs, e.key, buf);
      if (!r.ok()) Die("grpc get " + what, r.status());
      *out = *r;
    };
    // Each check zeroes the buffer again (untimed), so every Get must write all of it.
    std::vector<Variant> gets = {
        {"adaptcache-remote", n, [&] { shm_get(cb.get(), &info_b); },
         [&] { info_check(info_b, Tier::kRemote, "adaptcache-remote"); same("adaptcache-remote"); clear(); }},
        {"adaptcache-ssd", n, [&] { shm_get(cs.get(), &info_s); },
         [&] { info_check(info_s, Tier::kSsd, "adaptcache-ssd"); same("adaptcache-ssd"); clear(); }},
        {"redis-plain", n,
         [&] {
           redisReply* r = nodes.Run(e.owner, {"GET", e.redis_key});
           if (r->type != REDIS_REPLY_STRING || static_cast<uint64_t>(r->len) != n) Die("redis-plain GET " + what);
           std::memcpy(buf.data(), r->str, n);
           freeReplyObject(r);
         },
         [&] { same("redis-plain"); clear(); }},
        {"redis-resp", n,
         [&] {
           auto r = resp[e.owner]->GetInto(e.redis_key, std::span<std::byte>(buf.data(), n));
           if (!r.ok() || *r != n) Die("redis-resp GET " + what, r.status());
         },
         [&] { same("redis-resp"); clear(); }},
    };
    clear();
    Measure("get", e, gets, a.warmup, a.reps, acct, &rows);
    std::vector<Variant> grpc = {
        {"adaptcache-remote", n, [&] { grpc_get(cb.get(), &info_b); },
         [&] { info_check(info_b, Tier::kRemote, "adaptcache-remote"); same("adaptcache-remote"); clear(); }},
        {"adaptcache-ssd", n, [&] { grpc_get(cs.get(), &info_s); },
         [&] { info_check(info_s, Tier::kSsd, "adaptcache-ssd"); same("adaptcache-ssd"); clear(); }},
    };
    Measure("get-grpc", e, grpc, a.warmup, a.reps, acct, &rows);
    std::fprintf(stderr, "measured %s\n", what.c_str());
  }
  if (auto r = cb->FlushReleases(); !r.ok()) Die("flush releases", r.status());
  if (auto r = cs->FlushReleases(); !r.ok()) Die("flush releases", r.status());
  // Nothing was promoted: both daemons' DRAM still holds no entry.
  for (auto* c : {cb.get(), cs.get()}) {
    auto st = c->Stats();
    if (!st.ok()) Die("stats", st.status());
    for (const auto& t : st->tiers) {
      if (t.tier == Tier::kDram && t.entries != 0) {
        Die(absl::StrFormat("%s holds %d entries in DRAM after the run; every Get should have missed DRAM",
                            c->target(), t.entries));
      }
    }
  }

  auto find = [&](const std::string& op, const std::string& size, const std::string& codec,
                  const std::string& path) -> const Row* {
    for (const auto& r : rows) {
      if (r.op == op && r.size == size && r.codec == codec && r.path == path) return &r;
    }
    return nullptr;
  };
  std::printf("| op | size | codec | path | bytes/op | ms (median) | min | max | GB/s (median) |\n");
  std::printf("|---|---|---|---|---:|---:|---:|---:|---:|\n");
  for (const auto& r : rows) {
    std::printf("| %s | %s | %s | %s | %llu | %.3f | %.3f | %.3f | %.4g |\n", r.op.c_str(), r.size.c_str(),
                r.codec.c_str(), r.path.c_str(), static_cast<unsigned long long>(r.bytes), r.ms_median, r.ms_min,
                r.ms_max, r.gbps_median);
  }
  auto ratio = [&](const std::string& op, const std::string& size, const std::string& codec, const std::string& p,
                   const std::string& q) {
    const Row* x = find(op, size, codec, p);
    const Row* y = find(op, size, codec, q);
    return (x && y && y->ms_median > 0) ? x->ms_median / y->ms_median : 0.0;
  };
  std::printf("\nTime ratios (medians; > 1 = the first is slower):\n\n");
  std::printf("| op | size | codec | remote / redis-plain | remote / redis-resp | remote / ssd |\n");
  std::printf("|---|---|---|---:|---:|---:|\n");
  for (const char* op : {"lookup", "get", "get-grpc"}) {
    for (const auto& e : entries) {
      const double rr = ratio(op, e.size, e.codec, "adaptcache-remote", "redis-resp");
      const double rp = ratio(op, e.size, e.codec, "adaptcache-remote", "redis-plain");
      std::printf("| %s | %s | %s | %s | %s | %.2fx |\n", op, e.size.c_str(), e.codec.c_str(),
                  rp > 0 ? absl::StrFormat("%.2fx", rp).c_str() : "-", rr > 0 ? absl::StrFormat("%.2fx", rr).c_str() : "-",
                  ratio(op, e.size, e.codec, "adaptcache-remote", "adaptcache-ssd"));
    }
  }
  std::printf("\nCompressed / raw remote hit time (adaptcache-remote, same size; container bytes in brackets):\n\n");
  std::printf("| size | codec | container / raw bytes | get (shm) | get-grpc | lookup |\n|---|---|---:|---:|---:|---:|\n");
  for (const auto& e : entries) {
    if (e.codec == "raw") continue;
    const Row* raw_get = find("get", e.size, "raw", "adaptcache-remote");
    const Row* g = find("get", e.size, e.codec, "adaptcache-remote");
    const Row* raw_grpc = find("get-grpc", e.size, "raw", "adaptcache-remote");
    const Row* gg = find("get-grpc", e.size, e.codec, "adaptcache-remote");
    const Row* raw_lk = find("lookup", e.size, "raw", "adaptcache-remote");
    const Row* l = find("lookup", e.size, e.codec, "adaptcache-remote");
    const Entry* raw_e = nullptr;
    for (const auto& x : entries) {
      if (x.size == e.size && x.codec == "raw") raw_e = &x;
    }
    std::printf("| %s | %s | %.3f (%zu B) | %.2fx | %.2fx | %.2fx |\n", e.size.c_str(), e.codec.c_str(),
                static_cast<double>(e.container.size()) / static_cast<double>(raw_e->container.size()),
                e.container.size(), g->ms_median / raw_get->ms_median, gg->ms_median / raw_grpc->ms_median,
                l->ms_median / raw_lk->ms_median);
  }
  const auto pass = Components(entries);
  // Where a raw remote get's time goes, in this run's own numbers.
  std::printf("\nWhere a raw remote get's time goes (this run):\n\n");
  for (const char* size : {"1MiB", "16MiB"}) {
    const Row* rem = find("get", size, "raw", "adaptcache-remote");
    const Row* plain = find("get", size, "raw", "redis-plain");
    const Row* resp = find("get", size, "raw", "redis-resp");
    const Row* ssd = find("get", size, "raw", "adaptcache-ssd");
    const Row* rpc = find("lookup", size, "raw", "adaptcache-ssd");  // served from memory: ~one unary RPC
    const PassCost pc = pass.at(size);
    // Over redis-plain the remote path adds: the remote tier's payload CRC and the tier
    // manager's whole-container CRC in B, the client's CopyOut (memcpy + CRC); B's memcpy
    // into the DRAM extent stands in for redis-plain's memcpy into the caller's buffer.
    const double passes = 3 * pc.crc_ms + pc.memcpy_ms;
    const double gap = rem->ms_median - plain->ms_median;
    std::printf("- %s: remote get %.2f ms vs redis-plain %.2f ms (hiredis GET + memcpy into the caller's buffer; "
                "the socket alone, redis-resp, %.2f ms): +%.2f ms. Over redis-plain the remote path adds 3 CRC32C "
                "passes and 1 memcpy of the container (B: payload CRC, whole-container CRC, and its memcpy into the "
                "DRAM extent stands in for redis-plain's; client: CopyOut's memcpy + CRC) = %.2f ms at this "
                "machine's %.2f ms per memcpy and %.2f ms per CRC, and one unary RPC round trip (the SSD daemon's "
                "Lookup) %.2f ms: %.2f of the %.2f ms; the other %.2f ms are not one pass (see the CPU figures).",
                size, rem->ms_median, plain->ms_median, resp->ms_median, gap, passes, pc.memcpy_ms, pc.crc_ms,
                rpc->ms_median, passes + rpc->ms_median, gap, gap - passes - rpc->ms_median);
    if (acct.has(1)) {
      const double total = rem->per_op[0].cpu_ms + rem->per_op[1].cpu_ms + rem->per_op[3].cpu_ms;
      std::printf(" CPU per remote get: daemon B %.2f ms (%+.2f ms against the plain hiredis client's %.2f ms per GET), "
                  "Redis %.2f ms, client %.2f ms; %.2f ms of CPU in %.2f ms of wall time (%.0f%% of the machine's %u "
                  "CPUs); minor page faults per get: B %.0f, the redis-plain client %.0f per GET.",
                  rem->per_op[1].cpu_ms, rem->per_op[1].cpu_ms - plain->per_op[0].cpu_ms, plain->per_op[0].cpu_ms,
                  rem->per_op[3].cpu_ms, rem->per_op[0].cpu_ms, total, rem->ms_median,
                  100.0 * total / (rem->ms_median * std::thread::hardware_concurrency()),
                  std::thread::hardware_concurrency(), rem->per_op[1].minflt, plain->per_op[0].minflt);
    }
    std::printf(" SSD hit %.2f ms (remote / ssd %.2fx).\n", ssd->ms_median, rem->ms_median / ssd->ms_median);
  }
  if (acct.has(1)) {
    std::printf("\nCPU time and minor page faults per operation of each process (all threads; mean over the "
                "timed repetitions, sampled around each operation; redis = the 3 masters together; raw entries):\n\n");
    std::printf("| op | size | path | ms (median) | client CPU ms | B CPU ms | ssd daemon CPU ms | redis CPU ms "
                "| client minflt | B minflt | ssd daemon minflt |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (const auto& r : rows) {
      if (r.codec != "raw" || r.op == "lookup") continue;
      std::printf("| %s | %s | %s | %.3f | %.2f | %.2f | %.2f | %.2f | %.0f | %.0f | %.0f |\n", r.op.c_str(),
                  r.size.c_str(), r.path.c_str(), r.ms_median, r.per_op[0].cpu_ms, r.per_op[1].cpu_ms,
                  r.per_op[2].cpu_ms, r.per_op[3].cpu_ms, r.per_op[0].minflt, r.per_op[1].minflt, r.per_op[2].minflt);
    }
  }

  if (!a.csv.empty()) {
    std::ofstream out(a.csv);
    out << "op,size,codec,path,ms_median,gbps_median\n";
    for (const auto& r : rows) {
      out << absl::StrFormat("%s,%s,%s,%s,%.4f,%.6g\n", r.op, r.size, r.codec, r.path, r.ms_median, r.gbps_median);
    }
    if (!out) Die("write " + a.csv);
  }
  return 0;
}

}  // namespace
}  // namespace adaptcache::bench

int main(int argc, char** argv) {
  using namespace adaptcache::bench;
  Args a;
  CLI::App app{"remote_bench: remote (Redis Cluster) tier hits vs SSD hits vs plain hiredis"};
  app.add_option("--phase", a.phase, "put or measure")->required()->check(CLI::IsMember({"put", "measure"}));
  app.add_option("--a", a.a, "socket of daemon A (remote write-through; put phase)");
  app.add_option("--b", a.b, "socket of daemon B (remote reader; measure phase)");
  app.add_option("--ssd", a.ssd, "socket of the SSD daemon")->required();
  app.add_option("--nodes", a.nodes, "Redis Cluster masters, host:port,...")->required();
  app.add_option("--prefix", a.prefix, "the daemons' --remote-key-prefix")->required();
  app.add_option("--reps", a.reps, "timed repetitions per figure")->capture_default_str();
  app.add_option("--warmup", a.warmup, "untimed repetitions first")->capture_default_str();
  app.add_option("--csv", a.csv, "write op,size,codec,path,ms_median,gbps_median here");
  app.add_option("--pids", a.pids, "b=PID,ssd=PID,redis=PID+PID+PID: report CPU time and page faults per op");
  CLI11_PARSE(app, argc, argv);
  if (a.phase == "put") {
    if (a.a.empty()) Die("--phase put needs --a");
    return PhasePut(a);
  }
  if (a.b.empty()) Die("--phase measure needs --b");
  if (a.reps < 1) Die("--reps must be >= 1");
  return PhaseMeasure(a);
}
