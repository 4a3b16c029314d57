#include "server/daemon.h"

#include <errno.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "server/metrics.h"
#include "server/metrics_http.h"
#include "server/policy_runner.h"
#include "server/server_metrics.h"
#include "server/service.h"
#include "spdlog/spdlog.h"
#include "kernels/codec.h"
#include "server/tier_metrics.h"
#include "server/unix_listener.h"
#include "storage/dram_tier.h"
#include "storage/tier_manager.h"

namespace adaptcache::server {
namespace {

constexpr auto kDrainDeadline = std::chrono::seconds(5);

// Creates the socket's directory (0700) if missing and removes a stale socket left by
// a crashed daemon; refuses to start if a live daemon answers on it.
absl::Status PrepareSocket(const std::string& path) {
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) {
    std::filesystem::create_directories(dir.parent_path(), ec);
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot create socket directory ", dir.string(), ": ", std::strerror(errno)));
    }
  } else if (!std::filesystem::is_directory(dir, ec)) {
    return absl::FailedPreconditionError(absl::StrCat(dir.string(), " is not a directory"));
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return absl::OkStatus();
  if (!S_ISSOCK(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " exists and is not a socket; refusing to replace it"));
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError("socket(AF_UNIX) failed");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  int err = errno;
  ::close(fd);
  if (rc == 0) {
    return absl::AlreadyExistsError(absl::StrCat("another daemon is serving on ", path));
  }
  if (err != ECONNREFUSED) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot probe existing socket ", path, ": ", std::strerror(err)));
  }
  spdlog::warn("removing stale socket {}", path);
  ::unlink(path.c_str());
  return absl::OkStatus();
}

// Written to a temporary name and renamed, so readers never see half a file.
absl::Status WriteReadyFile(const std::string& path, const std::string& body) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << body;
    if (!out.good()) return absl::InternalError(absl::StrCat("cannot write ", tmp));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot rename ", tmp, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

class Reaper {
 public:
  Reaper(TierManager* tm, CacheService* service, std::chrono::milliseconds every)
      : thread_([this, tm, service, every] {
          std::unique_lock<std::mutex> lock(mu_);
          while (!stop_) {
            cv_.wait_for(lock, every, [this] { return stop_; });
            if (stop_) break;
            lock.unlock();
            tm->ReapExpired();
            service->ReapPending();
            service->EnforceSsdQuotas();
            lock.lock();
          }
        }) {}
  ~Reaper() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

SsdTierOptions SsdOptionsFrom(const ServerConfig& cfg) {
  SsdTierOptions o;
  o.dir = cfg.ssd_dir;
  o.segment_bytes = cfg.ssd_segment_bytes;
  o.segment_count = cfg.ssd_segment_count;
  o.admission.admit_after_accesses = cfg.ssd_admit_after_accesses;
  o.admission.write_budget_bytes_per_s = cfg.ssd_write_budget;
  o.index_sync = cfg.ssd_index_sync;
  return o;
}

// Turns ssd_dir "auto" and segment_count 0 into the directory and count to use.
absl::Status ResolveSsd(ServerConfig& cfg) {
  if (cfg.ssd_dir == "auto") {
    auto dir = DefaultSsdDir();
    if (!dir.ok()) return dir.status();
    cfg.ssd_dir = *dir;
  }
  auto count = AutoSsdSegmentCount(cfg.ssd_dir, cfg.ssd_segment_bytes, cfg.ssd_segment_count);
  if (!count.ok()) return count.status();
  cfg.ssd_segment_count = *count;
  return absl::OkStatus();
}

// Writes DRAM-only entries to SSD, bounded by [ssd] flush_timeout_ms; logs progress.
void FlushDramToSsd(TierManager* tm, const ServerConfig& cfg) {
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::milliseconds(cfg.ssd_flush_timeout_ms);
  auto last_log = start;
  const SsdFlushResult r = tm->FlushToSsd(deadline, [&](const SsdFlushResult& p) {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_log < std::chrono::seconds(1)) return;
    last_log = now;
    spdlog::info("shutdown flush: {} of {} DRAM-only entries written to SSD ({} bytes)",
                 p.written, p.candidates, p.written_bytes);
  });
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const uint64_t lost = r.candidates - r.written;
  auto level = lost > 0 ? spdlog::level::warn : spdlog::level::info;
  spdlog::log(level, "shutdown flush: {} of {} DRAM-only entries written to SSD ({} bytes) in "
              "{:.2f} s{}{}", r.written, r.candidates, r.written_bytes, secs,
              r.failed > 0 ? absl::StrCat("; ", r.failed, " failed or changed") : "",
              r.timed_out ? absl::StrCat("; stopped at the ", cfg.ssd_flush_timeout_ms,
                                         " ms limit, the rest are lost")
                          : "");
}

// Full metadata (codec config name) for containers read back from SSD.
absl::StatusOr<EntryMeta> DescribeWithCodec(ConstByteSpan container) {
  auto meta = DescribeFromHeader(container);
  if (!meta.ok()) return meta.status();
  auto view = ParseContainer(container, /*verify_payload_crc=*/false);  // CRC checked above
  if (!view.ok()) return view.status();
  auto cfg = ConfigOf(*view);
  if (!cfg.ok()) return cfg.status();
  meta->codec = cfg->Name();
  return meta;
}

int Fail(const absl::Status& st) {
  spdlog::critical("{}", std::string(st.message()));
  return 1;
}

absl::Status WithPrefix(absl::string_view prefix, const absl::Status& st) {
  return absl::Status(st.code(), absl::StrCat(prefix, st.message()));
}

// Sizes the pool from the machine when it is "auto" (0).
absl::Status SizePool(ServerConfig& cfg) {
  if (cfg.pool_bytes == 0) {
    auto bytes = AutoPoolBytes(cfg.shm_dir);
    if (!bytes.ok()) return WithPrefix("cannot size the pool: ", bytes.status());
    cfg.pool_bytes = *bytes;
  }
  if (cfg.max_entry_bytes > cfg.pool_bytes / 2) {
    spdlog::warn("max_entry_bytes {} exceeds half the pool ({}); larger entries are refused",
                 cfg.max_entry_bytes, cfg.pool_bytes / 2);
  }
  return absl::OkStatus();
}

std::string GiB(uint64_t bytes) { return absl::StrFormat("%.1f GiB", static_cast<double>(bytes) / (1ull << 30)); }

// The shared memory this process has mapped (RssShmem of /proc/self/status): while mlock
// faults the pool in, how much of it is locked so far.
uint64_t MappedShmemBytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("RssShmem:", 0) != 0) continue;
    uint64_t kb = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(absl::StripSuffix(line.substr(9), "kB")), &kb)) return kb << 10;
  }
  return 0;
}

// Bytes allocated so far to this process's pool file in shm_dir.
uint64_t PoolFileAllocatedBytes(const std::string& shm_dir, const std::string& pool_name) {
  std::error_code ec;
  for (std::filesystem::directory_iterator it(shm_dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (PoolFileOwner(it->path().filename().string(), pool_name) != ::getpid()) continue;
    struct stat st {};
    if (::stat(it->path().c_str(), &st) == 0) return static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return 0;
}

// While the storage tiers are created, logs every `every` how far the DRAM pool has come:
// posix_fallocate of the pool file, then mlock faulting every page in. A pool of tens of
// GiB takes seconds to minutes, and the daemon would otherwise be silent all that time.
class StartupProgress {
 public:
  // Copies what it needs: CreateTiers changes `cfg` (the SSD directory) meanwhile.
  StartupProgress(const ServerConfig& cfg, std::chrono::milliseconds every)
      : start_(std::chrono::steady_clock::now()),
        shm_dir_(cfg.shm_dir),
        pool_name_(cfg.pool_name),
        total_(cfg.pool_bytes),
        mlock_(cfg.mlock),
        ssd_(cfg.SsdOn()),
        thread_([this, every] { Run(every); }) {}
  ~StartupProgress() {
    {
      std::lock_guard<std::mutex> l(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  void Run(std::chrono::milliseconds every) {
    std::unique_lock<std::mutex> l(mu_);
    while (!cv_.wait_for(l, every, [this] { return done_; })) {
      const uint64_t total = total_;
      const uint64_t allocated = std::min(total, PoolFileAllocatedBytes(shm_dir_, pool_name_));
      const uint64_t locked = std::min(total, MappedShmemBytes());
      std::string step;
      if (allocated < total) {
        step = "allocating";
      } else if (mlock_ && locked < total) {
        step = "locking";
      } else {
        step = ssd_ ? "opening the SSD tier" : "finishing";
      }
      const auto pct = [total](uint64_t b) {
        return 100.0 * static_cast<double>(b) / static_cast<double>(std::max<uint64_t>(total, 1));
      };
      spdlog::info("starting ({:.1f} s): DRAM pool {} of {} allocated ({:.0f}%){}; {}", seconds(), GiB(allocated),
                   GiB(total), pct(allocated),
                   mlock_ ? absl::StrFormat(", %s locked (%.0f%%)", GiB(locked), pct(locked)) : std::string(), step);
    }
  }

  const std::chrono::steady_clock::time_point start_;
  const std::string shm_dir_, pool_name_;
  const uint64_t total_;
  const bool mlock_, ssd_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;  // last: started once the rest is initialised
};

// How often StartupProgress logs: $ADAPTCACHE_STARTUP_PROGRESS_MS (tests), else 2 s.
std::chrono::milliseconds StartupProgressInterval() {
  const char* env = std::getenv("ADAPTCACHE_STARTUP_PROGRESS_MS");
  uint32_t ms = 0;
  if (env != nullptr && absl::SimpleAtoi(env, &ms) && ms > 0) return std::chrono::milliseconds(ms);
  return std::chrono::milliseconds(2000);
}

absl::StatusOr<RemoteTierOptions> RemoteOptionsFrom(const ServerConfig& cfg) {
  RemoteTierOptions o;
  for (absl::string_view n : absl::StrSplit(cfg.remote_nodes, ',', absl::SkipWhitespace())) {
    o.nodes.emplace_back(absl::StripAsciiWhitespace(n));
  }
  if (!cfg.remote_password_file.empty()) {
    std::ifstream in(cfg.remote_password_file);
    if (!in) {
      return absl::NotFoundError(
          absl::StrCat("cannot read password_file '", cfg.remote_password_file, "'"));
    }
    std::getline(in, o.password);
    while (!o.password.empty() && (o.password.back() == '\r' || o.password.back() == ' ')) {
      o.password.pop_back();
    }
  }
  auto mode = ParseRemoteWriteMode(cfg.remote_write_mode);
  if (!mode.ok()) return mode.status();
  o.write_mode = *mode;
  o.timeout_ms = cfg.remote_timeout_ms;
  o.max_value_bytes = cfg.remote_max_value_bytes;
  o.queue_bytes = cfg.remote_queue_bytes;
  o.key_prefix = cfg.remote_key_prefix;
  return o;
}

absl::StatusOr<std::unique_ptr<TierManager>> CreateTiers(ServerConfig& cfg) {
  DramTierOptions opts;
  opts.capacity_bytes = cfg.pool_bytes;
  opts.shm_dir = cfg.shm_dir;
  opts.name = cfg.pool_name;
  opts.huge_pages = cfg.huge_pages;
  opts.mlock = cfg.mlock;
  opts.default_lease_ms = cfg.lease_default_ms;
  opts.max_lease_ms = cfg.lease_max_ms;
  opts.max_leases = cfg.max_leases;
  opts.reservation_ms = cfg.reservation_ms;
  TierManagerOptions topts;
  topts.dram = opts;
  if (cfg.SsdOn()) {
    if (auto st = ResolveSsd(cfg); !st.ok()) return WithPrefix("SSD tier: ", st);
    topts.ssd = SsdOptionsFrom(cfg);
  }
  topts.promote_after_hits = cfg.ssd_promote_after_hits;
  topts.demote_on_evict = cfg.ssd_demote_on_evict;
  if (cfg.RemoteOn()) {
    auto ro = RemoteOptionsFrom(cfg);
    if (!ro.ok()) return WithPrefix("remote tier: ", ro.status());
    topts.remote = std::move(*ro);
  }
  topts.describe = DescribeWithCodec;
  auto tm = TierManager::Create(std::move(topts));
  if (!tm.ok()) return WithPrefix("cannot create the storage tiers: ", tm.status());
  return tm;
}

absl::StatusOr<std::unique_ptr<TierManager>> CreateTiersWithProgress(ServerConfig& cfg) {
  spdlog::info("allocating the DRAM pool: {} bytes ({}) in '{}'{}{}", cfg.pool_bytes, GiB(cfg.pool_bytes),
               cfg.shm_dir, cfg.mlock ? ", locked in memory" : "",
               cfg.pool_bytes >= (4ull << 30) ? "; a large pool takes a while (progress every few seconds)" : "");
  StartupProgress progress(cfg, StartupProgressInterval());
  auto tm = CreateTiers(cfg);
  if (tm.ok()) spdlog::info("storage tiers ready in {:.1f} s", progress.seconds());
  return tm;
}

void LogTiers(const TierManager& tiers, const ServerConfig& cfg) {
  if (const auto ss = tiers.SsdStats()) {
    spdlog::info("SSD tier at '{}': {} segments of {} bytes, {} entries recovered{}", cfg.ssd_dir,
                 ss->slots, cfg.ssd_segment_bytes, ss->entries,
                 ss->rebuilt_index && ss->entries > 0 ? " (index rebuilt from the log)" : "");
  } else {
    spdlog::info("no SSD tier ({}): DRAM evictions are losses",
                 cfg.ssd_dir.empty() ? "ssd.dir = \"\"" : "ssd.enabled = false");
  }
  if (const auto rs = tiers.RemoteStats()) {
    spdlog::info("remote tier: Redis {} ({} masters in the slot map, {}), write mode {}",
                 cfg.remote_nodes, rs->nodes, rs->up ? "reachable" : "NOT reachable yet",
                 cfg.remote_write_mode);
  }
  const auto& ps = tiers.pool_status();
  spdlog::debug("pool {} ({} bytes, id {}): mlock {}, huge pages {} (shmem mode '{}')",
               tiers.shm_path(), tiers.pool_size(), tiers.pool_id(),
               ps.mlocked ? "yes" : "no (" + ps.mlock_error + ")",
               ps.huge_pages_effective ? "yes" : "no", ps.thp_shmem_mode);
}

absl::StatusOr<std::unique_ptr<ServerMetrics>> CreateMetrics(MetricsRegistry* registry, TierManager* tiers) {
  auto metrics = ServerMetrics::Create(registry, tiers);
  if (!metrics.ok()) return WithPrefix("metrics: ", metrics.status());
  if (auto st = RegisterTierMetrics(registry, tiers); !st.ok()) return WithPrefix("metrics: ", st);
  return metrics;
}

// The placement policy and mover (server/policy_runner.h); null for policy "none".
absl::StatusOr<std::unique_ptr<PolicyRunner>> CreatePolicyRunner(const ServerConfig& cfg, TierManager* tiers,
                                                                 MetricsRegistry* registry, const Auth* auth) {
  if (cfg.policy == "none") return nullptr;
  auto popts = PolicyRunnerOptionsFrom(cfg);
  if (popts.ok() && auth->multi_tenant()) {  // plans keep each tenant within its quotas
    bool any = false;
    for (const auto& t : auth->tenants()) {
      popts->group_caps.push_back(policy::GroupCapacity{t->dram_bytes, t->ssd_bytes});
      any |= t->dram_bytes != 0 || t->ssd_bytes != 0;
    }
    if (any) {
      popts->groups = [auth] { return auth->NamespaceOwners(); };
    } else {
      popts->group_caps.clear();
    }
  }
  auto runner = popts.ok() ? PolicyRunner::Create(*popts, tiers, registry)
                           : absl::StatusOr<std::unique_ptr<PolicyRunner>>(popts.status());
  if (!runner.ok()) return WithPrefix("policy: ", runner.status());
  spdlog::info("placement policy {} every {} ms", cfg.policy, cfg.policy_interval_ms);
  return runner;
}

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* what) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", what, " '", path, "'"));
  std::stringstream ss;
  ss << in.rdbuf();
  if (ss.str().find("-----BEGIN") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(what, " '", path, "' is not PEM"));
  }
  return ss.str();
}

// TLS (mutual with tls_client_ca), or plain TCP with insecure_tcp (Validate allows no other).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> TcpCredentials(const ServerConfig& cfg) {
  if (cfg.tls_cert.empty()) {
    spdlog::warn("INSECURE: TCP listener {} has no TLS (--insecure-tcp): anyone who reaches it "
                 "can read and delete entries, and bearer tokens travel in clear",
                 cfg.tcp_listen);
    return grpc::InsecureServerCredentials();
  }
  grpc::SslServerCredentialsOptions o;
  auto cert = ReadPem(cfg.tls_cert, "tls_cert");
  if (!cert.ok()) return cert.status();
  auto key = ReadPem(cfg.tls_key, "tls_key");
  if (!key.ok()) return key.status();
  o.pem_key_cert_pairs.push_back({*key, *cert});
  if (!cfg.tls_client_ca.empty()) {
    auto ca = ReadPem(cfg.tls_client_ca, "tls_client_ca");
    if (!ca.ok()) return ca.status();
    o.pem_root_certs = *ca;
    o.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(o);
}

struct GrpcServing {
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<UnixListener> unix;  // accepts on the socket; stopped before Shutdown
};

// Listens on the socket (0600) and the TCP address if configured; `tcp_port` receives
// the port bound.
absl::StatusOr<GrpcServing> StartGrpcServer(const ServerConfig& cfg, CacheService* service, Auth* auth,
                                            int* tcp_port) {
  const int threads = static_cast<int>(cfg.ThreadCount());
  const int pollers = std::max(2, threads / 4);
  grpc::ServerBuilder builder;
  // Pollers count against the quota too. Put and Get run on the callback API and take
  // none of these threads (service.h).
  grpc::ResourceQuota quota("adaptcached");
  quota.SetMaxThreads(threads + pollers);
  builder.SetResourceQuota(quota);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, pollers);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                             static_cast<int>(cfg.max_streams_per_connection));
  if (cfg.keepalive_ms != 0) {
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(cfg.keepalive_ms));
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                               static_cast<int>(cfg.keepalive_timeout_ms));
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  }
  // Clients may ping as often as every 10 s; more often, gRPC's ping strikes send GOAWAY.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10'000);
  if (cfg.max_connection_idle_ms != 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                               static_cast<int>(cfg.max_connection_idle_ms));
  }
  if (cfg.max_connection_age_ms != 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS,
                               static_cast<int>(cfg.max_connection_age_ms));
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                               static_cast<int>(std::min<uint64_t>(
                                   cfg.max_stream_ms == 0 ? INT32_MAX : cfg.max_stream_ms, INT32_MAX)));
  }
  builder.SetMaxReceiveMessageSize(static_cast<int>(std::min<uint64_t>(cfg.max_frame_bytes, INT32_MAX)));
  builder.SetMaxSendMessageSize(static_cast<int>(cfg.stream_chunk_bytes + (64 << 10)));
  // gRPC sets SO_REUSEPORT by default: a second daemon would share the port silently.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  GrpcServing out;
  // Tenants need the peer's uid (SO_PEERCRED): the daemon then accepts on the socket
  // itself. A single-tenant daemon leaves the socket to gRPC.
  if (!cfg.socket.empty() && auth->multi_tenant()) {
    auto l = UnixListener::Listen(cfg.socket);
    if (!l.ok()) return l.status();
    out.unix = std::move(*l);
  } else if (!cfg.socket.empty()) {
    builder.AddListeningPort("unix:" + cfg.socket, grpc::InsecureServerCredentials());
  }
  if (!cfg.tcp_listen.empty()) {
    auto creds = TcpCredentials(cfg);
    if (!creds.ok()) return creds.status();
    builder.AddListeningPort(cfg.tcp_listen, *creds, tcp_port);
  }
  builder.RegisterService(service);
  out.server = builder.BuildAndStart();
  if (!out.server || (!cfg.tcp_listen.empty() && *tcp_port == 0)) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", cfg.socket.empty() ? "" : "unix:" + cfg.socket, cfg.tcp_listen.empty() ? "" : " / ",
        cfg.tcp_listen, cfg.tcp_listen.empty() ? "" : absl::StrCat(" (is ", cfg.tcp_listen, " in use by another process?)")));
  }
  if (!cfg.socket.empty() && !out.unix) ::chmod(cfg.socket.c_str(), 0600);
  if (out.unix) out.unix->Start(out.server.get(), auth);
  return out;
}

// Serves /metrics when configured; returns the port bound (0 when off).
absl::StatusOr<int> StartMetricsHttp(const ServerConfig& cfg, MetricsHttpServer* http) {
  if (cfg.metrics_listen.empty()) return 0;
  std::string host;
  int port = 0;
  (void)ParseHostPort(cfg.metrics_listen, &host, &port);  // validated with the config
  return http->Start(host, port);
}

// Logs the listeners and writes the ready file.
void AnnounceServing(const ServerConfig& cfg, const TierManager& tiers, int tcp_port, int metrics_port) {
  spdlog::info("adaptcached {} serving on {}{}{}; metrics on {}; {} threads, "
               "{} streams", kVersion,
               cfg.socket.empty() ? "" : "unix:" + cfg.socket, cfg.tcp_listen.empty() ? "" : " and ",
               cfg.tcp_listen.empty() ? "" : absl::StrCat(cfg.tcp_listen, " (port ", tcp_port, ")"),
               cfg.metrics_listen.empty() ? "off" : absl::StrCat("port ", metrics_port), cfg.ThreadCount(),
               cfg.max_streams);
  if (cfg.ready_file.empty()) return;
  auto st = WriteReadyFile(
      cfg.ready_file,
      absl::StrCat("pid=", ::getpid(), "\nsocket=", cfg.socket, "\ntcp_port=", tcp_port,
                   "\nmetrics_port=", metrics_port, "\nshm_path=", tiers.shm_path(),
                   "\npool_size=", tiers.pool_size(), "\npool_id=", tiers.pool_id(),
                   "\nssd_dir=", tiers.HasSsd() ? cfg.ssd_dir : "", "\n"));
  if (!st.ok()) spdlog::error("{}", std::string(st.message()));
}

sigset_t ShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  return set;
}

// Blocks until SIGTERM or SIGINT (blocked in every thread: BlockShutdownSignals); a
// SIGHUP meanwhile reloads the tokens file.
int WaitForShutdownSignal(Auth* auth) {
  const sigset_t set = ShutdownSignals();
  while (true) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (sig != SIGHUP) return sig;
    auto st = auth->ReloadTokens();
    if (st.ok()) {
      spdlog::info("SIGHUP: tokens file reloaded ({} tokens)", auth->token_count());
    } else {
      spdlog::error("SIGHUP: tokens file not reloaded, the old tokens stay: {}", std::string(st.message()));
    }
  }
}

void RemoveRunFiles(const ServerConfig& cfg) {
  if (!cfg.socket.empty()) ::unlink(cfg.socket.c_str());
  if (!cfg.ready_file.empty()) ::unlink(cfg.ready_file.c_str());
}

}  // namespace

void BlockShutdownSignals() {
  const sigset_t set = ShutdownSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
}

int RunDaemon(ServerConfig cfg) {
  if (auto st = SizePool(cfg); !st.ok()) return Fail(st);
  if (!cfg.socket.empty()) {
    if (auto st = PrepareSocket(cfg.socket); !st.ok()) return Fail(st);
  }
  auto tm = CreateTiersWithProgress(cfg);
  if (!tm.ok()) return Fail(tm.status());
  TierManager* const tiers = tm->get();
  LogTiers(*tiers, cfg);

  MetricsRegistry registry;
  auto metrics = CreateMetrics(&registry, tiers);
  if (!metrics.ok()) return Fail(metrics.status());
  auto auth = Auth::Create(cfg.tenants_file, cfg.tokens_file);
  if (!auth.ok()) return Fail(WithPrefix("auth: ", auth.status()));
  // Destroyed after the gRPC server has stopped, so no request thread is left calling it.
  auto policy_runner = CreatePolicyRunner(cfg, tiers, &registry, auth->get());
  if (!policy_runner.ok()) return Fail(policy_runner.status());
  if ((*auth)->multi_tenant()) {
    spdlog::info("{} tenants from '{}', {} bearer tokens; every call must identify one",
                 (*auth)->tenants().size(), cfg.tenants_file, (*auth)->token_count());
    if (auto st = RegisterTenantMetrics(&registry, tiers, auth->get()); !st.ok()) return Fail(st);
  }
  CacheService service(cfg, tiers, metrics->get(), policy_runner->get(), auth->get());

  int tcp_port = 0;
  auto serving = StartGrpcServer(cfg, &service, auth->get(), &tcp_port);
  if (!serving.ok()) return Fail(serving.status());
  grpc::Server* const server = serving->server.get();
  MetricsHttpServer http(&registry, [&service] { return service.serving(); });
  auto metrics_port = StartMetricsHttp(cfg, &http);
  if (!metrics_port.ok()) {
    if (serving->unix) serving->unix->Stop();
    server->Shutdown();
    return Fail(metrics_port.status());
  }
  Reaper reaper(tiers, &service, std::chrono::milliseconds(cfg.reap_interval_ms));
  AnnounceServing(cfg, *tiers, tcp_port, *metrics_port);

  spdlog::info("signal {}: shutting down", WaitForShutdownSignal(auth->get()));
  service.SetServing(false);
  if (serving->unix) serving->unix->Stop();
  server->Shutdown(std::chrono::system_clock::now() + kDrainDeadline);
  server->Wait();
  policy_runner->reset();  // no mover moves entries while they are flushed
  if (tiers->HasSsd() && cfg.ssd_flush_on_shutdown) FlushDramToSsd(tiers, cfg);
  http.Stop();
  RemoveRunFiles(cfg);
  spdlog::info("stopped");
  return 0;  // the reaper, then the tiers (SSD flushed, pool file unlinked) are destroyed
}

}  // namespace adaptcache::server
