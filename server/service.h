// The AdaptCache gRPC service (proto/adaptcache/v1/cache.proto) over the tier manager
// (DRAM + optional SSD tier) and the codec library. docs/api.md documents every RPC, its validation and its status
// codes.
//
// Put streams the raw tensor into a staging buffer, encodes it into the final extent
// of the pool and commits (a raw Put streams into its final container directly); ReservePut/CommitPut do the same from a client-written
// reservation. Get hands out a lease (TRANSFER_SHM) or streams the container under an
// internal lease (the client checks its CRC); an SSD hit is first read into the pool by
// the tier manager. Nothing is committed unless the whole
// request validated, the stream carried exactly the shape's bytes, and encoding
// succeeded; any failure frees what the request allocated.
//
// Streams are bounded (server/stream_limiter.h): a capped number at once, cancelled when
// idle or too old, so Health and the unary RPCs always find a thread. A streamed Put's
// bytes stage in memory taken as they arrive (server/staging_buffer.h); a raw Put's go
// straight into their container in the pool instead once its first data frame arrives,
// from free pool space only and charged whole to the same staging budget, so unfinished
// Puts hold at most that budget and evict nothing.
//
// Thread safety: every RPC may run concurrently (synchronous gRPC threads, callback
// threads, and the service's work pool).
// ReapPending() is called by the daemon's reaper thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "adaptcache/v1/cache.grpc.pb.h"
#include "kernels/codec.h"
#include "server/access_observer.h"
#include "server/auth.h"
#include "server/config.h"
#include "server/server_metrics.h"
#include "server/staging_buffer.h"
#include "server/stream_limiter.h"
#include "server/work_pool.h"
#include "storage/dram_tier.h"
#include "storage/tier_manager.h"

namespace adaptcache::server {

// absl and gRPC share the canonical status codes.
grpc::Status ToGrpc(const absl::Status& st);
// The status of a stream whose Read or Write failed: the watchdog's reason, else the client's.
grpc::Status StreamGone(grpc::ServerContextBase* ctx, const StreamLimiter::Ticket& ticket);

// Put and Get use gRPC's callback API (a stream holds no thread while its peer is slow or
// silent), as do Health (never queued behind busy threads) and Lookup (answered where it
// arrives: no hand-off to a unary thread); the other unary RPCs use the synchronous one.
using ServiceBase = v1::AdaptCache::WithCallbackMethod_Put<v1::AdaptCache::WithCallbackMethod_Get<
    v1::AdaptCache::WithCallbackMethod_Health<v1::AdaptCache::WithCallbackMethod_Lookup<v1::AdaptCache::Service>>>>;

class CacheService final : public ServiceBase {
 public:
  // `tm` routes Lookup/Get/Delete/Stats and Put commits through DRAM and SSD.
  // `observer` hears of every hit and stored entry; null when the daemon runs no policy.
  // `auth` identifies callers and maps namespaces (server/auth.h); null = single tenant.
  CacheService(const ServerConfig& cfg, TierManager* tm, ServerMetrics* metrics,
               AccessObserver* observer = nullptr, Auth* auth = nullptr);

  // Inline on the callback thread; on the readers' pool when a remote tier may be asked
  // (a network round trip must not hold a callback thread).
  grpc::ServerUnaryReactor* Lookup(grpc::CallbackServerContext* ctx, const v1::LookupRequest* req,
                                   v1::LookupResponse* resp) override;
  grpc::ServerReadReactor<v1::PutRequest>* Put(grpc::CallbackServerContext* ctx,
                                                v1::PutResponse* resp) override;
  grpc::Status ReservePut(grpc::ServerContext* ctx, const v1::ReservePutRequest* req,
                          v1::ReservePutResponse* resp) override;
  grpc::Status CommitPut(grpc::ServerContext* ctx, const v1::CommitPutRequest* req,
                         v1::PutResponse* resp) override;
  grpc::ServerWriteReactor<v1::GetResponse>* Get(grpc::CallbackServerContext* ctx,
                                                  const v1::GetRequest* req) override;
  grpc::Status LeasePrefix(grpc::ServerContext* ctx, const v1::LeasePrefixRequest* req,
                           v1::LeasePrefixResponse* resp) override;
  grpc::Status Release(grpc::ServerContext* ctx, const v1::ReleaseRequest* req,
                       v1::ReleaseResponse* resp) override;
  grpc::Status Delete(grpc::ServerContext* ctx, const v1::DeleteRequest* req,
                      v1::DeleteResponse* resp) override;
  grpc::Status PoolInfo(grpc::ServerContext* ctx, const v1::PoolInfoRequest* req,
                        v1::PoolInfoResponse* resp) override;
  grpc::Status Stats(grpc::ServerContext* ctx, const v1::StatsRequest* req,
                     v1::StatsResponse* resp) override;
  // On the callback API too: answered on arrival, never queued behind the unary threads.
  grpc::ServerUnaryReactor* Health(grpc::CallbackServerContext* ctx, const v1::HealthRequest* req,
                                   v1::HealthResponse* resp) override;

  // Health answers serving=false once shutdown begins.
  void SetServing(bool serving) { serving_.store(serving); }
  bool serving() const { return serving_.load(); }
  // Forgets put headers of reservations that expired more than a grace period ago.
  size_t ReapPending();
  // Re-applies every tenant's SSD quota: demotions of its DRAM victims grow its SSD use
  // without a durable Put of its own. Called by the daemon's reaper thread.
  void EnforceSsdQuotas() const;
  const StreamLimiter& streams() const { return streams_; }
  const StagingBudget& staging() const { return staging_; }

 private:
  // A Put header after validation.
  struct PutPlan {
    EntryKey key;
    KvShape shape;
    CodecConfig codec;
    std::string codec_name;
    std::vector<float> token_importance;
    uint32_t probe_count = 0;
    std::vector<float> probe_queries;
    bool durable = false;
    Caller caller;  // who sent the header (quota, reservation owner)
  };
  struct PendingReservation {
    PutPlan plan;
    int tenant = -1;  // who reserved it (Caller::index); only it may commit
    uint64_t length = 0;
    std::chrono::system_clock::time_point expires;
  };
  // Limits concurrent Put/CommitPut; released on destruction.
  class InflightSlot;
  class PutReactor;
  class GetReactor;

  // The caller (Unauthenticated) and, with a namespace, its id (PermissionDenied).
  absl::StatusOr<Caller> Identify(const grpc::ServerContextBase& ctx) const;
  absl::StatusOr<uint64_t> NamespaceIdFor(const Caller& caller, const std::string& ns) const;
  // Evicts the caller's own LRU entries so `incoming` more bytes and one more entry fit
  // its tenant's DRAM quota; ResourceExhausted when they cannot.
  absl::Status MakeRoom(const Caller& caller, uint64_t incoming) const;
  // Drops a tenant's oldest SSD copies once it is over its SSD quota (to 15/16 of it, so
  // a tenant at its quota does not scan the SSD index on every durable Put).
  void EnforceSsdQuota(int tenant_index) const;
  absl::StatusOr<PutPlan> ValidateHeader(const grpc::ServerContextBase& ctx, const v1::PutHeader& h) const;
  // Encodes `raw` into a new extent and commits it; fills `info`.
  absl::Status EncodeAndCommit(const PutPlan& plan, ConstByteSpan raw, v1::PutResponse* resp);
  // Commits a finished container (its extent and whole-container CRC32C) under the plan's
  // key, fills the response and counts the Put. The caller frees the extent on error.
  absl::Status Commit(const PutPlan& plan, Extent container, uint32_t crc32c, v1::PutResponse* resp);
  absl::StatusOr<EntryKey> ParseKey(uint64_t ns_id, const std::string& bytes, int index) const;
  // Namespace and key-count checks plus key parsing shared by the batched RPCs.
  // Also authorizes the caller for `ns`; `caller` (optional) receives who it is.
  absl::StatusOr<std::vector<EntryKey>> ParseBatch(const grpc::ServerContextBase& ctx, const std::string& ns,
                                                   const google::protobuf::RepeatedPtrField<std::string>& keys,
                                                   const char* rpc, Caller* caller = nullptr) const;
  // Lookup's answer for one key; returns whether it hit.
  bool LocateInto(const Location& loc, v1::EntryInfo* info);
  void FillEntryInfo(const EntryMeta& meta, uint64_t stored_bytes, v1::EntryInfo* info,
                     Tier tier = Tier::kDram) const;
  void NoteAccess(const EntryKey& key) {
    if (observer_ != nullptr) observer_->OnAccess(key);
  }
  void NotePut(const EntryKey& key, const KvShape& shape, CodecId family) {
    if (observer_ != nullptr) observer_->OnPut(key, shape, family);
  }

  const ServerConfig cfg_;
  TierManager* const tm_;
  ServerMetrics* const metrics_;
  AccessObserver* const observer_;
  Auth* const auth_;
  const std::chrono::steady_clock::time_point start_;
  std::atomic<bool> serving_{true};
  std::atomic<int64_t> inflight_puts_{0};
  // Put and streamed Get are admitted here; destroyed before cfg_'s users are gone.
  StreamLimiter streams_;
  StagingBudget staging_;
  // The blocking steps of streams, which must not run on gRPC's callback threads. Apart,
  // so an SSD read never queues behind CPU-bound encodes.
  WorkPool readers_;   // a Get's tier lookup that missed DRAM (may read the SSD)
  WorkPool encoders_;  // a streamed Put's encode and commit
  // Lookup keys found, by tier (TierStats.hits = these + Gets served from the tier).
  std::atomic<uint64_t> lookup_hits_dram_{0}, lookup_hits_ssd_{0}, lookup_hits_remote_{0};

  std::mutex pending_mu_;
  absl::flat_hash_map<uint64_t, PendingReservation> pending_;  // by reservation id
  // Ids of reservations that expired recently (id -> expiry), so CommitPut can answer
  // FAILED_PRECONDITION "expired" rather than NOT_FOUND; bounded.
  absl::flat_hash_map<uint64_t, std::chrono::system_clock::time_point> expired_;
};

}  // namespace adaptcache::server
