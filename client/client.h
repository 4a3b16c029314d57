// The C++ client of adaptcached (DESIGN.md §1, §3, §6).
//
// Two data paths return identical bytes:
//   - streamed: Put / GetInto move the bytes in gRPC messages (any client, local or remote);
//   - shared memory: GetShm / PutShm go through the daemon's DRAM pool, which the client
//     maps (PoolInfo -> open the /dev/shm file O_RDWR -> mmap MAP_SHARED). GetShm returns
//     a LeasedEntry: a view of the container bytes in the pool, pinned by a lease until
//     the LeasedEntry is destroyed (then the lease is released, in batches).
//
// Correctness rules the client enforces:
//   - every offset/length the server returns is checked against the mapping before any
//     memory is touched;
//   - GetInto and LeasedEntry::CopyOut verify the container (header CRC, payload CRC,
//     size and CRC against the entry's metadata) AFTER the copy. A lease can expire under
//     a slow reader and its extent be reused; a failed check is reported as a miss
//     (NotFound / DataLoss), never as data.
//
// Every call returns absl::Status / StatusOr; server errors keep their code and message.
// Overload refusals are retried (ClientOptions::overload_retry_for).
// Thread safety: a Client may be used concurrently from any number of threads. A
// LeasedEntry is a value owned by one thread at a time; it stays valid (and keeps the
// mapping alive) even if the Client is destroyed first.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/key.h"
#include "common/kv_shape.h"
#include "common/tier.h"
#include "kernels/container.h"

namespace adaptcache::client {

struct ClientOptions {
  // Data frame size of streamed Puts (the server's frames decide Get's).
  size_t put_frame_bytes = 1 << 20;
  // Deadline of each call, retries included; zero means none.
  std::chrono::milliseconds rpc_timeout{60'000};
  // A call the daemon refuses for overload (RESOURCE_EXHAUSTED with a retry hint, or gRPC's
  // "Server Threadpool Exhausted") is retried with exponential backoff and jitter, starting
  // at the daemon's hint, until it succeeds, this budget is spent, or the deadline nears.
  // Zero turns retries off. Overload is reported as ResourceExhausted, an unreachable daemon
  // as Unavailable.
  std::chrono::milliseconds overload_retry_for{30'000};
  std::chrono::milliseconds overload_backoff_max{1'000};
  // Leases of destroyed LeasedEntry objects are released in one Release RPC once this
  // many are pending (1 = release immediately), sent by a background thread so no request
  // waits for it. FlushReleases() sends them now.
  size_t release_batch = 16;
  // Largest message accepted from the server.
  int max_receive_message_bytes = 64 << 20;
  // HTTP/2 receive window per stream (gRPC's "lookahead"); 0 keeps gRPC's default.
  int receive_window_bytes = 0;
  // Largest HTTP/2 frame the server may send (16 KiB..16 MiB-1); 0 keeps gRPC's default.
  int http2_max_frame_bytes = 0;
  // A connection of this client's own instead of the one gRPC shares between channels of
  // a process with the same target and options (many clients in one process, as in a
  // benchmark standing in for many processes).
  bool own_connection = false;
  // A daemon with tenants (docs/operations.md "Tenants and authentication"): the bearer
  // token sent with every call ("" = $ADAPTCACHE_TOKEN, if set).
  std::string token;
  // TLS for a host:port target: the CA bundle that signed the daemon's certificate
  // ("" = $ADAPTCACHE_TLS_CA; unset = plain TCP), and for mutual TLS this client's
  // certificate chain and key ($ADAPTCACHE_TLS_CERT, $ADAPTCACHE_TLS_KEY). PEM files.
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
};

using ::adaptcache::Tier;
using ::adaptcache::TierName;

// What the daemon reports about one entry. `shape` is meaningful when tier != kNone.
struct EntryInfo {
  Tier tier = Tier::kNone;
  std::string codec;
  uint64_t stored_bytes = 0;  // container size
  uint64_t raw_bytes = 0;
  KvShape shape;
  // The daemon's estimate of the quality lost by the entry's codec: 0 for a lossless
  // entry; also 0 for a lossy entry the daemon has not estimated yet (a Put straight into
  // a lossy config is estimated lazily by the placement policy, never on the Put path),
  // which quality_known() tells apart.
  float est_quality_loss = 0.f;
  uint32_t payload_crc32c = 0;  // CRC32C of the whole container
  // Put / PutShm answers only: the daemon wrote the entry through to its SSD tier and
  // made that copy durable (log record fdatasync'ed, index entry committed) before
  // answering, so it survives kill -9 of the daemon. False unless PutSpec::durable asked,
  // and false when the daemon has no SSD tier or the SSD write failed (the entry is still
  // stored, in DRAM).
  bool durable = false;
  bool hit() const { return tier != Tier::kNone; }
  // Whether est_quality_loss is an estimate: the entry is lossless (raw) or the daemon
  // reported a loss for it. False for a miss and for a lossy entry not estimated yet.
  bool quality_known() const;
};

struct LookupResult {
  uint32_t prefix_hits = 0;          // leading keys that hit
  std::vector<EntryInfo> entries;    // one per key, in request order
};

// What to store under one key.
struct PutSpec {
  std::string ns;
  Key128 key;
  KvShape shape;
  std::string codec;  // empty: the namespace's default
  std::vector<float> token_importance;  // optional, [tokens]
  uint32_t probe_count = 0;
  std::vector<float> probe_queries;     // optional, [layers][probe_count][kv_heads][head_dim]
  // Ask the daemon to write the entry through to SSD and answer only once that copy is
  // durable (docs/api.md, PutHeader.durable); EntryInfo::durable says whether it was.
  bool durable = false;
};

struct PoolMapping;  // defined in client.cc
class ClientCore;    // shared by Client and its LeasedEntry objects

// A leased view of one entry's container in the shared pool. Move-only; releases the
// lease when destroyed (or on Release()).
class LeasedEntry {
 public:
  LeasedEntry() = default;
  LeasedEntry(LeasedEntry&& o) noexcept;
  LeasedEntry& operator=(LeasedEntry&& o) noexcept;
  LeasedEntry(const LeasedEntry&) = delete;
  LeasedEntry& operator=(const LeasedEntry&) = delete;
  ~LeasedEntry();

  // The container bytes in the mapping. They may change under the reader once the
  // lease expires: verify what you copied (CopyOut does).
  std::span<const std::byte> bytes() const { return bytes_; }
  const EntryInfo& info() const { return info_; }
  uint64_t lease_id() const { return lease_id_; }
  std::chrono::system_clock::time_point expires() const { return expires_; }
  bool valid() const { return lease_id_ != 0; }

  // Copies the container into `out` (at least bytes().size()) and verifies it there.
  // Returns the size copied, or NotFound when the copy fails verification.
  absl::StatusOr<size_t> CopyOut(std::span<std::byte> out) const;
  // Ends the lease now (queued into the next batched Release RPC).
  void Release();

 private:
  friend class Client;
  std::shared_ptr<ClientCore> core_;
  std::shared_ptr<PoolMapping> mapping_;
  std::span<const std::byte> bytes_;
  EntryInfo info_;
  uint64_t lease_id_ = 0;
  std::chrono::system_clock::time_point expires_{};
};

// Lookup's answer plus leases of the leading hits, from one LeasePrefix round trip.
struct LeasedPrefix {
  LookupResult lookup;              // prefix_hits and one EntryInfo per key
  std::vector<LeasedEntry> leases;  // leases[i] is key i's, for the leading leased keys
};

// The client's current mapping of the daemon's pool.
struct PoolView {
  const std::byte* base = nullptr;
  uint64_t size = 0;
  uint64_t pool_id = 0;
};

struct HealthInfo {
  bool serving = false;
  std::string version;
};

struct TierStatsInfo {
  Tier tier = Tier::kNone;
  uint64_t capacity_bytes = 0, used_bytes = 0, entries = 0, hits = 0;
};
struct StatsInfo {
  std::vector<TierStatsInfo> tiers;
  uint64_t lookups = 0, misses = 0, puts = 0, evictions = 0, leases_outstanding = 0;
  std::map<std::string, uint64_t> entries_by_codec, bytes_by_codec;
  std::string version;
  uint64_t uptime_s = 0;
};

class Client {
 public:
  // target: "unix:///path", "unix:path", a plain socket path, or "host:port" (plain-text
  // TCP). Checks the daemon with a Health call before returning.
  static absl::StatusOr<std::unique_ptr<Client>> Connect(const std::string& target,
                                                          const ClientOptions& opts = {});
  ~Client();

  // The chunk keys of a token sequence (common/key.h).
  static std::vector<Key128> HashTokens(std::string_view ns, std::span<const uint32_t> tokens,
                                        uint32_t chunk_tokens = kDefaultChunkTokens);

  absl::StatusOr<LookupResult> Lookup(const std::string& ns, std::span<const Key128> keys);

  // Streams `raw` (spec.shape.Bytes() bytes) in frames of put_frame_bytes.
  absl::StatusOr<EntryInfo> Put(const PutSpec& spec, std::span<const std::byte> raw);
  // Shared-memory Put: reserves space in the pool, lets `fill` write the raw tensor in
  // place (exactly spec.shape.Bytes() bytes), then commits. A failing `fill` aborts.
  absl::StatusOr<EntryInfo> PutShm(const PutSpec& spec,
                                   const std::function<absl::Status(std::span<std::byte>)>& fill);
  absl::StatusOr<EntryInfo> PutShm(const PutSpec& spec, std::span<const std::byte> raw);

  // Streams the container into `out` (at least stored_bytes long) and verifies it.
  // NotFound on a miss; the bytes written are the first info.stored_bytes of `out`.
  absl::StatusOr<EntryInfo> GetInto(const std::string& ns, const Key128& key, std::span<std::byte> out);
  absl::StatusOr<std::vector<std::byte>> Get(const std::string& ns, const Key128& key);

  // Leases the entry in the shared pool. NotFound on a miss.
  absl::StatusOr<LeasedEntry> GetShm(const std::string& ns, const Key128& key, uint32_t lease_ms = 0);
  // Lookup and shared-memory leases of the leading hits of `keys` in one round trip (an
  // SSD hit is brought into the pool first, as GetShm does). Leasing stops at the first
  // key the daemon cannot lease; lookup.prefix_hits may exceed leases.size() then.
  absl::StatusOr<LeasedPrefix> LeasePrefix(const std::string& ns, std::span<const Key128> keys,
                                           uint32_t lease_ms = 0);
  // Lease + CopyOut + release, the common case.
  absl::StatusOr<EntryInfo> GetShmInto(const std::string& ns, const Key128& key, std::span<std::byte> out);

  // Sends pending lease releases now; returns how many the daemon still held.
  absl::StatusOr<uint32_t> FlushReleases();

  absl::StatusOr<uint32_t> Delete(const std::string& ns, std::span<const Key128> keys);
  absl::StatusOr<StatsInfo> Stats();
  absl::StatusOr<HealthInfo> Health();

  const std::string& target() const;

  // State kept with the current pool mapping (e.g. a GPU client's cudaHostRegister of it):
  // `make` runs once per mapping, on the first call that finds none for `slot`; the state
  // is destroyed just before that mapping is unmapped (after a daemon restart, once no
  // lease points into the old mapping). Maps the pool if needed.
  using PoolAttachment = std::shared_ptr<void>;
  absl::StatusOr<std::pair<PoolView, PoolAttachment>> AttachToPool(
      const std::string& slot, const std::function<PoolAttachment(const PoolView&)>& make);

 private:
  explicit Client(std::shared_ptr<ClientCore> core);
  std::shared_ptr<ClientCore> core_;
};

// Verifies container bytes against the entry they claim to be: size and CRC32C of the
// whole container against `info`, then the container's structure and shape.
absl::Status VerifyContainer(std::span<const std::byte> container, const EntryInfo& info);

}  // namespace adaptcache::client
