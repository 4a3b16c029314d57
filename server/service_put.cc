// Put, ReservePut and CommitPut: header validation, staging, encode and commit.
#include <cmath>
#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/crc32c.h"
#include "common/key.h"
#include "server/service.h"

namespace adaptcache::server {
namespace {

constexpr uint32_t kMaxProbes = 256;
// How long a reservation id is remembered after it expired, so CommitPut can say
// "expired" rather than "unknown".
constexpr auto kExpiredMemory = std::chrono::minutes(5);
constexpr size_t kMaxExpiredRemembered = 1 << 16;

grpc::Status Invalid(const std::string& msg) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, msg);
}

// Frees an in-flight extent unless it was committed.
class ExtentGuard {
 public:
  ExtentGuard(TierManager* tm, Extent e) : tm_(tm), e_(e) {}
  ~ExtentGuard() {
    if (armed_) tm_->Free(e_);
  }
  void Disarm() { armed_ = false; }

 private:
  TierManager* tm_;
  Extent e_;
  bool armed_ = true;
};

bool AllFinite(const google::protobuf::RepeatedField<float>& v) {
  for (float f : v) {
    if (!std::isfinite(f)) return false;
  }
  return true;
}

}  // namespace

class CacheService::InflightSlot {
 public:
  explicit InflightSlot(CacheService* s) : s_(s) {
    int64_t n = s_->inflight_puts_.fetch_add(1) + 1;
    ok_ = n <= static_cast<int64_t>(s_->cfg_.max_inflight_puts);
    if (!ok_) {
      s_->inflight_puts_.fetch_sub(1);
    } else {
      s_->metrics_->SetInflightPuts(n);
    }
  }
  ~InflightSlot() {
    if (ok_) s_->metrics_->SetInflightPuts(s_->inflight_puts_.fetch_sub(1) - 1);
  }
  bool ok() const { return ok_; }
  grpc::Status Refusal(grpc::ServerContextBase* ctx) const {
    return Overloaded(ctx, absl::StrCat("more than ", s_->cfg_.max_inflight_puts, " puts in flight"),
                      s_->cfg_.retry_after_ms);
  }

 private:
  CacheService* s_;
  bool ok_ = false;
};

absl::StatusOr<CacheService::PutPlan> CacheService::ValidateHeader(const grpc::ServerContextBase& ctx,
                                                                   const v1::PutHeader& h) const {
  PutPlan plan;
  auto caller = Identify(ctx);
  if (!caller.ok()) return caller.status();
  plan.caller = *caller;
  auto ns_id = NamespaceIdFor(*caller, h.namespace_());
  if (!ns_id.ok()) return ns_id.status();
  auto key = ParseKey(*ns_id, h.key(), 0);
  if (!key.ok()) return key.status();
  plan.key = *key;
  if (!h.has_shape()) return absl::InvalidArgumentError("header has no shape");
  const auto& s = h.shape();
  auto dtype = DTypeFromCode(static_cast<uint32_t>(s.dtype()));
  if (!dtype.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("shape.dtype: ", std::string(dtype.status().message())));
  }
  plan.shape = KvShape{s.layers(), s.tokens(), s.kv_heads(), s.head_dim(), *dtype};
  if (auto st = ValidateShape(plan.shape); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("shape: ", std::string(st.message())));
  }
  const uint64_t raw_bytes = plan.shape.Bytes();
  if (raw_bytes > cfg_.max_entry_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("entry of ", raw_bytes,
                                                     " bytes exceeds max_entry_bytes (",
                                                     cfg_.max_entry_bytes, ")"));
  }
  plan.codec_name = h.codec().empty() ? cfg_.CodecFor(h.namespace_()) : h.codec();
  auto codec = ParseCodecConfig(plan.codec_name);
  if (!codec.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("codec: ", std::string(codec.status().message())));
  }
  if (auto st = ValidateConfig(*codec); !st.ok()) {
    return absl::Status(st.code(), absl::StrCat("codec '", plan.codec_name, "': ",
                                                std::string(st.message())));
  }
  plan.codec = *codec;
  plan.codec_name = codec->Name();  // canonical spelling
  if (MaxEncodedBytes(plan.codec, plan.shape) > tm_->pool_size() / 2) {
    return absl::ResourceExhaustedError(
        absl::StrCat("entry of ", raw_bytes, " bytes cannot fit in half the pool (",
                     tm_->pool_size(), " bytes)"));
  }
  if (h.token_importance_size() != 0) {
    if (static_cast<uint32_t>(h.token_importance_size()) != plan.shape.tokens) {
      return absl::InvalidArgumentError(absl::StrCat("token_importance has ",
                                                     h.token_importance_size(),
                                                     " values; shape has ", plan.shape.tokens,
                                                     " tokens"));
    }
    if (!AllFinite(h.token_importance())) {
      return absl::InvalidArgumentError("token_importance holds NaN or infinity");
    }
    plan.token_importance.assign(h.token_importance().begin(), h.token_importance().end());
  }
  if (h.probe_count() > kMaxProbes) {
    return absl::InvalidArgumentError(
        absl::StrCat("probe_count ", h.probe_count(), " exceeds ", kMaxProbes));
  }
  const uint64_t want = uint64_t{plan.shape.layers} * h.probe_count() * plan.shape.kv_heads *
                        plan.shape.head_dim;
  if (static_cast<uint64_t>(h.probe_queries_size()) != want) {
    return absl::InvalidArgumentError(absl::StrCat(
        "probe_queries has ", h.probe_queries_size(), " values; [layers][probe_count][kv_heads]"
        "[head_dim] needs ", want));
  }
  if (!AllFinite(h.probe_queries())) {
    return absl::InvalidArgumentError("probe_queries holds NaN or infinity");
  }
  plan.durable = h.durable();
  plan.probe_count = h.probe_count();
  plan.probe_queries.assign(h.probe_queries().begin(), h.probe_queries().end());
  return plan;
}

absl::Status CacheService::EncodeAndCommit(const PutPlan& plan, ConstByteSpan raw,
                                           v1::PutResponse* resp) {
  const uint64_t max = MaxEncodedBytes(plan.codec, plan.shape);
  auto out = tm_->Allocate(max);
  if (!out.ok()) return out.status();
  ExtentGuard guard(tm_, *out);
  ByteSpan dst = tm_->Bytes(*out).first(max);
  uint64_t n = 0;
  uint32_t crc = 0;
  if (plan.codec.family == CodecId::kRaw) {  // one copy, one CRC pass
    auto w = EncodeRaw(plan.shape, raw, dst, &crc);
    if (!w.ok()) return w.status();
    n = *w;
  } else {
    SideData side;
    side.token_importance = plan.token_importance;
    side.probe_count = plan.probe_count;
    side.probe_queries = plan.probe_queries;
    auto w = Encode(plan.codec, plan.shape, raw, side, dst);
    if (!w.ok()) return w.status();
    n = *w;
    if (n == 0 || n > max) {
      return absl::InternalError(absl::StrCat("encoder wrote ", n, " bytes; bound is ", max));
    }
    crc = Crc32c(dst.data(), n);  // whole container, as EntryInfo promises
  }
  if (auto st = Commit(plan, Extent{out->offset, n}, crc, resp); !st.ok()) return st;
  guard.Disarm();
  return absl::OkStatus();
}

absl::Status CacheService::Commit(const PutPlan& plan, Extent container, uint32_t crc32c,
                                  v1::PutResponse* resp) {
  EntryMeta meta;
  meta.shape = plan.shape;
  meta.codec_family = plan.codec.family;
  meta.codec = plan.codec_name;
  meta.raw_bytes = plan.shape.Bytes();
  meta.crc32c = crc32c;
  meta.est_quality_loss = 0.f;  // no quality model yet
  meta.stored_bytes = container.length;
  const uint64_t n = container.length;
  // A tenant over its quota makes room from its own LRU entries, never others'.
  if (auto st = MakeRoom(plan.caller, (n + 4095) / 4096 * 4096); !st.ok()) return st;
  TierPutOptions popts;
  popts.durable = plan.durable && tm_->HasSsd();
  auto put = tm_->CommitPut(plan.key, container, meta, popts);
  if (!put.ok()) return put.status();
  if (put->durable) EnforceSsdQuota(plan.caller.index);
  FillEntryInfo(meta, n, resp->mutable_entry());
  resp->set_durable(put->durable);
  metrics_->CountPut(meta.raw_bytes, n);
  NoteAccess(plan.key);  // placement policy statistics (no-op without a policy)
  NotePut(plan.key, plan.shape, meta.codec_family);  // put transcoding (no-op unless raw)
  return absl::OkStatus();
}

// A streamed Put: each frame is checked and appended on the callback thread as it arrives,
// to the staging buffer, or for a raw Put straight into its container in the pool (when
// the staging budget takes the whole entry at once); the encode (or seal) and commit run
// on the encoders' pool.
class CacheService::PutReactor final : public grpc::ServerReadReactor<v1::PutRequest> {
 public:
  PutReactor(CacheService* s, grpc::CallbackServerContext* ctx, v1::PutResponse* resp)
      : s_(s), ctx_(ctx), resp_(resp), scope_(s->metrics_, Op::kPut) {
    // Admitted before the header: a client that sends nothing holds a stream slot, not more.
    grpc::Status refusal;
    ticket_ = s_->streams_.Admit(ctx, &refusal);
    if (!ticket_.admitted()) {
      Done(refusal);
      return;
    }
    StartRead(&frame_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      End();
      return;
    }
    ticket_.Touch();
    grpc::Status st = index_ == 0 ? OnHeader() : OnData();
    if (!st.ok()) {
      Done(std::move(st));
      return;
    }
    ++index_;
    StartRead(&frame_);
  }
  void OnDone() override { delete this; }

 private:
  grpc::Status OnHeader() {
    if (!frame_.has_header()) return Invalid("the first Put frame must be a header");
    auto plan = s_->ValidateHeader(*ctx_, frame_.header());
    if (!plan.ok()) return ToGrpc(plan.status());
    if (auto st = s_->staging_.CheckFits(plan->shape.Bytes()); !st.ok()) return ToGrpc(st);
    plan_.emplace(std::move(*plan));
    return grpc::Status::OK;
  }

  // The first data frame picks where the bytes go: the pool (raw, budget permitting) or staging.
  absl::Status StartSink() {
    if (plan_->codec.family == CodecId::kRaw) {
      auto sink = PoolContainerSink::Start(s_->tm_, &s_->staging_, plan_->shape);
      if (sink.ok()) {
        pool_.emplace(std::move(*sink));
        return absl::OkStatus();
      }
      if (!absl::IsResourceExhausted(sink.status())) return sink.status();
      // No room for the whole entry now: stage frame by frame as any other Put.
    }
    auto staging = StagingBuffer::Create(plan_->shape.Bytes(), &s_->staging_);
    if (!staging.ok()) return staging.status();
    staging_.emplace(std::move(*staging));
    return absl::OkStatus();
  }

  uint64_t received() const { return pool_ ? pool_->size() : staging_ ? staging_->size() : 0; }

  grpc::Status OnData() {
    switch (frame_.frame_case()) {
      case v1::PutRequest::kHeader:
        return Invalid(absl::StrCat("frame ", index_, " is a second header"));
      case v1::PutRequest::kData: {
        const std::string& d = frame_.data();
        if (d.empty()) {  // docs/api.md: an empty frame is a client bug, not a keepalive
          return Invalid(absl::StrCat("frame ", index_, " is an empty data frame"));
        }
        if (!pool_ && !staging_) {
          if (auto st = StartSink(); !st.ok()) {
            if (absl::IsResourceExhausted(st)) return Overloaded(ctx_, std::string(st.message()), s_->cfg_.retry_after_ms);
            return ToGrpc(st);
          }
        }
        absl::Status st = pool_ ? pool_->Append(d.data(), d.size()) : staging_->Append(d.data(), d.size());
        if (!st.ok()) {
          if (absl::IsResourceExhausted(st)) {
            return Overloaded(ctx_, std::string(st.message()), s_->cfg_.retry_after_ms);
          }
          return Invalid(absl::StrCat(st.message(), " (frame ", index_, ")"));
        }
        return grpc::Status::OK;
      }
      default:
        return Invalid(absl::StrCat("frame ", index_, " has neither header nor data"));
    }
  }

  // The client half-closed (or the call was cancelled).
  void End() {
    if (ctx_->IsCancelled()) {
      Done(StreamGone(ctx_, ticket_));
      return;
    }
    if (index_ == 0) {
      Done(Invalid("empty Put stream: the first frame must be a header"));
      return;
    }
    const uint64_t raw_bytes = plan_->shape.Bytes();
    if (received() != raw_bytes) {
      Done(Invalid(absl::StrCat("stream ended after ", received(), " of the shape's ", raw_bytes, " bytes")));
      return;
    }
    // Only encoding counts as in flight: a Put still receiving holds staging, not a slot.
    slot_.emplace(s_);
    if (!slot_->ok()) {
      Done(slot_->Refusal(ctx_));
      return;
    }
    ticket_.SetBusy(true);
    s_->encoders_.Submit([this] {
      grpc::Status st = ToGrpc(pool_ ? SealAndCommit() : s_->EncodeAndCommit(*plan_, staging_->bytes(), resp_));
      ticket_.SetBusy(false);
      Done(std::move(st));
    });
  }

  absl::Status SealAndCommit() {
    auto sealed = pool_->Seal();
    if (!sealed.ok()) return sealed.status();
    if (auto st = s_->Commit(*plan_, sealed->first, sealed->second, resp_); !st.ok()) return st;
    pool_->Release();
    return absl::OkStatus();
  }

  // Staging and the in-flight slot go back before the client hears the status, so a
  // client that retries at once finds them free.
  void Done(grpc::Status st) {
    staging_.reset();
    pool_.reset();
    slot_.reset();
    Finish(scope_.Finish(std::move(st)));
  }

  CacheService* const s_;
  grpc::CallbackServerContext* const ctx_;
  v1::PutResponse* const resp_;
  RequestScope scope_;
  StreamLimiter::Ticket ticket_;
  v1::PutRequest frame_;
  uint64_t index_ = 0;  // frames read so far
  std::optional<PutPlan> plan_;
  std::optional<InflightSlot> slot_;
  std::optional<StagingBuffer> staging_;
  std::optional<PoolContainerSink> pool_;
};

grpc::ServerReadReactor<v1::PutRequest>* CacheService::Put(grpc::CallbackServerContext* ctx,
                                                           v1::PutResponse* resp) {
  return new PutReactor(this, ctx, resp);
}

grpc::Status CacheService::ReservePut(grpc::ServerContext* ctx, const v1::ReservePutRequest* req,
                                      v1::ReservePutResponse* resp) {
  RequestScope scope(metrics_, Op::kReservePut);
  if (!req->has_header()) return scope.Finish(Invalid("ReservePut needs a header"));
  auto plan = ValidateHeader(*ctx, req->header());
  if (!plan.ok()) return scope.Finish(ToGrpc(plan.status()));
  if (auth_ != nullptr) {  // the client writes into the pool
    if (auto st = auth_->CheckShm(plan->caller); !st.ok()) return scope.Finish(ToGrpc(st));
  }
  const uint64_t raw_bytes = plan->shape.Bytes();
  auto res = tm_->Reserve(raw_bytes);
  if (!res.ok()) return scope.Finish(ToGrpc(res.status()));
  {
    std::lock_guard<std::mutex> lock(pending_mu_);
    const int tenant = plan->caller.index;
    pending_[res->id] = PendingReservation{std::move(*plan), tenant, raw_bytes, res->expires};
  }
  resp->set_reservation_id(res->id);
  resp->set_offset(res->extent.offset);
  resp->set_length(raw_bytes);
  resp->set_expires_unix_ms(
      std::chrono::duration_cast<std::chrono::milliseconds>(res->expires.time_since_epoch())
          .count());
  resp->set_pool_id(tm_->pool_id());
  return scope.Finish(grpc::Status::OK);
}

grpc::Status CacheService::CommitPut(grpc::ServerContext* ctx, const v1::CommitPutRequest* req,
                                     v1::PutResponse* resp) {
  RequestScope scope(metrics_, Op::kCommitPut);
  const uint64_t id = req->reservation_id();
  if (id == 0) return scope.Finish(Invalid("reservation_id 0 is never issued"));
  InflightSlot slot(this);
  if (!req->abort() && !slot.ok()) return scope.Finish(slot.Refusal(ctx));

  auto caller = Identify(*ctx);
  if (!caller.ok()) return scope.Finish(ToGrpc(caller.status()));
  PendingReservation pending;
  {
    std::lock_guard<std::mutex> lock(pending_mu_);
    auto it = pending_.find(id);
    if (it != pending_.end() && it->second.tenant != caller->index) it = pending_.end();  // not its own
    if (it == pending_.end()) {
      if (expired_.contains(id)) {
        return scope.Finish(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                         absl::StrCat("reservation ", id, " expired")));
      }
      return scope.Finish(grpc::Status(
          grpc::StatusCode::NOT_FOUND,
          absl::StrCat("unknown reservation ", id, " (never issued or already committed)")));
    }
    pending = std::move(it->second);
    pending_.erase(it);
  }
  auto extent = tm_->TakeReservation(id);
  if (!extent.ok()) {
    if (absl::IsNotFound(extent.status())) {
      std::lock_guard<std::mutex> lock(pending_mu_);
      if (expired_.size() < kMaxExpiredRemembered) expired_[id] = pending.expires;
      return scope.Finish(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                       absl::StrCat("reservation ", id, " expired")));
    }
    return scope.Finish(ToGrpc(extent.status()));
  }
  ExtentGuard guard(tm_, *extent);
  if (req->abort()) return scope.Finish(grpc::Status::OK);
  if (extent->length < pending.length) {
    return scope.Finish(grpc::Status(grpc::StatusCode::INTERNAL, "reservation shorter than asked"));
  }
  ConstByteSpan raw = tm_->Bytes(*extent).first(pending.length);
  return scope.Finish(ToGrpc(EncodeAndCommit(pending.plan, raw, resp)));
}

size_t CacheService::ReapPending() {
  const auto now = std::chrono::system_clock::now();
  std::lock_guard<std::mutex> lock(pending_mu_);
  size_t n = 0;
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (it->second.expires <= now) {
      if (expired_.size() < kMaxExpiredRemembered) expired_[it->first] = it->second.expires;
      pending_.erase(it++);
      ++n;
    } else {
      ++it;
    }
  }
  for (auto it = expired_.begin(); it != expired_.end();) {
    if (it->second + kExpiredMemory <= now) {
      expired_.erase(it++);
    } else {
      ++it;
    }
  }
  return n;
}

}  // namespace adaptcache::server
