#include "server/service.h"

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/crc32c.h"
#include "common/key.h"
#include "spdlog/spdlog.h"

namespace adaptcache::server {
namespace {

int64_t UnixMs(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

grpc::Status Invalid(const std::string& msg) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, msg);
}

}  // namespace

grpc::Status StreamGone(grpc::ServerContextBase* ctx, const StreamLimiter::Ticket& ticket) {
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
                           AccessObserver* observer, Auth* auth)
    : cfg_(cfg),
      tm_(tm),
      metrics_(metrics),
      observer_(observer),
      auth_(auth),
      start_(std::chrono::steady_clock::now()),
      streams_(StreamLimits{cfg.max_streams, std::chrono::milliseconds(cfg.stream_idle_timeout_ms),
                            std::chrono::milliseconds(cfg.max_stream_ms),
                            std::chrono::milliseconds(cfg.stream_preempt_idle_ms), cfg.retry_after_ms}),
      staging_(cfg.max_staging_bytes),
      readers_(std::max(4u, std::thread::hardware_concurrency())),
      encoders_(std::max(2u, std::thread::hardware_concurrency())) {}

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
                                 v1::EntryInfo* info, Tier tier) const {
  info->set_tier(tier == Tier::kSsd      ? v1::TIER_SSD
                 : tier == Tier::kRemote ? v1::TIER_REMOTE
                                         : v1::TIER_DRAM);
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

absl::StatusOr<Caller> CacheService::Identify(const grpc::ServerContextBase& ctx) const {
  if (auth_ == nullptr) return Caller{};
  auto c = auth_->Identify(ctx);
  if (!c.ok()) metrics_->CountAuthRefusal(false);
  return c;
}

absl::StatusOr<uint64_t> CacheService::NamespaceIdFor(const Caller& caller, const std::string& ns) const {
  if (auto st = ValidateNamespace(ns); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("namespace: ", st.message()));
  }
  if (auth_ == nullptr) return NamespaceId(ns);
  auto id = auth_->NamespaceIdFor(caller, ns);
  if (!id.ok()) metrics_->CountAuthRefusal(true);
  return id;
}

absl::Status CacheService::MakeRoom(const Caller& caller, uint64_t incoming) const {
  if (caller.tenant == nullptr) return absl::OkStatus();
  const Tenant& t = *caller.tenant;
  if (t.dram_bytes == 0 && t.max_entries == 0) return absl::OkStatus();
  if (t.dram_bytes != 0 && incoming > t.dram_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("an entry of up to ", incoming, " bytes exceeds tenant '",
                                                     t.name, "''s DRAM quota of ", t.dram_bytes, " bytes"));
  }
  const auto ids = auth_->NamespaceIdsOf(caller.index);
  const uint64_t max_bytes = t.dram_bytes == 0 ? UINT64_MAX : t.dram_bytes - incoming;
  const uint64_t max_entries = t.max_entries == 0 ? UINT64_MAX : t.max_entries - 1;
  auto st = tm_->EvictFrom(ids, max_bytes, max_entries);
  if (!st.ok()) {
    return absl::ResourceExhaustedError(absl::StrCat("tenant '", t.name, "' is at its DRAM quota: ",
                                                     std::string(st.message())));
  }
  return absl::OkStatus();
}

void CacheService::EnforceSsdQuota(int tenant_index) const {
  if (auth_ == nullptr || tenant_index < 0) return;
  const Tenant& t = *auth_->tenants()[static_cast<size_t>(tenant_index)];
  if (t.ssd_bytes == 0 || !tm_->HasSsd()) return;
  const auto ids = auth_->NamespaceIdsOf(tenant_index);
  if (static_cast<uint64_t>(tm_->SsdUsageOf(ids).bytes) <= t.ssd_bytes) return;
  const size_t n = tm_->EvictFromSsd(ids, t.ssd_bytes / 16 * 15);
  spdlog::debug("tenant '{}' over its SSD quota of {} bytes: {} SSD copies dropped", t.name, t.ssd_bytes, n);
}

void CacheService::EnforceSsdQuotas() const {
  if (auth_ == nullptr) return;
  for (size_t i = 0; i < auth_->tenants().size(); ++i) EnforceSsdQuota(static_cast<int>(i));
}

absl::StatusOr<std::vector<EntryKey>> CacheService::ParseBatch(
    const grpc::ServerContextBase& ctx, const std::string& ns,
    const google::protobuf::RepeatedPtrField<std::string>& keys, const char* rpc, Caller* caller) const {
  auto who = Identify(ctx);
  if (!who.ok()) return who.status();
  if (caller != nullptr) *caller = *who;
  auto ns_id_or = NamespaceIdFor(*who, ns);
  if (!ns_id_or.ok()) return ns_id_or.status();
  if (static_cast<uint64_t>(keys.size()) > cfg_.max_batch_keys) {
    return absl::InvalidArgumentError(
        absl::StrCat(keys.size(), " keys in one ", rpc, "; at most ", cfg_.max_batch_keys));
  }
  const uint64_t ns_id = *ns_id_or;
  std::vector<EntryKey> out;
  out.reserve(keys.size());
  for (int i = 0; i < keys.size(); ++i) {
    auto k = ParseKey(ns_id, keys.Get(i), i);
    if (!k.ok()) return k.status();
    out.push_back(*k);
  }
  return out;
}

bool CacheService::LocateInto(const Location& loc, v1::EntryInfo* info) {
  metrics_->CountLookup(loc.tier != Tier::kNone);
  if (loc.tier == Tier::kNone) {
    info->set_tier(v1::TIER_NONE);
    return false;
  }
  (loc.tier == Tier::kSsd      ? lookup_hits_ssd_
   : loc.tier == Tier::kRemote ? lookup_hits_remote_
                               : lookup_hits_dram_)
      .fetch_add(1, std::memory_order_relaxed);
  // An SSD entry not read since a restart has no shape yet (docs/api.md).
  FillEntryInfo(loc.meta, loc.meta.stored_bytes, info, loc.tier);
  return true;
}

grpc::ServerUnaryReactor* CacheService::Lookup(grpc::CallbackServerContext* ctx, const v1::LookupRequest* req,
                                               v1::LookupResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto run = [this, ctx, req, resp, reactor] {
    RequestScope scope(metrics_, Op::kLookup);
    auto keys = ParseBatch(*ctx, req->namespace_(), req->keys(), "Lookup");
    if (!keys.ok()) {
      reactor->Finish(scope.Finish(ToGrpc(keys.status())));
      return;
    }
    bool prefix = true;
    uint32_t prefix_hits = 0;
    for (const Location& loc : tm_->LocateMany(*keys)) {
      prefix = LocateInto(loc, resp->add_entries()) && prefix;
      if (prefix) ++prefix_hits;
    }
    resp->set_prefix_hits(prefix_hits);
    reactor->Finish(scope.Finish(grpc::Status::OK));
  };
  if (tm_->HasRemote()) {
    readers_.Submit(std::move(run));
  } else {
    run();
  }
  return reactor;
}

grpc::Status CacheService::LeasePrefix(grpc::ServerContext* ctx, const v1::LeasePrefixRequest* req,
                                       v1::LeasePrefixResponse* resp) {
  RequestScope scope(metrics_, Op::kLeasePrefix);
  Caller caller;
  auto keys = ParseBatch(*ctx, req->namespace_(), req->keys(), "LeasePrefix", &caller);
  if (!keys.ok()) return scope.Finish(ToGrpc(keys.status()));
  if (auth_ != nullptr) {  // leases hand out pool offsets
    if (auto st = auth_->CheckShm(caller); !st.ok()) return scope.Finish(ToGrpc(st));
  }
  const uint32_t lease_ms = std::min(req->lease_ms(), cfg_.lease_max_ms);
  uint32_t leased = 0, prefix_hits = 0;
  bool leasing = true, prefix = true;
  int64_t expires = 0;
  size_t first_unleased = keys->size();  // keys from here on are only looked up
  for (size_t i = 0; i < keys->size(); ++i) {
    const EntryKey& k = (*keys)[i];
    auto* info = resp->add_entries();
    if (leasing) {
      auto tl = tm_->Get(k, lease_ms);
      if (tl.ok()) {
        metrics_->CountGet(true);  // a Get counts as a lookup in the Stats totals
        NoteAccess(k);
        const Lease& lease = tl->lease;
        FillEntryInfo(lease.meta, lease.extent.length, info, tl->found_in);
        resp->add_offsets(lease.extent.offset);
        resp->add_lease_ids(caller.LeaseId(lease.id));
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
    first_unleased = i;
    break;
  }
  if (first_unleased < keys->size()) {
    const auto rest = std::span<const EntryKey>(*keys).subspan(first_unleased);
    const auto locs = tm_->LocateMany(rest);
    for (size_t j = 0; j < locs.size(); ++j) {
      auto* info = j == 0 ? resp->mutable_entries(static_cast<int>(first_unleased)) : resp->add_entries();
      prefix = LocateInto(locs[j], info) && prefix;
      if (prefix) ++prefix_hits;
    }
  }
  resp->set_leased(leased);
  resp->set_prefix_hits(prefix_hits);
  resp->set_lease_expires_unix_ms(expires);
  resp->set_pool_id(tm_->pool_id());
  return scope.Finish(grpc::Status::OK);
}

// A Get: validation and a DRAM hit on the callback thread, a lookup that may read the SSD
// on the readers' pool, then one frame at a time: the next frame is built only when the
// client took the previous one, so a client that stops reading holds one frame and its
// lease.
class CacheService::GetReactor final : public grpc::ServerWriteReactor<v1::GetResponse> {
 public:
  GetReactor(CacheService* s, grpc::CallbackServerContext* ctx, const v1::GetRequest* req)
      : s_(s), ctx_(ctx), scope_(s->metrics_, Op::kGet) {
    auto caller = s_->Identify(*ctx);
    if (caller.ok()) caller_ = *caller;
    auto ns_id = caller.ok() ? s_->NamespaceIdFor(*caller, req->namespace_())
                             : absl::StatusOr<uint64_t>(caller.status());
    if (!ns_id.ok()) {
      Done(ToGrpc(ns_id.status()));
      return;
    }
    auto key = s_->ParseKey(*ns_id, req->key(), 0);
    if (!key.ok()) {
      Done(ToGrpc(key.status()));
      return;
    }
    shm_ = req->transfer() == v1::TRANSFER_SHM;
    if (!shm_ && req->transfer() != v1::TRANSFER_STREAM) {
      Done(Invalid(absl::StrCat("unknown transfer ", req->transfer())));
      return;
    }
    if (shm_ && s_->auth_ != nullptr) {
      if (auto st = s_->auth_->CheckShm(*caller); !st.ok()) {
        Done(ToGrpc(st));
        return;
      }
    }
    if (!shm_) {
      grpc::Status refusal;
      ticket_ = s_->streams_.Admit(ctx, &refusal);
      if (!ticket_.admitted()) {
        Done(refusal);
        return;
      }
    }
    // Streams hold their internal lease as long as allowed; SHM leases are the client's.
    const uint32_t lease_ms = shm_ ? std::min(req->lease_ms(), s_->cfg_.lease_max_ms) : s_->cfg_.lease_max_ms;
    // Without an SSD tier a Get never blocks, so it runs here; with one, a DRAM hit is
    // still served from here and the rest goes to the readers.
    if (!s_->tm_->HasSsd()) {
      Serve(s_->tm_->Get(*key, lease_ms), *key);
      return;
    }
    auto hit = s_->tm_->GetFromDram(*key, lease_ms);
    if (!absl::IsNotFound(hit.status())) {
      Serve(std::move(hit), *key);
      return;
    }
    ticket_.SetBusy(true);
    s_->readers_.Submit([this, key = *key, lease_ms] { Serve(s_->tm_->Get(key, lease_ms), key); });
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Done(StreamGone(ctx_, ticket_));
      return;
    }
    if (shm_) {
      lease_id_ = 0;  // the client owns the lease now
      s_->metrics_->CountGetBytes(extent_.length, true);
      Done(grpc::Status::OK);
      return;
    }
    ticket_.Touch();
    NextChunk();
  }
  void OnDone() override { delete this; }

 private:
  ~GetReactor() override = default;  // Done(), before OnDone(), released the lease

  void Serve(absl::StatusOr<TierLease> tl, const EntryKey& key) {
    ticket_.SetBusy(false);
    if (!tl.ok()) {
      if (absl::IsNotFound(tl.status())) {
        s_->metrics_->CountGet(false);
        Done(grpc::Status(grpc::StatusCode::NOT_FOUND, "miss: no such entry"));
        return;
      }
      Done(ToGrpc(tl.status()));
      return;
    }
    s_->metrics_->CountGet(true);
    s_->NoteAccess(key);  // placement policy statistics (no-op without a policy)
    lease_id_ = tl->lease.id;
    extent_ = tl->lease.extent;
    expires_ = tl->lease.expires;
    s_->FillEntryInfo(tl->lease.meta, extent_.length, frame_.mutable_entry(), tl->found_in);
    if (shm_) {
      frame_.set_offset(extent_.offset);
      frame_.set_lease_id(caller_.LeaseId(lease_id_));
      frame_.set_lease_expires_unix_ms(UnixMs(expires_));
      frame_.set_pool_id(s_->tm_->pool_id());
    }
    StartWrite(&frame_);
  }

  // No CRC pass here (DESIGN §9 still holds): the CRC was computed over the bytes as they
  // landed in the pool at Put (or checked on the SSD read that brought them back), pool
  // memory is trusted, and every client verifies the whole container against
  // EntryInfo.crc32c after the copy, so a corrupt entry never reaches a caller as good bytes.
  void NextChunk() {
    const ByteSpan bytes = s_->tm_->Bytes(extent_);
    if (sent_ == bytes.size()) {
      s_->metrics_->CountGetBytes(bytes.size(), false);
      Done(grpc::Status::OK);
      return;
    }
    // Stop well before the lease ends: after it, the extent may be reused.
    constexpr auto kLeaseMargin = std::chrono::seconds(1);
    if (std::chrono::system_clock::now() + kLeaseMargin >= expires_) {
      Done(grpc::Status(grpc::StatusCode::ABORTED, "transfer outlived the entry's lease; retry the Get"));
      return;
    }
    const uint64_t n = std::min<uint64_t>(s_->cfg_.stream_chunk_bytes, bytes.size() - sent_);
    // One message, reused: its data string keeps its capacity.
    frame_.Clear();
    frame_.mutable_data()->assign(reinterpret_cast<const char*>(bytes.data() + sent_), n);
    sent_ += n;
    StartWrite(&frame_);
  }

  // The internal lease ends before the client hears the status.
  void Done(grpc::Status st) {
    if (lease_id_ != 0) s_->tm_->Release(lease_id_);
    lease_id_ = 0;
    Finish(scope_.Finish(std::move(st)));
  }

  CacheService* const s_;
  grpc::CallbackServerContext* const ctx_;
  RequestScope scope_;
  StreamLimiter::Ticket ticket_;
  bool shm_ = false;
  uint64_t lease_id_ = 0;  // released with the reactor unless handed to the client
  Caller caller_;
  Extent extent_{};
  std::chrono::system_clock::time_point expires_{};
  uint64_t sent_ = 0;
  v1::GetResponse frame_;
};

grpc::ServerWriteReactor<v1::GetResponse>* CacheService::Get(grpc::CallbackServerContext* ctx,
                                                             const v1::GetRequest* req) {
  return new GetReactor(this, ctx, req);
}

grpc::Status CacheService::Release(grpc::ServerContext* ctx, const v1::ReleaseRequest* req,
                                   v1::ReleaseResponse* resp) {
  RequestScope scope(metrics_, Op::kRelease);
  auto caller = Identify(*ctx);
  if (!caller.ok()) return scope.Finish(ToGrpc(caller.status()));
  if (static_cast<uint64_t>(req->lease_ids_size()) > cfg_.max_batch_keys) {
    return scope.Finish(Invalid(absl::StrCat(req->lease_ids_size(),
                                             " lease ids in one Release; at most ",
                                             cfg_.max_batch_keys)));
  }
  uint32_t released = 0;
  for (uint64_t id : req->lease_ids()) released += tm_->Release(caller->LeaseId(id)) ? 1 : 0;
  resp->set_released(released);
  return scope.Finish(grpc::Status::OK);
}

grpc::Status CacheService::Delete(grpc::ServerContext* ctx, const v1::DeleteRequest* req,
                                  v1::DeleteResponse* resp) {
  RequestScope scope(metrics_, Op::kDelete);
  // Every key parses before anything is deleted.
  auto keys = ParseBatch(*ctx, req->namespace_(), req->keys(), "Delete");
  if (!keys.ok()) return scope.Finish(ToGrpc(keys.status()));
  const auto deleted = static_cast<uint32_t>(tm_->DeleteMany(*keys));
  resp->set_deleted(deleted);
  return scope.Finish(grpc::Status::OK);
}

grpc::Status CacheService::PoolInfo(grpc::ServerContext* ctx, const v1::PoolInfoRequest*,
                                    v1::PoolInfoResponse* resp) {
  RequestScope scope(metrics_, Op::kPoolInfo);
  auto caller = Identify(*ctx);
  if (!caller.ok()) return scope.Finish(ToGrpc(caller.status()));
  if (auth_ != nullptr) {
    if (auto st = auth_->CheckShm(*caller); !st.ok()) return scope.Finish(ToGrpc(st));
  }
  resp->set_shm_path(tm_->shm_path());
  resp->set_size(tm_->pool_size());
  resp->set_pool_id(tm_->pool_id());
  return scope.Finish(grpc::Status::OK);
}

grpc::Status CacheService::Stats(grpc::ServerContext* ctx, const v1::StatsRequest*,
                                 v1::StatsResponse* resp) {
  RequestScope scope(metrics_, Op::kStats);
  auto caller = Identify(*ctx);  // aggregate counters only: no key or namespace
  if (!caller.ok()) return scope.Finish(ToGrpc(caller.status()));
  const DramTierStats s = tm_->DramStats();
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

grpc::ServerUnaryReactor* CacheService::Health(grpc::CallbackServerContext* ctx, const v1::HealthRequest*,
                                               v1::HealthResponse* resp) {
  RequestScope scope(metrics_, Op::kHealth);
  resp->set_serving(serving_.load());
  resp->set_version(kVersion);
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(scope.Finish(grpc::Status::OK));
  return reactor;
}

}  // namespace adaptcache::server
