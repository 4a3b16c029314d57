#include "client/client.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <functional>
#include <optional>
#include <random>
#include <sstream>
#include <thread>

#include <google/protobuf/wire_format_lite.h>
#include <grpcpp/grpcpp.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "adaptcache/v1/cache.grpc.pb.h"
#include "common/crc32c.h"
#include "common/status_kinds.h"

namespace adaptcache::client {

namespace v1 = ::adaptcache::v1;

// The client's mapping of the daemon's pool. Shared by every LeasedEntry that points
// into it, so it outlives a remap.
struct PoolMapping {
  std::byte* base = nullptr;
  uint64_t size = 0;
  uint64_t pool_id = 0;
  std::string path;
  dev_t dev = 0;
  ino_t ino = 0;
  std::mutex attach_mu;
  std::map<std::string, std::shared_ptr<void>> attachments;  // Client::AttachToPool
  ~PoolMapping() {
    attachments.clear();  // e.g. cudaHostUnregister, while the memory is still mapped
    if (base != nullptr) ::munmap(base, size);
  }
  // True when [offset, offset + length) lies inside the mapping.
  bool Contains(uint64_t offset, uint64_t length) const {
    return offset <= size && length <= size - offset;
  }
};

namespace {

// Marks a grpc::Status whose overload retries ran out (it has no payloads of its own).
constexpr char kOverloadedDetail[] = "adaptcache:overloaded";

absl::Status FromGrpc(const grpc::Status& st) {
  if (st.ok()) return absl::OkStatus();
  // gRPC and Abseil share the canonical code numbering.
  absl::Status out(static_cast<absl::StatusCode>(st.error_code()), absl::StrCat("adaptcached: ", st.error_message()));
  if (st.error_details() == kOverloadedDetail) out = WithKind(std::move(out), ErrorKind::kOverloaded);
  return out;
}

// A refusal the daemon asks to retry: its own, with the hint, or gRPC's thread-pool one.
bool IsOverload(const grpc::Status& st, const grpc::ClientContext& ctx, uint32_t* hint_ms) {
  if (st.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED) return false;
  const auto& md = ctx.GetServerTrailingMetadata();
  if (auto it = md.find("retry-after-ms"); it != md.end()) {
    uint32_t v = 0;
    const std::string s(it->second.data(), it->second.size());
    if (absl::SimpleAtoi(s, &v)) *hint_ms = v;
    return true;
  }
  return st.error_message().find("Threadpool Exhausted") != std::string::npos;
}

grpc::Status CallWithRetry(const ClientOptions& opts,
                           const std::function<grpc::Status(grpc::ClientContext*)>& attempt) {
  using Clock = std::chrono::system_clock;
  const auto start = Clock::now();
  const auto deadline = opts.rpc_timeout.count() > 0 ? start + opts.rpc_timeout : Clock::time_point::max();
  const auto retry_until = std::min(deadline, start + opts.overload_retry_for);
  thread_local std::minstd_rand rng(std::random_device{}());
  std::chrono::milliseconds backoff(0);
  for (uint32_t tries = 1;; ++tries) {
    grpc::ClientContext ctx;
    if (deadline != Clock::time_point::max()) ctx.set_deadline(deadline);
    if (!opts.token.empty()) ctx.AddMetadata("authorization", "Bearer " + opts.token);
    grpc::Status st = attempt(&ctx);
    uint32_t hint_ms = 5;
    if (st.ok() || opts.overload_retry_for.count() <= 0 || !IsOverload(st, ctx, &hint_ms)) return st;
    backoff = std::min(opts.overload_backoff_max,
                       std::max(std::chrono::milliseconds(hint_ms), backoff * 2));
    // Full jitter in [backoff/2, backoff], so refused clients do not return in step.
    const auto half = backoff.count() / 2;
    const auto sleep = std::chrono::milliseconds(
        half + std::uniform_int_distribution<int64_t>(0, std::max<int64_t>(0, backoff.count() - half))(rng));
    if (Clock::now() + sleep >= retry_until) {
      return grpc::Status(st.error_code(),
                          absl::StrCat("overloaded: ", st.error_message(), " (", tries, " tries over ",
                                       std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start)
                                           .count(),
                                       " ms)"),
                          kOverloadedDetail);
    }
    std::this_thread::sleep_for(sleep);
  }
}

std::string ChannelTarget(const std::string& target) {
  if (target.rfind("unix:", 0) == 0) return target;
  if (target.find('/') != std::string::npos || target.find(':') == std::string::npos) {
    return "unix:" + target;
  }
  return target;
}

void ToProtoShape(const KvShape& s, v1::KvShape* p) {
  p->set_layers(s.layers);
  p->set_tokens(s.tokens);
  p->set_kv_heads(s.kv_heads);
  p->set_head_dim(s.head_dim);
  p->set_dtype(static_cast<v1::DType>(static_cast<int>(s.dtype)));
}

absl::StatusOr<EntryInfo> FromProtoEntry(const v1::EntryInfo& e) {
  EntryInfo out;
  if (e.tier() < 0 || e.tier() > 3) return absl::InternalError("server sent an unknown tier");
  out.tier = static_cast<Tier>(e.tier());
  out.codec = e.codec();
  out.stored_bytes = e.stored_bytes();
  out.raw_bytes = e.raw_bytes();
  out.est_quality_loss = e.est_quality_loss();
  out.payload_crc32c = e.payload_crc32c();
  if (!out.hit()) return out;
  auto dt = DTypeFromCode(static_cast<uint32_t>(e.shape().dtype()));
  if (!dt.ok()) return absl::InternalError("server sent an entry with an invalid dtype");
  out.shape = KvShape{e.shape().layers(), e.shape().tokens(), e.shape().kv_heads(), e.shape().head_dim(), *dt};
  if (auto st = ValidateShape(out.shape); !st.ok()) {
    return absl::InternalError(absl::StrCat("server sent an invalid shape: ", st.message()));
  }
  return out;
}

void FillHeader(const PutSpec& spec, v1::PutHeader* h) {
  h->set_namespace_(spec.ns);
  h->set_key(spec.key.ToBytes());
  ToProtoShape(spec.shape, h->mutable_shape());
  h->set_codec(spec.codec);
  h->mutable_token_importance()->Add(spec.token_importance.begin(), spec.token_importance.end());
  h->set_probe_count(spec.probe_count);
  h->mutable_probe_queries()->Add(spec.probe_queries.begin(), spec.probe_queries.end());
  h->set_durable(spec.durable);
}

absl::StatusOr<EntryInfo> FromPutResponse(const v1::PutResponse& resp) {
  auto info = FromProtoEntry(resp.entry());
  if (info.ok()) info->durable = resp.durable();
  return info;
}

absl::Status CheckSpec(const PutSpec& spec, size_t raw_size, bool check_raw) {
  if (auto st = ValidateNamespace(spec.ns); !st.ok()) return st;
  if (auto st = ValidateShape(spec.shape); !st.ok()) return st;
  if (check_raw && raw_size != spec.shape.Bytes()) {
    return absl::InvalidArgumentError(absl::StrCat("tensor is ", raw_size, " bytes; shape ",
                                                   spec.shape.DebugString(), " needs ", spec.shape.Bytes()));
  }
  return absl::OkStatus();
}

// VerifyContainer given `crc`, the CRC32C of `container` that the caller computed while
// copying it (one pass while the bytes are still in cache, not a second trip through memory).
absl::Status VerifyCopied(std::span<const std::byte> container, const EntryInfo& info, uint32_t crc) {
  if (container.size() != info.stored_bytes) {
    return absl::DataLossError(absl::StrCat("container is ", container.size(), " bytes, entry says ",
                                            info.stored_bytes));
  }
  // One pass over the bytes: the entry's CRC covers the whole container (header
  // included), so matching it proves both the content and that this is the same entry.
  if (crc != info.payload_crc32c) {
    return absl::DataLossError("container checksum differs from the entry's (torn copy or reused slot)");
  }
  auto view = ParseContainer(container, /*verify_payload_crc=*/false);
  if (!view.ok()) return view.status();
  if (info.hit() && view->shape != info.shape) {
    return absl::DataLossError("container shape differs from the entry's");
  }
  return absl::OkStatus();
}

}  // namespace

bool EntryInfo::quality_known() const {
  // The daemon's lossless codec is "raw" (also the family name an SSD entry reports
  // before it is read). A lossy entry's estimate is positive once made; 0 means none yet.
  return hit() && (codec == "raw" || (est_quality_loss > 0.f && std::isfinite(est_quality_loss)));
}

absl::Status VerifyContainer(std::span<const std::byte> container, const EntryInfo& info) {
  if (container.size() != info.stored_bytes) return VerifyCopied(container, info, 0);
  return VerifyCopied(container, info, Crc32c(container.data(), container.size()));
}

// State shared by a Client and its LeasedEntry objects.
class ClientCore {
 public:
  ClientCore(std::string target, const ClientOptions& opts, std::shared_ptr<grpc::Channel> ch)
      : target_(std::move(target)), opts_(opts), channel_(std::move(ch)), stub_(v1::AdaptCache::NewStub(channel_)) {}
  ~ClientCore() {
    {
      std::lock_guard<std::mutex> lock(rel_mu_);
      stop_ = true;
    }
    rel_cv_.notify_all();
    if (releaser_.joinable()) releaser_.join();
    (void)Flush();
  }

  // Runs `attempt` with a fresh context, again while the daemon refuses it for overload.
  grpc::Status Call(const std::function<grpc::Status(grpc::ClientContext*)>& attempt) const {
    return CallWithRetry(opts_, attempt);
  }
  v1::AdaptCache::Stub* stub() { return stub_.get(); }
  // Get as a stream of undecoded frames, so data frames can be copied straight into the
  // caller's buffer (the generated stub would copy each one into a std::string first).
  std::unique_ptr<grpc::ClientReader<grpc::ByteBuffer>> RawGet(grpc::ClientContext* ctx, const v1::GetRequest& req) {
    const grpc::internal::RpcMethod method(get_method_.c_str(), grpc::internal::RpcMethod::SERVER_STREAMING,
                                           channel_);
    return std::unique_ptr<grpc::ClientReader<grpc::ByteBuffer>>(
        grpc::internal::ClientReaderFactory<grpc::ByteBuffer>::Create(channel_.get(), method, ctx, req));
  }
  const ClientOptions& opts() const { return opts_; }
  const std::string& target() const { return target_; }

  // The current pool mapping. Re-checks that the pool file is still the one mapped (a
  // restarted daemon unlinks the old one) and remaps when it is not, or when
  // `want_pool_id` (non-zero) names a different pool.
  absl::StatusOr<std::shared_ptr<PoolMapping>> Mapping(uint64_t want_pool_id = 0) {
    std::lock_guard<std::mutex> lock(map_mu_);
    if (mapping_ != nullptr) {
      struct stat st;
      const bool same_file = ::stat(mapping_->path.c_str(), &st) == 0 && st.st_dev == mapping_->dev &&
                             st.st_ino == mapping_->ino;
      if (same_file && (want_pool_id == 0 || want_pool_id == mapping_->pool_id)) return mapping_;
      mapping_.reset();
    }
    auto m = MapPool();
    if (!m.ok()) return m.status();
    if (want_pool_id != 0 && (*m)->pool_id != want_pool_id) {
      return absl::UnavailableError("the daemon's pool changed during the call (daemon restarted?)");
    }
    mapping_ = *m;
    return mapping_;
  }

  // release_batch 1 releases on the caller's thread, at once; larger batches go out from
  // the releaser thread, so the request that fills a batch does not wait for the RPC.
  void QueueRelease(uint64_t lease_id) {
    const size_t batch = std::max<size_t>(1, opts_.release_batch);
    {
      std::lock_guard<std::mutex> lock(rel_mu_);
      pending_.push_back(lease_id);
      if (pending_.size() < batch) return;
      if (batch > 1) {
        if (!releaser_.joinable()) releaser_ = std::thread([this] { ReleaseLoop(); });
        rel_cv_.notify_one();
        return;
      }
    }
    (void)Flush();
  }

  absl::StatusOr<uint32_t> Flush() {
    std::vector<uint64_t> ids;
    {
      std::lock_guard<std::mutex> lock(rel_mu_);
      ids.swap(pending_);
    }
    if (ids.empty()) return 0u;
    v1::ReleaseRequest req;
    req.mutable_lease_ids()->Add(ids.begin(), ids.end());
    v1::ReleaseResponse resp;
    auto st = Call([&](grpc::ClientContext* ctx) { return stub_->Release(ctx, req, &resp); });
    // On failure the leases simply expire on the daemon; nothing is retried.
    if (!st.ok()) return FromGrpc(st);
    return resp.released();
  }

 private:
  void ReleaseLoop() {
    const size_t batch = std::max<size_t>(1, opts_.release_batch);
    std::unique_lock<std::mutex> lock(rel_mu_);
    while (!stop_) {
      rel_cv_.wait(lock, [&] { return stop_ || pending_.size() >= batch; });
      if (stop_) break;
      lock.unlock();
      (void)Flush();
      lock.lock();
    }
  }

  absl::StatusOr<std::shared_ptr<PoolMapping>> MapPool() {
    v1::PoolInfoResponse info;
    auto gst = Call([&](grpc::ClientContext* ctx) { return stub_->PoolInfo(ctx, v1::PoolInfoRequest(), &info); });
    if (!gst.ok()) return FromGrpc(gst);
    if (info.shm_path().empty() || info.size() == 0) {
      return absl::FailedPreconditionError("the daemon offers no shared-memory pool");
    }
    int fd = ::open(info.shm_path().c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      return absl::ErrnoToStatus(errno, absl::StrCat("cannot open pool ", info.shm_path()));
    }
    struct stat st;
    if (::fstat(fd, &st) != 0 || static_cast<uint64_t>(st.st_size) < info.size()) {
      ::close(fd);
      return absl::FailedPreconditionError(
          absl::StrCat("pool file ", info.shm_path(), " is smaller than the advertised ", info.size(), " bytes"));
    }
    void* p = ::mmap(nullptr, info.size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    const int err = errno;
    ::close(fd);
    if (p == MAP_FAILED) {
      return absl::ResourceExhaustedError(absl::StrCat("cannot map pool: ", std::strerror(err)));
    }
    auto m = std::make_shared<PoolMapping>();
    m->base = static_cast<std::byte*>(p);
    m->size = info.size();
    m->pool_id = info.pool_id();
    m->path = info.shm_path();
    m->dev = st.st_dev;
    m->ino = st.st_ino;
    return m;
  }

  const std::string target_;
  const ClientOptions opts_;
  const std::string get_method_ = absl::StrCat("/", v1::AdaptCache::service_full_name(), "/Get");
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::AdaptCache::Stub> stub_;
  std::mutex map_mu_;
  std::shared_ptr<PoolMapping> mapping_;
  std::mutex rel_mu_;
  std::condition_variable rel_cv_;
  std::vector<uint64_t> pending_;
  bool stop_ = false;
  std::thread releaser_;
};

// ---------------------------------------------------------------------------- LeasedEntry

LeasedEntry::LeasedEntry(LeasedEntry&& o) noexcept { *this = std::move(o); }

LeasedEntry& LeasedEntry::operator=(LeasedEntry&& o) noexcept {
  if (this != &o) {
    Release();
    core_ = std::move(o.core_);
    mapping_ = std::move(o.mapping_);
    bytes_ = o.bytes_;
    info_ = std::move(o.info_);
    lease_id_ = o.lease_id_;
    expires_ = o.expires_;
    o.lease_id_ = 0;
    o.bytes_ = {};
  }
  return *this;
}

LeasedEntry::~LeasedEntry() { Release(); }

void LeasedEntry::Release() {
  if (lease_id_ != 0 && core_ != nullptr) core_->QueueRelease(lease_id_);
  lease_id_ = 0;
  bytes_ = {};
  mapping_.reset();
  core_.reset();
}

absl::StatusOr<size_t> LeasedEntry::CopyOut(std::span<std::byte> out) const {
  if (!valid()) return absl::FailedPreconditionError("lease already released");
  if (out.size() < bytes_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("buffer is ", out.size(), " bytes; entry needs ", bytes_.size()));
  }
  // Verify the copy, not the pool: the pool may change under us once the lease ends. The CRC
  // runs over each chunk just copied, while it is still in cache.
  constexpr size_t kChunk = 256 << 10;
  uint32_t crc = 0;
  for (size_t off = 0; off < bytes_.size(); off += kChunk) {
    const size_t n = std::min(kChunk, bytes_.size() - off);
    std::memcpy(out.data() + off, bytes_.data() + off, n);
    crc = Crc32cExtend(crc, out.data() + off, n);
  }
  if (auto st = VerifyCopied(out.first(bytes_.size()), info_, crc); !st.ok()) {
    return absl::NotFoundError(absl::StrCat("entry changed while copying (lease expired?): ", st.message()));
  }
  return bytes_.size();
}

// --------------------------------------------------------------------------------- Client

Client::Client(std::shared_ptr<ClientCore> core) : core_(std::move(core)) {}
Client::~Client() = default;

const std::string& Client::target() const { return core_->target(); }

namespace {

void FromEnv(std::string* v, const char* name) {
  const char* e = std::getenv(name);
  if (v->empty() && e != nullptr) *v = e;
}

absl::StatusOr<std::string> ReadPemFile(const std::string& path, const char* what) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", what, " '", path, "'"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(const ClientOptions& o) {
  if (o.tls_ca_file.empty()) {
    if (!o.tls_cert_file.empty()) return absl::InvalidArgumentError("a TLS client certificate needs tls_ca_file");
    return grpc::InsecureChannelCredentials();
  }
  grpc::SslCredentialsOptions so;
  auto ca = ReadPemFile(o.tls_ca_file, "TLS CA file");
  if (!ca.ok()) return ca.status();
  so.pem_root_certs = *ca;
  if (o.tls_cert_file.empty() != o.tls_key_file.empty()) {
    return absl::InvalidArgumentError("a TLS client certificate and its key go together");
  }
  if (!o.tls_cert_file.empty()) {
    auto cert = ReadPemFile(o.tls_cert_file, "TLS client certificate");
    if (!cert.ok()) return cert.status();
    auto key = ReadPemFile(o.tls_key_file, "TLS client key");
    if (!key.ok()) return key.status();
    so.pem_cert_chain = *cert;
    so.pem_private_key = *key;
  }
  return grpc::SslCredentials(so);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(const std::string& target, const ClientOptions& given) {
  if (target.empty()) return absl::InvalidArgumentError("empty target");
  ClientOptions opts = given;
  FromEnv(&opts.token, "ADAPTCACHE_TOKEN");
  FromEnv(&opts.tls_ca_file, "ADAPTCACHE_TLS_CA");
  FromEnv(&opts.tls_cert_file, "ADAPTCACHE_TLS_CERT");
  FromEnv(&opts.tls_key_file, "ADAPTCACHE_TLS_KEY");
  if (opts.put_frame_bytes == 0) return absl::InvalidArgumentError("put_frame_bytes must be > 0");
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(opts.max_receive_message_bytes);
  args.SetMaxSendMessageSize(-1);
  if (opts.receive_window_bytes > 0) {
    // gRPC 1.51 sizes the window from its BDP estimate while BDP probing is on, ignoring the
    // lookahead; an explicit window therefore turns probing off.
    args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, opts.receive_window_bytes);
  }
  if (opts.http2_max_frame_bytes > 0) args.SetInt(GRPC_ARG_HTTP2_MAX_FRAME_SIZE, opts.http2_max_frame_bytes);
  if (opts.own_connection) args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  const bool unix_target = ChannelTarget(target).rfind("unix:", 0) == 0;
  auto creds = unix_target ? absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>>(
                                 grpc::InsecureChannelCredentials())
                           : ChannelCredentialsFor(opts);
  if (!creds.ok()) return creds.status();
  auto channel = grpc::CreateCustomChannel(ChannelTarget(target), *creds, args);
  auto core = std::make_shared<ClientCore>(target, opts, channel);
  std::unique_ptr<Client> c(new Client(core));
  auto h = c->Health();
  if (!h.ok()) {
    if (IsOverloaded(h.status())) {
      return OverloadedError(absl::StrCat("adaptcached at ", target, " is overloaded: ", h.status().message()));
    }
    return absl::Status(h.status().code(), absl::StrCat("cannot reach adaptcached at ", target, ": ",
                                                        h.status().message()));
  }
  if (!h->serving) return absl::UnavailableError(absl::StrCat("adaptcached at ", target, " is not serving"));
  return c;
}

std::vector<Key128> Client::HashTokens(std::string_view ns, std::span<const uint32_t> tokens,
                                       uint32_t chunk_tokens) {
  return HashTokenChunks(ns, tokens, chunk_tokens);
}

absl::StatusOr<LookupResult> Client::Lookup(const std::string& ns, std::span<const Key128> keys) {
  if (auto st = ValidateNamespace(ns); !st.ok()) return st;
  v1::LookupRequest req;
  req.set_namespace_(ns);
  for (const auto& k : keys) req.add_keys(k.ToBytes());
  v1::LookupResponse resp;
  if (auto st = FromGrpc(core_->Call([&](grpc::ClientContext* ctx) { return core_->stub()->Lookup(ctx, req, &resp); }));
      !st.ok()) {
    return st;
  }
  if (static_cast<size_t>(resp.entries_size()) != keys.size() || resp.prefix_hits() > keys.size()) {
    return absl::InternalError("server answered Lookup with a malformed response");
  }
  LookupResult out;
  out.prefix_hits = resp.prefix_hits();
  out.entries.reserve(keys.size());
  for (const auto& e : resp.entries()) {
    auto info = FromProtoEntry(e);
    if (!info.ok()) return info.status();
    out.entries.push_back(std::move(*info));
  }
  for (uint32_t i = 0; i < out.prefix_hits; ++i) {
    if (!out.entries[i].hit()) return absl::InternalError("server's prefix_hits covers a miss");
  }
  return out;
}

absl::StatusOr<EntryInfo> Client::Put(const PutSpec& spec, std::span<const std::byte> raw) {
  if (auto st = CheckSpec(spec, raw.size(), true); !st.ok()) return st;
  v1::PutResponse resp;
  bool broke = false;
  const grpc::Status gst = core_->Call([&](grpc::ClientContext* ctx) {
    resp.Clear();
    auto writer = core_->stub()->Put(ctx, &resp);
    v1::PutRequest req;
    FillHeader(spec, req.mutable_header());
    bool ok = writer->Write(req);
    const size_t frame = core_->opts().put_frame_bytes;
    for (size_t off = 0; ok && off < raw.size(); off += frame) {
      const size_t n = std::min(frame, raw.size() - off);
      req.Clear();
      req.set_data(reinterpret_cast<const char*>(raw.data() + off), n);
      ok = writer->Write(req);
    }
    writer->WritesDone();
    broke = !ok;
    // If a Write failed, the server ended the stream: Finish carries its reason.
    return writer->Finish();
  });
  if (auto st = FromGrpc(gst); !st.ok()) return st;
  if (broke) return absl::InternalError("Put stream broke but the server reported success");
  return FromPutResponse(resp);
}

absl::StatusOr<EntryInfo> Client::PutShm(const PutSpec& spec,
                                         const std::function<absl::Status(std::span<std::byte>)>& fill) {
  if (auto st = CheckSpec(spec, 0, false); !st.ok()) return st;
  v1::ReservePutRequest req;
  FillHeader(spec, req.mutable_header());
  v1::ReservePutResponse res;
  if (auto st = FromGrpc(core_->Call([&](grpc::ClientContext* ctx) { return core_->stub()->ReservePut(ctx, req, &res); }));
      !st.ok()) {
    return st;
  }
  auto abort = [&](absl::Status why) -> absl::Status {
    v1::CommitPutRequest c;
    c.set_reservation_id(res.reservation_id());
    c.set_abort(true);
    v1::PutResponse ignored;
    (void)core_->Call([&](grpc::ClientContext* ctx) { return core_->stub()->CommitPut(ctx, c, &ignored); });
    return why;
  };
  // Map (or re-validate the mapping) after reserving, so it is the pool the offset names.
  auto mapping = core_->Mapping(res.pool_id());
  if (!mapping.ok()) return abort(mapping.status());
  if (res.length() != spec.shape.Bytes() || !(*mapping)->Contains(res.offset(), res.length())) {
    return abort(absl::InternalError(absl::StrCat("server reserved [", res.offset(), ", +", res.length(),
                                                  ") which does not fit the pool or the shape")));
  }
  std::span<std::byte> dst((*mapping)->base + res.offset(), res.length());
  if (auto st = fill(dst); !st.ok()) return abort(st);
  v1::CommitPutRequest c;
  c.set_reservation_id(res.reservation_id());
  v1::PutResponse resp;
  if (auto st = FromGrpc(core_->Call([&](grpc::ClientContext* ctx) { return core_->stub()->CommitPut(ctx, c, &resp); }));
      !st.ok()) {
    return st;
  }
  return FromPutResponse(resp);
}

absl::StatusOr<EntryInfo> Client::PutShm(const PutSpec& spec, std::span<const std::byte> raw) {
  if (auto st = CheckSpec(spec, raw.size(), true); !st.ok()) return st;
  return PutShm(spec, [raw](std::span<std::byte> dst) {
    std::memcpy(dst.data(), raw.data(), raw.size());
    return absl::OkStatus();
  });
}

namespace {

// A data-only GetResponse frame is the `data` field (length-delimited) and nothing else.
using WireFormat = google::protobuf::internal::WireFormatLite;
constexpr uint32_t kDataTag =
    WireFormat::MakeTag(v1::GetResponse::kDataFieldNumber, WireFormat::WIRETYPE_LENGTH_DELIMITED);
static_assert(kDataTag < 0x80, "CopyDataFrame reads the tag as one byte");

// If `bb` is a data-only frame, copies its payload to `dst + *got` (at most `room` bytes)
// and returns true; sets *err on a payload larger than `room`. Returns false, touching
// nothing, for any other frame (the caller then decodes it as a message).
bool CopyDataFrame(grpc::ByteBuffer* bb, std::byte* dst, uint64_t room, uint64_t* got, absl::Status* err) {
  std::vector<grpc::Slice> slices;
  if (!bb->Dump(&slices).ok() || slices.empty()) return false;
  const auto* p = slices[0].begin();
  const size_t first = slices[0].size();
  if (first < 2 || p[0] != kDataTag) return false;
  uint64_t len = 0;
  size_t h = 1;
  for (int shift = 0; h < first && shift < 64; shift += 7) {
    const uint8_t b = p[h++];
    len |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) {
      if (h + len != bb->Length()) return false;  // other fields follow: decode normally
      if (len > room) {
        *err = absl::DataLossError("server streamed more bytes than the entry holds");
        return true;
      }
      std::byte* out = dst + *got;
      size_t skip = h;
      for (const auto& sl : slices) {
        const size_t n = sl.size() - std::min(skip, sl.size());
        std::memcpy(out, sl.begin() + (sl.size() - n), n);
        out += n;
        skip -= std::min(skip, sl.size());
      }
      *got += len;
      return true;
    }
  }
  return false;
}

// Reads a streamed Get; `sink` is asked for the destination once the entry is known. Data
// frames land in the destination with one copy out of gRPC's receive buffers.
absl::StatusOr<EntryInfo> StreamGet(ClientCore* core, const std::string& ns, const Key128& key,
                                    const std::function<absl::StatusOr<std::span<std::byte>>(const EntryInfo&)>& sink) {
  if (auto st = ValidateNamespace(ns); !st.ok()) return st;
  v1::GetRequest req;
  req.set_namespace_(ns);
  req.set_key(key.ToBytes());
  req.set_transfer(v1::TRANSFER_STREAM);
  std::optional<EntryInfo> info;
  std::span<std::byte> dst;
  uint64_t got = 0;
  uint32_t crc = 0;  // of dst[0, got), extended frame by frame while each is in cache
  absl::Status local;
  const grpc::Status gst = core->Call([&](grpc::ClientContext* ctx) {
    info.reset();
    got = 0;
    crc = 0;
    auto reader = core->RawGet(ctx, req);
    grpc::ByteBuffer bb;
    v1::GetResponse frame;
    while (local.ok() && reader->Read(&bb)) {
      const uint64_t before = got;
      if (info.has_value() && CopyDataFrame(&bb, dst.data(), info->stored_bytes - got, &got, &local)) {
        crc = Crc32cExtend(crc, dst.data() + before, got - before);
        continue;
      }
      frame.Clear();
      if (!grpc::SerializationTraits<v1::GetResponse>::Deserialize(&bb, &frame).ok()) {
        local = absl::InternalError("Get stream frame does not parse");
        break;
      }
      if (!info.has_value()) {
        if (!frame.has_entry()) {
          local = absl::InternalError("Get stream did not start with the entry");
          break;
        }
        auto e = FromProtoEntry(frame.entry());
        if (!e.ok()) {
          local = e.status();
          break;
        }
        if (!e->hit()) {
          local = absl::NotFoundError("miss");
          break;
        }
        auto d = sink(*e);
        if (!d.ok()) {
          local = d.status();
          break;
        }
        dst = *d;
        info = std::move(*e);
      }
      const std::string& data = frame.data();
      if (data.size() > info->stored_bytes - got) {
        local = absl::DataLossError("server streamed more bytes than the entry holds");
        break;
      }
      std::memcpy(dst.data() + got, data.data(), data.size());
      crc = Crc32cExtend(crc, dst.data() + got, data.size());
      got += data.size();
    }
    if (!local.ok()) {
      ctx->TryCancel();
      (void)reader->Finish();
      return grpc::Status::OK;  // `local` says why
    }
    return reader->Finish();
  });
  if (!local.ok()) return local;
  if (auto st = FromGrpc(gst); !st.ok()) return st;
  if (!info.has_value()) return absl::InternalError("Get stream ended without an entry");
  if (got != info->stored_bytes) {
    return absl::DataLossError(absl::StrCat("Get stream delivered ", got, " of ", info->stored_bytes, " bytes"));
  }
  if (auto st = VerifyCopied(dst.first(got), *info, crc); !st.ok()) return st;
  return *info;
}

}  // namespace

absl::StatusOr<EntryInfo> Client::GetInto(const std::string& ns, const Key128& key, std::span<std::byte> out) {
  return StreamGet(core_.get(), ns, key, [out](const EntryInfo& e) -> absl::StatusOr<std::span<std::byte>> {
    if (out.size() < e.stored_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("buffer is ", out.size(), " bytes; entry needs ", e.stored_bytes));
    }
    return out.first(e.stored_bytes);
  });
}

absl::StatusOr<std::vector<std::byte>> Client::Get(const std::string& ns, const Key128& key) {
  std::vector<std::byte> buf;
  auto info = StreamGet(core_.get(), ns, key, [&buf](const EntryInfo& e) -> absl::StatusOr<std::span<std::byte>> {
    if (e.stored_bytes > kMaxEntryBytes + (64ull << 20)) return absl::InternalError("entry absurdly large");
    buf.resize(e.stored_bytes);
    return std::span<std::byte>(buf);
  });
  if (!info.ok()) return info.status();
  return buf;
}

absl::StatusOr<LeasedEntry> Client::GetShm(const std::string& ns, const Key128& key, uint32_t lease_ms) {
  if (auto st = ValidateNamespace(ns); !st.ok()) return st;
  v1::GetRequest req;
  req.set_namespace_(ns);
  req.set_key(key.ToBytes());
  req.set_transfer(v1::TRANSFER_SHM);
  req.set_lease_ms(lease_ms);
  v1::GetResponse frame, extra;
  bool have = false, more = false;
  const grpc::Status gst = core_->Call([&](grpc::ClientContext* ctx) {
    auto reader = core_->stub()->Get(ctx, req);
    have = reader->Read(&frame);
    more = have && reader->Read(&extra);
    if (more) ctx->TryCancel();
    return reader->Finish();
  });
  if (auto st = FromGrpc(gst); !st.ok() && !more) return st;
  if (!have) return absl::InternalError("SHM Get returned no frame");
  LeasedEntry le;
  le.core_ = core_;
  le.lease_id_ = frame.lease_id();  // from here on, the lease is released on any error
  if (more) return absl::InternalError("SHM Get returned more than one frame");
  auto e = FromProtoEntry(frame.entry());
  if (!e.ok()) return e.status();
  if (!e->hit()) return absl::NotFoundError("miss");
  if (frame.lease_id() == 0) return absl::InternalError("SHM Get hit without a lease");
  auto mapping = core_->Mapping(frame.pool_id());
  if (!mapping.ok()) return mapping.status();
  if (!(*mapping)->Contains(frame.offset(), e->stored_bytes)) {
    return absl::InternalError(absl::StrCat("server's extent [", frame.offset(), ", +", e->stored_bytes,
                                            ") lies outside the ", (*mapping)->size, "-byte pool"));
  }
  le.mapping_ = *mapping;
  le.bytes_ = std::span<const std::byte>((*mapping)->base + frame.offset(), e->stored_bytes);
  le.info_ = std::move(*e);
  le.expires_ = std::chrono::system_clock::time_point(std::chrono::milliseconds(frame.lease_expires_unix_ms()));
  return le;
}

absl::StatusOr<LeasedPrefix> Client::LeasePrefix(const std::string& ns, std::span<const Key128> keys,
                                                 uint32_t lease_ms) {
  if (auto st = ValidateNamespace(ns); !st.ok()) return st;
  v1::LeasePrefixRequest req;
  req.set_namespace_(ns);
  for (const auto& k : keys) req.add_keys(k.ToBytes());
  req.set_lease_ms(lease_ms);
  v1::LeasePrefixResponse resp;
  if (auto st = FromGrpc(core_->Call([&](grpc::ClientContext* ctx) { return core_->stub()->LeasePrefix(ctx, req, &resp); }));
      !st.ok()) {
    return st;
  }
  const uint32_t n = std::min<uint32_t>(resp.leased(), static_cast<uint32_t>(resp.lease_ids_size()));
  LeasedPrefix out;
  // Own every lease the daemon granted before any check, so an error releases them.
  out.leases.resize(n);
  const auto expires =
      std::chrono::system_clock::time_point(std::chrono::milliseconds(resp.lease_expires_unix_ms()));
  for (uint32_t i = 0; i < n; ++i) {
    out.leases[i].core_ = core_;
    out.leases[i].lease_id_ = resp.lease_ids(i);
    out.leases[i].expires_ = expires;
  }
  if (static_cast<size_t>(resp.entries_size()) != keys.size() || resp.leased() > keys.size() ||
      resp.lease_ids_size() != static_cast<int>(resp.leased()) ||
      resp.offsets_size() != static_cast<int>(resp.leased()) || resp.prefix_hits() > keys.size() ||
      resp.prefix_hits() < resp.leased()) {
    return absl::InternalError("server answered LeasePrefix with a malformed response");
  }
  out.lookup.prefix_hits = resp.prefix_hits();
  out.lookup.entries.reserve(keys.size());
  for (const auto& e : resp.entries()) {
    auto info = FromProtoEntry(e);
    if (!info.ok()) return info.status();
    out.lookup.entries.push_back(std::move(*info));
  }
  for (uint32_t i = 0; i < out.lookup.prefix_hits; ++i) {
    if (!out.lookup.entries[i].hit()) return absl::InternalError("server's prefix_hits covers a miss");
  }
  if (n == 0) return out;
  auto mapping = core_->Mapping(resp.pool_id());
  if (!mapping.ok()) return mapping.status();
  for (uint32_t i = 0; i < n; ++i) {
    const EntryInfo& info = out.lookup.entries[i];
    if (resp.lease_ids(i) == 0) return absl::InternalError("LeasePrefix hit without a lease");
    if (!(*mapping)->Contains(resp.offsets(i), info.stored_bytes)) {
      return absl::InternalError(absl::StrCat("server's extent [", resp.offsets(i), ", +", info.stored_bytes,
                                              ") lies outside the ", (*mapping)->size, "-byte pool"));
    }
    LeasedEntry& le = out.leases[i];
    le.mapping_ = *mapping;
    le.bytes_ = std::span<const std::byte>((*mapping)->base + resp.offsets(i), info.stored_bytes);
    le.info_ = info;
  }
  return out;
}

absl::StatusOr<std::pair<PoolView, Client::PoolAttachment>> Client::AttachToPool(
    const std::string& slot, const std::function<PoolAttachment(const PoolView&)>& make) {
  auto mapping = core_->Mapping();
  if (!mapping.ok()) return mapping.status();
  PoolMapping& m = **mapping;
  const PoolView view{m.base, m.size, m.pool_id};
  std::lock_guard<std::mutex> lock(m.attach_mu);
  auto& a = m.attachments[slot];
  if (a == nullptr) a = make(view);
  return std::make_pair(view, a);
}

absl::StatusOr<EntryInfo> Client::GetShmInto(const std::string& ns, const Key128& key, std::span<std::byte> out) {
  auto le = GetShm(ns, key);
  if (!le.ok()) return le.status();
  auto n = le->CopyOut(out);
  if (!n.ok()) return n.status();
  return le->info();
}

absl::StatusOr<uint32_t> Client::FlushReleases() { return core_->Flush(); }

absl::StatusOr<uint32_t> Client::Delete(const std::string& ns, std::span<const Key128> keys) {
  if (auto st = ValidateNamespace(ns); !st.ok()) return st;
  v1::DeleteRequest req;
  req.set_namespace_(ns);
  for (const auto& k : keys) req.add_keys(k.ToBytes());
  v1::DeleteResponse resp;
  if (auto st = FromGrpc(core_->Call([&](grpc::ClientContext* ctx) { return core_->stub()->Delete(ctx, req, &resp); }));
      !st.ok()) {
    return st;
  }
  return resp.deleted();
}

absl::StatusOr<StatsInfo> Client::Stats() {
  v1::StatsResponse resp;
  if (auto st = FromGrpc(core_->Call([&](grpc::ClientContext* ctx) { return core_->stub()->Stats(ctx, v1::StatsRequest(), &resp); }));
      !st.ok()) {
    return st;
  }
  StatsInfo out;
  for (const auto& t : resp.tiers()) {
    TierStatsInfo ti;
    ti.tier = (t.tier() >= 0 && t.tier() <= 3) ? static_cast<Tier>(t.tier()) : Tier::kNone;
    ti.capacity_bytes = t.capacity_bytes();
    ti.used_bytes = t.used_bytes();
    ti.entries = t.entries();
    ti.hits = t.hits();
    out.tiers.push_back(ti);
  }
  out.lookups = resp.lookups();
  out.misses = resp.misses();
  out.puts = resp.puts();
  out.evictions = resp.evictions();
  out.leases_outstanding = resp.leases_outstanding();
  out.entries_by_codec.insert(resp.entries_by_codec().begin(), resp.entries_by_codec().end());
  out.bytes_by_codec.insert(resp.bytes_by_codec().begin(), resp.bytes_by_codec().end());
  out.version = resp.version();
  out.uptime_s = resp.uptime_s();
  return out;
}

absl::StatusOr<HealthInfo> Client::Health() {
  v1::HealthResponse resp;
  if (auto st = FromGrpc(core_->Call([&](grpc::ClientContext* ctx) { return core_->stub()->Health(ctx, v1::HealthRequest(), &resp); }));
      !st.ok()) {
    return st;
  }
  return HealthInfo{resp.serving(), resp.version()};
}

}  // namespace adaptcache::client
