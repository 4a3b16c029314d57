// libFuzzer target: the daemon's RPC request handling (server/service.cc, service_put.cc).
//
// One CacheService over a DRAM-only TierManager (64 MiB pool in /dev/shm, the file
// unlinked at once) lives for the whole process. The unary synchronous RPCs (ReservePut,
// CommitPut, LeasePrefix, Release, Delete, PoolInfo, Stats) are called directly with a
// grpc::ServerContext; Put, Get, Lookup and Health run on gRPC's callback API, so they go
// through a real gRPC server in this process, over a Unix socket in /dev/shm (removed at
// exit).
//
// Input: a sequence of records, each [op u8][len u16 le][payload len bytes] (a short
// tail is the last payload). The op picks the RPC; the payload is parsed with
// ParseFromArray as that RPC's request message (a failed parse sends the empty message),
// after a selector byte that may point keys and reservation ids at ones this input used
// already, so sequences (Put then Get, ReservePut then CommitPut, Delete then Get) are
// reachable. Two Put forms: raw frames (each a length-prefixed PutRequest) and a
// synthesised stream (a parsed PutHeader, optionally with its shape, codec, key,
// importance and probes taken from tables, followed by the shape's bytes in frames).
//
// Checks (a violation aborts: a finding): no RPC answers UNKNOWN, INTERNAL, DATA_LOSS or
// UNIMPLEMENTED; every streamed Get's container matches its EntryInfo (size, CRC32C) and
// decodes; a Get of a key this input stored with the raw codec returns exactly the bytes
// sent (or a miss); a key this input deleted stays deleted until put again; SHM leases and
// reservations lie inside the pool and leased bytes match their CRC. At the end of each
// input its leases are released, its reservations aborted and its keys deleted, so
// inputs stay independent.
//
// $AC_FUZZ_RPC_SSD=1 adds an SSD tier (1 MiB x 8 segments under /var/tmp, removed at
// exit): durable Puts, SSD reads on the readers' pool, reclaim.
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "adaptcache/v1/cache.grpc.pb.h"
#include "common/crc32c.h"
#include "kernels/codec.h"
#include "kernels/container.h"
#include "server/config.h"
#include "server/metrics.h"
#include "server/server_metrics.h"
#include "server/service.h"
#include "spdlog/spdlog.h"
#include "storage/tier_manager.h"

namespace adaptcache::fuzz {
namespace {

namespace v1 = ::adaptcache::v1;

constexpr uint64_t kPoolBytes = 64ull << 20;
constexpr uint64_t kMaxEntryBytes = 8ull << 20;
constexpr uint64_t kMaxSynthBytes = 512ull << 10;  // bytes one synthesised Put sends at most
constexpr int kFixedKeys = 16;
constexpr char kFixedNs[] = "fz";

[[noreturn]] void Finding(const std::string& what) {
  std::fprintf(stderr, "fuzz_rpc FINDING: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

absl::StatusOr<EntryMeta> DescribeWithCodec(ConstByteSpan container) {  // as server/daemon.cc
  auto meta = DescribeFromHeader(container);
  if (!meta.ok()) return meta.status();
  auto view = ParseContainer(container, /*verify_payload_crc=*/false);
  if (!view.ok()) return view.status();
  auto cfg = ConfigOf(*view);
  if (!cfg.ok()) return cfg.status();
  meta->codec = cfg->Name();
  return meta;
}

struct World {
  server::ServerConfig cfg;
  std::unique_ptr<TierManager> tm;
  server::MetricsRegistry registry;
  std::unique_ptr<server::ServerMetrics> metrics;
  std::unique_ptr<server::CacheService> service;
  std::unique_ptr<grpc::Server> server;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::AdaptCache::Stub> stub;
  std::string ssd_dir;
  std::string socket;
};

World* g_world = nullptr;

void RemoveSsdDir() {
  if (g_world != nullptr && !g_world->ssd_dir.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(g_world->ssd_dir, ec);
  }
  if (g_world != nullptr && !g_world->socket.empty()) ::unlink(g_world->socket.c_str());
}

World* MakeWorld() {
  spdlog::set_level(spdlog::level::off);
  google::protobuf::SetLogHandler(nullptr);  // failed parses are expected here
  auto* w = new World;
  auto& cfg = w->cfg;
  cfg.socket = "";
  cfg.metrics_listen = "";
  cfg.ssd_dir = "";
  cfg.pool_bytes = kPoolBytes;
  cfg.pool_name = "acfuzz-rpc";
  cfg.huge_pages = false;
  cfg.mlock = false;
  cfg.lease_default_ms = 5'000;
  cfg.lease_max_ms = 10'000;
  cfg.max_entry_bytes = kMaxEntryBytes;
  cfg.max_staging_bytes = 64ull << 20;
  cfg.stream_chunk_bytes = 16 << 10;  // multi-frame Get streams
  cfg.max_batch_keys = 256;
  cfg.threads = 2;
  TierManagerOptions topts;
  topts.dram.capacity_bytes = cfg.pool_bytes;
  topts.dram.shm_dir = cfg.shm_dir;
  topts.dram.name = cfg.pool_name;
  topts.dram.huge_pages = false;
  topts.dram.mlock = false;
  topts.dram.default_lease_ms = cfg.lease_default_ms;
  topts.dram.max_lease_ms = cfg.lease_max_ms;
  topts.dram.max_leases = 1 << 16;
  topts.dram.reservation_ms = 5'000;
  if (const char* e = std::getenv("AC_FUZZ_RPC_SSD"); e != nullptr && std::strcmp(e, "1") == 0) {
    std::string t = "/var/tmp/acfuzz-rpc-ssd-XXXXXX";
    if (::mkdtemp(t.data()) == nullptr) Finding("mkdtemp for the SSD tier failed");
    w->ssd_dir = t;
    cfg.ssd_dir = t;
    SsdTierOptions so;
    so.dir = t;
    so.segment_bytes = 1ull << 20;
    so.segment_count = 8;
    topts.ssd = so;
  }
  topts.describe = DescribeWithCodec;
  auto tm = TierManager::Create(std::move(topts));
  if (!tm.ok()) Finding("TierManager::Create: " + std::string(tm.status().message()));
  w->tm = std::move(*tm);
  ::unlink(w->tm->shm_path().c_str());  // the mapping stays; no file outlives the process
  auto metrics = server::ServerMetrics::Create(&w->registry, w->tm.get());
  if (!metrics.ok()) Finding("ServerMetrics::Create failed");
  w->metrics = std::move(*metrics);
  w->service = std::make_unique<server::CacheService>(cfg, w->tm.get(), w->metrics.get());
  // Put/Get/Health go over a Unix socket as with the daemon; $AC_FUZZ_RPC_INPROC=1 uses the
  // in-process channel instead (faster, but it keeps ~32 KB per Put refused mid-stream).
  const char* inproc = std::getenv("AC_FUZZ_RPC_INPROC");
  const bool use_inproc = inproc != nullptr && std::strcmp(inproc, "1") == 0;
  grpc::ServerBuilder builder;
  builder.SetMaxReceiveMessageSize(static_cast<int>(cfg.max_frame_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(cfg.stream_chunk_bytes + (64 << 10)));
  builder.RegisterService(w->service.get());
  if (!use_inproc) {
    w->socket = "/dev/shm/acfuzz-rpc-" + std::to_string(::getpid()) + ".sock";
    ::unlink(w->socket.c_str());
    builder.AddListeningPort("unix:" + w->socket, grpc::InsecureServerCredentials());
  }
  w->server = builder.BuildAndStart();
  if (!w->server) Finding("in-process gRPC server did not start");
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  w->channel = use_inproc ? w->server->InProcessChannel(args)
                          : grpc::CreateCustomChannel("unix:" + w->socket, grpc::InsecureChannelCredentials(), args);
  w->stub = v1::AdaptCache::NewStub(w->channel);
  g_world = w;
  std::atexit(RemoveSsdDir);
  return w;
}

// As gRPC would deliver it: a message that does not parse (bad wire format, a string field
// that is not UTF-8) never reaches the service, so it becomes the empty message.
void ParseOrEmpty(google::protobuf::Message& m, const std::string& b) {
  if (!m.ParseFromArray(b.data(), static_cast<int>(b.size()))) m.Clear();
}

// Reads the input front to back; past the end it yields zeros.
class Reader {
 public:
  Reader(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  bool empty() const { return n_ == 0; }
  size_t size() const { return n_; }
  uint8_t U8() {
    if (n_ == 0) return 0;
    --n_;
    return *p_++;
  }
  uint16_t U16() { return static_cast<uint16_t>(U8() | (U8() << 8)); }
  std::string Take(size_t len) {
    len = std::min(len, n_);
    std::string s(reinterpret_cast<const char*>(p_), len);
    p_ += len;
    n_ -= len;
    return s;
  }
  std::string Rest() { return Take(n_); }

 private:
  const uint8_t* p_;
  size_t n_;
};

std::string FixedKey(int i) {
  std::string k(16, '\0');
  k[0] = static_cast<char>(i % kFixedKeys);
  k[8] = 'f';
  return k;
}

struct KvDims {
  uint32_t layers, tokens, kv_heads, head_dim;
  v1::DType dtype;
};
constexpr KvDims kShapes[16] = {
    {1, 1, 1, 1, v1::DTYPE_BF16},     {2, 16, 2, 64, v1::DTYPE_BF16},   {1, 7, 3, 32, v1::DTYPE_FP16},
    {2, 33, 1, 128, v1::DTYPE_FP32},  {1, 1, 1, 64, v1::DTYPE_BF16},    {3, 5, 2, 16, v1::DTYPE_FP16},
    {1, 128, 1, 64, v1::DTYPE_BF16},  {2, 64, 4, 128, v1::DTYPE_BF16},  {1, 3, 1, 8, v1::DTYPE_FP32},
    {1, 2, 1, 2, v1::DTYPE_FP16},     {4, 9, 2, 32, v1::DTYPE_BF16},    {1, 17, 1, 256, v1::DTYPE_BF16},
    {2, 200, 2, 64, v1::DTYPE_FP16},  {1, 1, 8, 128, v1::DTYPE_BF16},   {2, 4, 2, 96, v1::DTYPE_BF16},
    {0, 4, 2, 64, v1::DTYPE_BF16},  // invalid on purpose
};
const char* const kCodecs[16] = {
    "raw",          "fp8",          "quant-k4v4-g64",        "quant-k2v2-g32-s4-h", "quant-k8v8-g128",
    "quant-k4v2-g64-h", "drop-50",  "drop-25+quant-k2v2-g32-h", "drop-75+quant-k4v4-g64", "lowrank-r8",
    "lowrank-r16",  "quant-k3v3-g64-h", "drop-10",           "quant-k4v4-g32",      "",
    "quant-k4v4-g63"};  // "" = the namespace default; the last is invalid

uint64_t ShapeBytes(const v1::KvShape& s) {
  const unsigned __int128 b = static_cast<unsigned __int128>(2u * uint64_t{s.layers()} * s.tokens()) *
                              (uint64_t{s.kv_heads()} * s.head_dim()) * (s.dtype() == v1::DTYPE_FP32 ? 4 : 2);
  return b > ~0ull ? ~0ull : static_cast<uint64_t>(b);
}

std::string Fill(size_t n, const std::string& seed) {
  std::string out(n, '\0');
  if (seed.empty()) {
    uint32_t x = 0x9e3779b9u;
    for (auto& c : out) {
      x = x * 1664525u + 1013904223u;
      c = static_cast<char>(x >> 24);
    }
  } else {
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<char>(seed[i % seed.size()] + (i / seed.size()));
  }
  return out;
}

float FiniteFrom(uint8_t b) { return (static_cast<int>(b) - 128) / 32.0f; }

// A Put header and its stream bytes from [flags][sel][hlen][header][seed...].
struct Synth {
  v1::PutHeader header;
  std::string data;
  size_t frame = 4096;
};
Synth Synthesise(Reader& r) {
  Synth s;
  const uint8_t flags = r.U8();
  const uint8_t sel = r.U8();
  const uint8_t fsel = r.U8();
  const std::string hbytes = r.Take(r.U8());
  const std::string seed = r.Rest();
  ParseOrEmpty(s.header, hbytes);
  if (flags & 0x01) {
    s.header.set_namespace_(kFixedNs);
    s.header.set_key(FixedKey(flags >> 4));
  }
  if (flags & 0x02) {
    const KvDims& d = kShapes[sel & 15];
    auto* sh = s.header.mutable_shape();
    sh->set_layers(d.layers);
    sh->set_tokens(d.tokens);
    sh->set_kv_heads(d.kv_heads);
    sh->set_head_dim(d.head_dim);
    sh->set_dtype(d.dtype);
  }
  if (flags & 0x04) s.header.set_codec(kCodecs[sel >> 4]);
  const v1::KvShape& sh = s.header.shape();
  if (flags & 0x08) {  // one importance value per token
    s.header.clear_token_importance();
    for (uint32_t t = 0; t < std::min<uint32_t>(sh.tokens(), 4096); ++t) {
      s.header.add_token_importance(FiniteFrom(seed.empty() ? static_cast<uint8_t>(t) : seed[t % seed.size()]));
    }
  }
  if (flags & 0x80) {  // 1..4 probes of the right size
    s.header.clear_probe_queries();
    const uint32_t probes = 1 + (fsel >> 6);
    s.header.set_probe_count(probes);
    const uint64_t want = uint64_t{sh.layers()} * probes * sh.kv_heads() * sh.head_dim();
    for (uint64_t i = 0; i < std::min<uint64_t>(want, 1 << 16); ++i) {
      s.header.add_probe_queries(FiniteFrom(seed.empty() ? static_cast<uint8_t>(i) : seed[i % seed.size()]));
    }
  }
  uint64_t n = ShapeBytes(sh);
  if (n > kMaxSynthBytes) n = std::min<uint64_t>(seed.size(), 1 << 16);
  if (flags & 0x20) n = n + (fsel & 1 ? 1 : 0) - (fsel & 2 && n > 0 ? 1 : 0);  // off by one
  s.data = Fill(n, seed);
  s.frame = size_t{1} << (fsel % 17);
  s.frame = std::max<size_t>(s.frame, n / 2048 + 1);  // at most ~2048 frames
  return s;
}

using NsKey = std::pair<std::string, std::string>;

// What one input did, for its checks and its clean-up.
struct State {
  std::map<NsKey, std::string> raw_expected;  // stored raw by this input: the tensor bytes
  std::set<NsKey> deleted;                    // deleted by this input and not put since
  std::set<NsKey> stored;                     // every key this input stored
  std::vector<uint64_t> leases;
  struct Res {
    uint64_t id;
    NsKey key;
    std::string data;  // written into the reservation
    uint64_t offset, length;
  };
  std::vector<Res> reservations;
};

void CheckCode(const grpc::Status& st, const char* rpc) {
  switch (st.error_code()) {
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::DATA_LOSS:
    case grpc::StatusCode::UNIMPLEMENTED:
      Finding(std::string(rpc) + " answered " + std::to_string(st.error_code()) + ": " + st.error_message());
    default:
      break;
  }
}

void WithDeadline(grpc::ClientContext* ctx) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
}

void CheckPoolRange(World* w, uint64_t offset, uint64_t length, const char* what) {
  if (offset > w->tm->pool_size() || length > w->tm->pool_size() - offset) {
    Finding(std::string(what) + ": range outside the pool");
  }
}

void CheckLeasedBytes(World* w, uint64_t offset, const v1::EntryInfo& e, const char* what) {
  CheckPoolRange(w, offset, e.stored_bytes(), what);
  const ByteSpan b = w->tm->Bytes(Extent{offset, e.stored_bytes()});
  if (Crc32c(b.data(), e.stored_bytes()) != e.payload_crc32c()) {
    Finding(std::string(what) + ": leased bytes do not match payload_crc32c");
  }
}

void OnStored(State& st, const NsKey& k, const v1::PutResponse& resp, const std::string& data) {
  st.stored.insert(k);
  st.deleted.erase(k);
  if (resp.entry().codec() == "raw") {
    st.raw_expected[k] = data;
  } else {
    st.raw_expected.erase(k);
  }
  if (resp.entry().raw_bytes() != data.size()) Finding("PutResponse raw_bytes differs from the bytes sent");
}

void DoPut(World* w, State& st, const std::vector<v1::PutRequest>& frames) {
  grpc::ClientContext ctx;
  WithDeadline(&ctx);
  v1::PutResponse resp;
  auto writer = w->stub->Put(&ctx, &resp);
  for (const auto& f : frames) {
    if (!writer->Write(f)) break;
  }
  writer->WritesDone();
  const grpc::Status s = writer->Finish();
  CheckCode(s, "Put");
  if (!s.ok() || frames.empty() || !frames[0].has_header()) return;
  std::string data;
  for (size_t i = 1; i < frames.size(); ++i) data += frames[i].data();
  OnStored(st, {frames[0].header().namespace_(), frames[0].header().key()}, resp, data);
}

void CheckGetStream(World* w, State& st, const NsKey& k, const v1::GetResponse& first, const std::string& container) {
  const v1::EntryInfo& e = first.entry();
  if (container.size() != e.stored_bytes()) Finding("Get: container size differs from stored_bytes");
  if (Crc32c(container.data(), container.size()) != e.payload_crc32c()) Finding("Get: container CRC mismatch");
  if (e.raw_bytes() > kMaxEntryBytes) Finding("Get: raw_bytes above max_entry_bytes");
  if (st.deleted.count(k)) Finding("Get: a key deleted by this input came back");
  std::string raw(e.raw_bytes(), '\0');
  auto d = Decode(std::span<const std::byte>(reinterpret_cast<const std::byte*>(container.data()), container.size()),
                  std::span<std::byte>(reinterpret_cast<std::byte*>(raw.data()), raw.size()));
  if (!d.ok()) {
    Finding("Get: stored container does not decode: " + std::string(d.message()));
  }
  if (auto it = st.raw_expected.find(k); it != st.raw_expected.end() && e.codec() == "raw" && raw != it->second) {
    Finding("Get: a raw entry's bytes differ from those put");
  }
}

void DoGet(World* w, State& st, v1::GetRequest req) {
  grpc::ClientContext ctx;
  WithDeadline(&ctx);
  auto reader = w->stub->Get(&ctx, req);
  v1::GetResponse frame, first;
  std::string container;
  int frames = 0;
  while (reader->Read(&frame)) {
    if (frames++ == 0) first = frame;
    container += frame.data();
  }
  const grpc::Status s = reader->Finish();
  CheckCode(s, "Get");
  if (!s.ok()) return;
  if (frames == 0) Finding("Get: OK without a frame");
  const NsKey k{req.namespace_(), req.key()};
  if (req.transfer() == v1::TRANSFER_SHM) {
    st.leases.push_back(first.lease_id());
    if (st.deleted.count(k)) Finding("Get(SHM): a key deleted by this input came back");
    CheckLeasedBytes(w, first.offset(), first.entry(), "Get(SHM)");
    return;
  }
  CheckGetStream(w, st, k, first, container);
}

// Keys of a batched request: parsed, then (sel bit 0) replaced by fixed keys.
template <typename Req>
void OverrideKeys(Req& req, uint8_t sel) {
  if (!(sel & 1)) return;
  req.set_namespace_(kFixedNs);
  req.clear_keys();
  const int n = 1 + ((sel >> 1) & 7);
  for (int i = 0; i < n; ++i) *req.add_keys() = FixedKey((sel >> 4) + i);
}

void RunRecord(World* w, State& st, uint8_t op, Reader r) {
  auto* svc = w->service.get();
  switch (op % 13) {
    case 0: {  // Lookup
      const uint8_t sel = r.U8();
      v1::LookupRequest req;
      const std::string b = r.Rest();
      ParseOrEmpty(req, b);
      OverrideKeys(req, sel);
      grpc::ClientContext ctx;
      WithDeadline(&ctx);
      v1::LookupResponse resp;
      auto s = w->stub->Lookup(&ctx, req, &resp);
      CheckCode(s, "Lookup");
      if (s.ok() && (resp.entries_size() != req.keys_size() || resp.prefix_hits() > static_cast<uint32_t>(req.keys_size()))) {
        Finding("Lookup: answer does not match the keys asked");
      }
      break;
    }
    case 1: {  // Put: raw frames, each [len u16][PutRequest]
      std::vector<v1::PutRequest> frames;
      while (!r.empty() && frames.size() < 512) {
        const std::string b = r.Take(r.U16());
        v1::PutRequest f;
        ParseOrEmpty(f, b);
        frames.push_back(std::move(f));
      }
      DoPut(w, st, frames);
      break;
    }
    case 2: {  // Put: synthesised stream
      Synth s = Synthesise(r);
      std::vector<v1::PutRequest> frames(1);
      *frames[0].mutable_header() = s.header;
      for (size_t off = 0; off < s.data.size(); off += s.frame) {
        v1::PutRequest f;
        f.set_data(s.data.substr(off, s.frame));
        frames.push_back(std::move(f));
      }
      DoPut(w, st, frames);
      break;
    }
    case 3: {  // ReservePut (synthesised header), then the "client" writes the reservation
      const uint8_t write = r.U8();
      Synth s = Synthesise(r);
      v1::ReservePutRequest req;
      *req.mutable_header() = s.header;
      grpc::ServerContext ctx;
      v1::ReservePutResponse resp;
      auto g = svc->ReservePut(&ctx, &req, &resp);
      CheckCode(g, "ReservePut");
      if (!g.ok()) break;
      if (resp.length() != ShapeBytes(s.header.shape())) Finding("ReservePut: length is not the shape's bytes");
      CheckPoolRange(w, resp.offset(), resp.length(), "ReservePut");
      std::string data = Fill(resp.length(), s.data.substr(0, 4096));
      if (write & 1) {
        std::memcpy(w->tm->Bytes(Extent{resp.offset(), resp.length()}).data(), data.data(), data.size());
      } else {
        data.clear();  // unknown contents
      }
      st.reservations.push_back(
          {resp.reservation_id(), {s.header.namespace_(), s.header.key()}, std::move(data), resp.offset(), resp.length()});
      break;
    }
    case 4: {  // CommitPut
      const uint8_t sel = r.U8();
      v1::CommitPutRequest req;
      const std::string b = r.Rest();
      ParseOrEmpty(req, b);
      if ((sel & 1) && !st.reservations.empty()) {
        req.set_reservation_id(st.reservations[(sel >> 2) % st.reservations.size()].id);
        req.set_abort(sel & 2);
      }
      for (auto& res : st.reservations) {  // what the commit will encode (unless written, the pool's old bytes)
        if (res.id == req.reservation_id() && res.data.empty()) {
          const ByteSpan b = w->tm->Bytes(Extent{res.offset, res.length});
          res.data.assign(reinterpret_cast<const char*>(b.data()), res.length);
        }
      }
      grpc::ServerContext ctx;
      v1::PutResponse resp;
      auto s = svc->CommitPut(&ctx, &req, &resp);
      CheckCode(s, "CommitPut");
      for (size_t i = 0; i < st.reservations.size(); ++i) {
        if (st.reservations[i].id != req.reservation_id()) continue;
        if (s.ok() && !req.abort()) {
          OnStored(st, st.reservations[i].key, resp, st.reservations[i].data);
        }
        if (s.ok() || s.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
          st.reservations.erase(st.reservations.begin() + static_cast<long>(i));
        }
        break;
      }
      break;
    }
    case 5: {  // Get
      const uint8_t sel = r.U8();
      v1::GetRequest req;
      const std::string b = r.Rest();
      ParseOrEmpty(req, b);
      if (sel & 1) {
        req.set_namespace_(kFixedNs);
        req.set_key(FixedKey(sel >> 4));
        req.set_transfer(sel & 2 ? v1::TRANSFER_SHM : v1::TRANSFER_STREAM);
      }
      DoGet(w, st, req);
      break;
    }
    case 6: {  // LeasePrefix
      const uint8_t sel = r.U8();
      v1::LeasePrefixRequest req;
      const std::string b = r.Rest();
      ParseOrEmpty(req, b);
      OverrideKeys(req, sel);
      grpc::ServerContext ctx;
      v1::LeasePrefixResponse resp;
      auto s = svc->LeasePrefix(&ctx, &req, &resp);
      CheckCode(s, "LeasePrefix");
      if (!s.ok()) break;
      const int leased = static_cast<int>(resp.leased());
      if (leased > req.keys_size() || resp.offsets_size() != leased || resp.lease_ids_size() != leased ||
          resp.entries_size() != req.keys_size() || resp.prefix_hits() < resp.leased()) {
        Finding("LeasePrefix: answer does not match the keys asked");
      }
      for (int i = 0; i < leased; ++i) {
        st.leases.push_back(resp.lease_ids(i));
        if (st.deleted.count({req.namespace_(), req.keys(i)})) Finding("LeasePrefix: a deleted key came back");
        CheckLeasedBytes(w, resp.offsets(i), resp.entries(i), "LeasePrefix");
      }
      break;
    }
    case 7: {  // Release
      const uint8_t sel = r.U8();
      v1::ReleaseRequest req;
      const std::string b = r.Rest();
      ParseOrEmpty(req, b);
      if (sel & 1) {
        for (uint64_t id : st.leases) req.add_lease_ids(id);
      }
      grpc::ServerContext ctx;
      v1::ReleaseResponse resp;
      CheckCode(svc->Release(&ctx, &req, &resp), "Release");
      break;
    }
    case 8: {  // Delete
      const uint8_t sel = r.U8();
      v1::DeleteRequest req;
      const std::string b = r.Rest();
      ParseOrEmpty(req, b);
      OverrideKeys(req, sel);
      grpc::ServerContext ctx;
      v1::DeleteResponse resp;
      auto s = svc->Delete(&ctx, &req, &resp);
      CheckCode(s, "Delete");
      if (!s.ok()) break;
      if (resp.deleted() > static_cast<uint32_t>(req.keys_size())) Finding("Delete: more deleted than asked");
      for (const auto& k : req.keys()) {
        const NsKey nk{req.namespace_(), k};
        st.raw_expected.erase(nk);
        st.deleted.insert(nk);
      }
      break;
    }
    case 9: {
      grpc::ServerContext ctx;
      v1::PoolInfoRequest req;
      v1::PoolInfoResponse resp;
      auto s = svc->PoolInfo(&ctx, &req, &resp);
      CheckCode(s, "PoolInfo");
      if (!s.ok() || resp.size() != w->tm->pool_size()) Finding("PoolInfo: wrong answer");
      break;
    }
    case 10: {
      grpc::ServerContext ctx;
      v1::StatsRequest req;
      v1::StatsResponse resp;
      auto s = svc->Stats(&ctx, &req, &resp);
      if (!s.ok()) Finding("Stats failed");
      break;
    }
    case 11: {
      grpc::ClientContext ctx;
      WithDeadline(&ctx);
      v1::HealthResponse resp;
      auto s = w->stub->Health(&ctx, v1::HealthRequest(), &resp);
      if (!s.ok() || !resp.serving()) Finding("Health failed");
      break;
    }
    case 12: {  // Get of a key this input stored (or deleted), by index
      const uint8_t sel = r.U8();
      std::vector<NsKey> keys(st.stored.begin(), st.stored.end());
      keys.insert(keys.end(), st.deleted.begin(), st.deleted.end());
      if (keys.empty()) break;
      const NsKey& k = keys[(sel >> 1) % keys.size()];
      v1::GetRequest req;
      req.set_namespace_(k.first);
      req.set_key(k.second);
      req.set_transfer(sel & 1 ? v1::TRANSFER_SHM : v1::TRANSFER_STREAM);
      req.set_lease_ms(r.U16());
      DoGet(w, st, req);
      break;
    }
  }
}

void CleanUp(World* w, State& st) {
  auto* svc = w->service.get();
  for (const auto& res : st.reservations) {
    grpc::ServerContext ctx;
    v1::CommitPutRequest req;
    req.set_reservation_id(res.id);
    req.set_abort(true);
    v1::PutResponse resp;
    (void)svc->CommitPut(&ctx, &req, &resp);
  }
  if (!st.leases.empty()) {
    grpc::ServerContext ctx;
    v1::ReleaseRequest req;
    for (uint64_t id : st.leases) req.add_lease_ids(id);
    v1::ReleaseResponse resp;
    (void)svc->Release(&ctx, &req, &resp);
  }
  std::map<std::string, std::vector<std::string>> by_ns;
  for (const auto& k : st.stored) by_ns[k.first].push_back(k.second);
  for (int i = 0; i < kFixedKeys; ++i) by_ns[kFixedNs].push_back(FixedKey(i));
  for (const auto& [ns, keys] : by_ns) {
    grpc::ServerContext ctx;
    v1::DeleteRequest req;
    req.set_namespace_(ns);
    for (const auto& k : keys) *req.add_keys() = k;
    v1::DeleteResponse resp;
    (void)svc->Delete(&ctx, &req, &resp);
  }
  (void)w->tm->ReapExpired();
  (void)svc->ReapPending();
}

}  // namespace
}  // namespace adaptcache::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  adaptcache::fuzz::MakeWorld();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace adaptcache::fuzz;
  World* w = g_world;
  State st;
  Reader in(data, size);
  int records = 0;
  while (!in.empty() && records++ < 64) {
    const uint8_t op = in.U8();
    const uint16_t len = in.U16();
    const std::string payload = in.Take(len);
    RunRecord(w, st, op, Reader(reinterpret_cast<const uint8_t*>(payload.data()), payload.size()));
  }
  CleanUp(w, st);
  return 0;
}
