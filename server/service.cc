#include "server/service.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/crc32c.h"
#include "common/key.h"

namespace adaptcache::server {
namespace {

int64_t UnixMs(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

grpc::Status Invalid(const std::string& msg) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, msg);
}

// Ends a lease when the RPC returns, however it returns.
class LeaseGuard {
 public:
  LeaseGuard(DramTier* tier, uint64_t id) : tier_(tier), id_(id) {}
  ~LeaseGuard() {
    if (id_ != 0) tier_->Release(id_);
  }
  void Disarm() { id_ = 0; }

 private:
  DramTier* tier_;
  uint64_t id_;
};

}  // namespace

grpc::Status StreamGone(grpc::ServerContext* ctx, const StreamLimiter::Ticket& ticket) {
  if (const char* why = ticket.cancel_reason(); why != nullptr) {
    return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                        absl::StrCat("stream cancelled by the daemon: ", why));
  }
  return grpc::Status(grpc::StatusCode::CANCELLED,
                      ctx->IsCancelled() ? "client cancelled" : "client went away");
}

grpc::Status ToGrpc(const absl::Status& st) {
  if (st.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(st.code()), std::string(st.message()));
}

CacheService::CacheService(const ServerConfig& cfg, TierManager* tm, ServerMetrics* metrics,
                           AccessObserver* observer)
    : cfg_(cfg),
      tm_(tm),
      tier_(tm->dram()),
      metrics_(metrics),
      observer_(observer),
      start_(std::chrono::steady_clock::now()),
      streams_(StreamLimits{cfg.StreamCap(), std::chrono::milliseconds(cfg.stream_idle_timeout_ms),
                            std::chrono::milliseconds(cfg.max_stream_ms),
                            std::chrono::milliseconds(cfg.stream_preempt_idle_ms), cfg.retry_after_ms}),
      staging_(cfg.max_staging_bytes) {}

absl::StatusOr<EntryKey> CacheService::ParseKey(uint64_t ns_id, const std::string& bytes,
                                                int index) const {
  if (bytes.size() != kKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat("key ", index, " is ", bytes.size(),
                                                   " bytes; keys are exactly ", kKeyBytes));
  }
  auto key = Key128::FromBytes(bytes);
  if (!key.ok()) return absl::InvalidArgumentError(std::string(key.status().message()));
  return EntryKey{ns_id, *key};
}

void CacheService::FillEntryInfo(const EntryMeta& meta, uint64_t stored_bytes,
                                 v1::EntryInfo* info, StorageTier tier) const {
  info->set_tier(tier == StorageTier::kSsd ? v1::TIER_SSD : v1::TIER_DRAM);
  info->set_codec(meta.codec);
  info->set_stored_bytes(stored_bytes);
  info->set_raw_bytes(meta.raw_bytes);
  info->set_est_quality_loss(meta.est_quality_loss);
  info->set_payload_crc32c(meta.crc32c);
  auto* shape = info->mutable_shape();
  shape->set_layers(meta.shape.layers);
  shape->set_kv_heads(meta.shape.kv_heads);
  shape->set_head_dim(meta.shape.head_dim);
  shape->set_tokens(meta.shape.tokens);
  shape->set_dtype(static_cast<v1::DType>(static_cast<int>(meta.shape.dtype)));
}

absl::StatusOr<std::vector<EntryKey>> CacheService::ParseBatch(
    const std::string& ns, const google::protobuf::RepeatedPtrField<std::string>& keys,
    const char* rpc) const {
  if (auto st = ValidateNamespace(ns); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("namespace: ", st.message()));
  }
  if (static_cast<uint64_t>(keys.size()) > cfg_.max_batch_keys) {
    return absl::InvalidArgumentError(
        absl::StrCat(keys.size(), " keys in one ", rpc, "; at most ", cfg_.max_batch_keys));
  }
  const uint64_t ns_id = NamespaceId(ns);
  std::vector<EntryKey> out;
  out.reserve(keys.size());
  for (int i = 0; i < keys.size(); ++i) {
    auto k = ParseKey(ns_id, keys.Get(i), i);
    if (!k.ok()) return k.status();
    out.push_back(*k);
  }
  return out;
}

bool CacheService::LocateInto(const EntryKey& key, v1::EntryInfo* info) {
  const Location loc = tm_->Locate(key);
  metrics_->CountLookup(loc.tier != StorageTier::kNone);
  if (loc.tier == StorageTier::kNone) {
    info->set_tier(v1::TIER_NONE);
    return false;
  }
  (loc.tier == StorageTier::kSsd ? lookup_hits_ssd_ : lookup_hits_dram_)
      .fetch_add(1, std::memory_order_relaxed);
  // An SSD entry not read since a restart has no shape yet (docs/api.md).
  FillEntryInfo(loc.meta, loc.meta.stored_bytes, info, loc.tier);
  return true;
}

grpc::Status CacheService::Lookup(grpc::ServerContext*, const v1::LookupRequest* req,
                                  v1::LookupResponse* resp) {
  RequestScope scope(metrics_, Op::kLookup);
  auto keys = ParseBatch(req->namespace_(), req->keys(), "Lookup");
  if (!keys.ok()) return scope.Finish(ToGrpc(keys.status()));
  bool prefix = true;
  uint32_t prefix_hits = 0;
  for (const auto& k : *keys) {
    prefix = LocateInto(k, resp->add_entries()) && prefix;
    if (prefix) ++prefix_hits;
  }
  resp->set_prefix_hits(prefix_hits);
  return scope.Finish(grpc::Status::OK);
}

grpc::Status CacheService::LeasePrefix(grpc::ServerContext*, const v1::LeasePrefixRequest* req,
                                       v1::LeasePrefixResponse* resp) {
  RequestScope scope(metrics_, Op::kLeasePrefix);
  auto keys = ParseBatch(req->namespace_(), req->keys(), "LeasePrefix");
  if (!keys.ok()) return scope.Finish(ToGrpc(keys.status()));
  const uint32_t lease_ms = std::min(req->lease_ms(), cfg_.lease_max_ms);
  uint32_t leased = 0, prefix_hits = 0;
  bool leasing = true, prefix = true;
  int64_t expires = 0;
  for (const auto& k : *keys) {
    auto* info = resp->add_entries();
    if (leasing) {
      auto tl = tm_->Get(k, lease_ms);
      if (tl.ok()) {
        metrics_->CountGet(true);  // a Get counts as a lookup in the Stats totals
        NoteAccess(k);
        const Lease& lease = tl->lease;
        FillEntryInfo(lease.meta, lease.extent.length, info, tl->found_in);
        resp->add_offsets(lease.extent.offset);
        resp->add_lease_ids(lease.id);
        const int64_t e = UnixMs(lease.expires);
        expires = leased == 0 ? e : std::min(expires, e);
        metrics_->CountGetBytes(lease.extent.length, true);
        ++leased;
        ++prefix_hits;
        continue;
      }
      // A miss, or no lease capacity: the prefix of leases ends here (leases already
      // taken stay the client's; an error is not the request's failure).
      leasing = false;
      if (absl::IsNotFound(tl.status())) {
        metrics_->CountGet(false);
        info->set_tier(v1::TIER_NONE);
        prefix = false;
        continue;
      }
    }
    prefix = LocateInto(k, info) && prefix;
    if (prefix) ++prefix_hits;
  }
  resp->set_leased(leased);
  resp->set_prefix_hits(prefix_hits);
  resp->set_lease_expires_unix_ms(expires);
  resp->set_pool_id(tier_->pool_id());
  return scope.Finish(grpc::Status::OK);
}

grpc::Status CacheService::Get(grpc::ServerContext* ctx, const v1::GetRequest* req,
                               grpc::ServerWriter<v1::GetResponse>* writer) {
  RequestScope scope(metrics_, Op::kGet);
  if (auto st = ValidateNamespace(req->namespace_()); !st.ok()) {
    return scope.Finish(Invalid(absl::StrCat("namespace: ", std::string(st.message()))));
  }
  auto key = ParseKey(NamespaceId(req->namespace_()), req->key(), 0);
  if (!key.ok()) return scope.Finish(ToGrpc(key.status()));
  const bool shm = req->transfer() == v1::TRANSFER_SHM;
  if (!shm && req->transfer() != v1::TRANSFER_STREAM) {
    return scope.Finish(Invalid(absl::StrCat("unknown transfer ", req->transfer())));
  }
  StreamLimiter::Ticket ticket;
  if (!shm) {
    grpc::Status refusal;
    ticket = streams_.Admit(ctx, &refusal);
    if (!ticket.admitted()) return scope.Finish(refusal);
  }
  // Streams hold their internal lease as long as allowed; SHM leases are the client's.
  const uint32_t lease_ms = shm ? std::min(req->lease_ms(), cfg_.lease_max_ms) : cfg_.lease_max_ms;
  auto tl = tm_->Get(*key, lease_ms);
  if (!tl.ok()) {
    if (absl::IsNotFound(tl.status())) {
      metrics_->CountGet(false);
      return scope.Finish(grpc::Status(grpc::StatusCode::NOT_FOUND, "miss: no such entry"));
    }
    return scope.Finish(ToGrpc(tl.status()));
  }
  metrics_->CountGet(true);
  NoteAccess(*key);  // placement policy statistics (no-op without a policy)
  const Lease* lease = &tl->lease;
  LeaseGuard guard(tier_, lease->id);
  if (!shm) return scope.Finish(StreamEntry(ctx, *lease, *key, tl->found_in, &ticket, writer));

  v1::GetResponse frame;
  FillEntryInfo(lease->meta, lease->extent.length, frame.mutable_entry(), tl->found_in);
  frame.set_offset(lease->extent.offset);
  frame.set_lease_id(lease->id);
  frame.set_lease_expires_unix_ms(UnixMs(lease->expires));
  frame.set_pool_id(tier_->pool_id());
  if (!writer->Write(frame)) {
    return scope.Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
  }
  guard.Disarm();  // the client owns the lease now
  metrics_->CountGetBytes(lease->extent.length, true);
  return scope.Finish(grpc::Status::OK);
}

grpc::Status CacheService::StreamEntry(grpc::ServerContext* ctx, const Lease& lease,
                                       const EntryKey& /*key*/, StorageTier found_in,
                                       StreamLimiter::Ticket* ticket,
                                       grpc::ServerWriter<v1::GetResponse>* writer) {
  v1::GetResponse frame;
  FillEntryInfo(lease.meta, lease.extent.length, frame.mutable_entry(), found_in);
  if (!writer->Write(frame)) return StreamGone(ctx, *ticket);
  ticket->Touch();
  const ByteSpan bytes = tier_->Bytes(lease.extent);
  // Stop well before the lease ends: after it, the extent may be reused.
  constexpr auto kLeaseMargin = std::chrono::seconds(1);
  // No CRC pass here (DESIGN §9 still holds): the CRC was computed over the bytes as they
  // landed in the pool at Put (or checked on the SSD read that brought them back), pool memory
  // is trusted, and every client verifies the whole container against EntryInfo.crc32c after
  // the copy, so a corrupt entry still never reaches a caller as good bytes. Re-hashing cost
  // ~15% of a streamed Get for no added guarantee.
  // One message, reused: its data string keeps its capacity, so no fresh buffer per frame.
  v1::GetResponse data;
  std::string* buf = data.mutable_data();
  buf->reserve(std::min<uint64_t>(cfg_.stream_chunk_bytes, bytes.size()));
  for (uint64_t off = 0; off < bytes.size(); off += cfg_.stream_chunk_bytes) {
    if (ctx->IsCancelled()) return StreamGone(ctx, *ticket);
    if (std::chrono::system_clock::now() + kLeaseMargin >= lease.expires) {
      return grpc::Status(grpc::StatusCode::ABORTED,
                          "transfer outlived the entry's lease; retry the Get");
    }
    const uint64_t n = std::min<uint64_t>(cfg_.stream_chunk_bytes, bytes.size() - off);
    buf->assign(reinterpret_cast<const char*>(bytes.data() + off), n);
    if (!writer->Write(data)) return StreamGone(ctx, *ticket);
    ticket->Touch();
  }
  metrics_->CountGetBytes(bytes.size(), false);
  return grpc::Status::OK;
}

grpc::Status CacheService::Release(grpc::ServerContext*, const v1::ReleaseRequest* req,
                                   v1::ReleaseResponse* resp) {
  RequestScope scope(metrics_, Op::kRelease);
  if (static_cast<uint64_t>(req->lease_ids_size()) > cfg_.max_batch_keys) {
    return scope.Finish(Invalid(absl::StrCat(req->lease_ids_size(),
                                             " lease ids in one Release; at most ",
                                             cfg_.max_batch_keys)));
  }
  uint32_t released = 0;
  for (uint64_t id : req->lease_ids()) released += tier_->Release(id) ? 1 : 0;
  resp->set_released(released);
  return scope.Finish(grpc::Status::OK);
}

grpc::Status CacheService::Delete(grpc::ServerContext*, const v1::DeleteRequest* req,
                                  v1::DeleteResponse* resp) {
  RequestScope scope(metrics_, Op::kDelete);
  // Every key parses before anything is deleted.
  auto keys = ParseBatch(req->namespace_(), req->keys(), "Delete");
  if (!keys.ok()) return scope.Finish(ToGrpc(keys.status()));
  uint32_t deleted = 0;
  for (const auto& k : *keys) deleted += tm_->Delete(k) ? 1 : 0;
  resp->set_deleted(deleted);
  return scope.Finish(grpc::Status::OK);
}

grpc::Status CacheService::PoolInfo(grpc::ServerContext*, const v1::PoolInfoRequest*,
                                    v1::PoolInfoResponse* resp) {
  RequestScope scope(metrics_, Op::kPoolInfo);
  resp->set_shm_path(tier_->shm_path());
  resp->set_size(tier_->pool_size());
  resp->set_pool_id(tier_->pool_id());
  return scope.Finish(grpc::Status::OK);
}

grpc::Status CacheService::Stats(grpc::ServerContext*, const v1::StatsRequest*,
                                 v1::StatsResponse* resp) {
  RequestScope scope(metrics_, Op::kStats);
  const DramTierStats s = tier_->Stats();
  auto* dram = resp->add_tiers();
  dram->set_tier(v1::TIER_DRAM);
  dram->set_capacity_bytes(s.capacity_bytes);
  dram->set_used_bytes(s.used_bytes);
  dram->set_entries(s.entries);
  const TierManagerStats ts = tm_->Stats();
  dram->set_hits(ts.dram_hits + lookup_hits_dram_.load(std::memory_order_relaxed));
  if (ts.ssd) {
    auto* ssd = resp->add_tiers();
    ssd->set_tier(v1::TIER_SSD);
    ssd->set_capacity_bytes(ts.ssd->capacity_bytes);
    ssd->set_used_bytes(ts.ssd->live_payload_bytes);
    ssd->set_entries(ts.ssd->entries);
    ssd->set_hits(ts.ssd_hits + lookup_hits_ssd_.load(std::memory_order_relaxed));
  }
  resp->set_lookups(metrics_->lookups());
  resp->set_misses(metrics_->misses());
  resp->set_puts(metrics_->puts_ok());
  resp->set_evictions(s.evictions);
  resp->set_leases_outstanding(s.leases_outstanding);
  for (const auto& [codec, u] : metrics_->UsageByCodec()) {
    (*resp->mutable_entries_by_codec())[codec] = u.entries;
    (*resp->mutable_bytes_by_codec())[codec] = u.bytes;
  }
  resp->set_version(kVersion);
  resp->set_uptime_s(std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::steady_clock::now() - start_)
                         .count());
  return scope.Finish(grpc::Status::OK);
}

grpc::Status CacheService::Health(grpc::ServerContext*, const v1::HealthRequest*,
                                  v1::HealthResponse* resp) {
  RequestScope scope(metrics_, Op::kHealth);
  resp->set_serving(serving_.load());
  resp->set_version(kVersion);
  return scope.Finish(grpc::Status::OK);
}

}  // namespace adaptcache::server
