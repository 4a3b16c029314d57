#include "storage/tier_manager.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "common/crc32c.h"
#include "spdlog/spdlog.h"

namespace adaptcache {
namespace {

constexpr uint64_t kIoAlign = 4096;  // SSD reads into 4 KiB-padded extents go by DMA
constexpr int kGetRetries = 3;       // an entry can move between our steps; retry

uint64_t AlignUp(uint64_t n) { return (n + kIoAlign - 1) / kIoAlign * kIoAlign; }

}  // namespace

absl::StatusOr<EntryMeta> DescribeFromHeader(ConstByteSpan container) {
  auto h = PeekHeader(container);
  if (!h.ok()) return h.status();
  if (h->total_bytes != container.size()) {
    return absl::DataLossError("container size does not match its header");
  }
  auto dtype = DTypeFromCode(h->dtype);
  if (!dtype.ok()) return dtype.status();
  if (h->codec > kMaxCodecId) return absl::DataLossError("unknown codec family");
  EntryMeta m;
  m.shape = KvShape{h->layers, h->tokens, h->kv_heads, h->head_dim, *dtype};
  m.codec_family = static_cast<CodecId>(h->codec);
  m.codec = std::string(CodecFamilyName(m.codec_family));
  m.raw_bytes = m.shape.Bytes();
  m.crc32c = Crc32c(container.data(), container.size());
  m.stored_bytes = container.size();
  return m;
}

TierManager::TierManager(TierManagerOptions opts) : opts_(std::move(opts)) {
  if (!opts_.describe) opts_.describe = DescribeFromHeader;
}

absl::StatusOr<std::unique_ptr<TierManager>> TierManager::Create(TierManagerOptions opts) {
  std::unique_ptr<TierManager> tm(new TierManager(std::move(opts)));
  DramTierOptions dopts = tm->opts_.dram;
  TierManager* self = tm.get();
  dopts.on_evict = [self](const EntryKey& k, const EntryMeta& m, ConstByteSpan b) {
    self->OnDramEvict(k, m, b);
  };
  auto dram = DramTier::Create(dopts);
  if (!dram.ok()) return dram.status();
  tm->dram_ = std::move(*dram);
  if (tm->opts_.ssd.has_value()) {
    auto ssd = SsdTier::Open(*tm->opts_.ssd);
    if (!ssd.ok()) {
      return absl::Status(ssd.status().code(), absl::StrCat("SSD tier at '", tm->opts_.ssd->dir,
                                                            "': ", std::string(ssd.status().message())));
    }
    tm->ssd_ = std::move(*ssd);
  }
  if (tm->opts_.remote.has_value()) {
    auto remote = RemoteTier::Create(*tm->opts_.remote);
    if (!remote.ok()) return remote.status();
    tm->remote_ = std::move(*remote);
  }
  tm->evict_hook_live_.store(true);
  return tm;
}

TierManager::~TierManager() {
  evict_hook_live_.store(false);
  if (ssd_) {
    ssd_->Flush();  // demotion callbacks still see a live manager and SSD tier
    ssd_.reset();
  }
  dram_.reset();
  remote_.reset();  // sends what is still queued (bounded)
}

TierManager::Stripe& TierManager::StripeOf(const EntryKey& key) {
  return stripes_[absl::Hash<EntryKey>{}(key) % kStripes];
}

uint16_t TierManager::InternCodecLocked(const std::string& name) {
  auto it = codec_ids_.find(name);
  if (it != codec_ids_.end()) return it->second;
  if (codec_names_.size() >= 0xFFFF) return 0;  // never in practice: configs are a grid
  const uint16_t id = static_cast<uint16_t>(codec_names_.size());
  codec_names_.push_back(name);
  codec_ids_.emplace(name, id);
  return id;
}

void TierManager::RememberSsdLocked(const EntryKey& key, const EntryMeta& meta, bool master) {
  SsdMeta m;
  m.shape = meta.shape;
  m.crc32c = meta.crc32c;
  m.est_quality_loss = meta.est_quality_loss;
  m.codec_name = InternCodecLocked(meta.codec);
  m.master = master;
  auto [it, inserted] = ssd_meta_.try_emplace(key, m);
  if (!inserted) {
    if (it->second.master) --masters_;
    it->second = m;
  }
  if (master) ++masters_;
}

void TierManager::ForgetLocked(const EntryKey& key) {
  if (auto it = demoting_.find(key); it != demoting_.end()) {
    it->second->cancelled = true;
    demoting_bytes_ -= it->second->bytes.size();
    demoting_.erase(it);
  }
  ForgetSsdMetaLocked(key);
}

void TierManager::ForgetSsdMetaLocked(const EntryKey& key, std::optional<uint32_t> crc) {
  auto it = ssd_meta_.find(key);
  if (it == ssd_meta_.end() || (crc && it->second.crc32c != *crc)) return;
  if (it->second.master) --masters_;
  ssd_meta_.erase(it);
}

EntryMeta TierManager::SsdMetaToEntryMeta(const SsdMeta& m, const SsdEntryInfo& info,
                                          bool* complete) const {
  EntryMeta meta;
  meta.stored_bytes = info.payload_bytes;
  meta.crc32c = info.payload_crc32c;
  meta.codec_family = static_cast<CodecId>(info.codec <= kMaxCodecId ? info.codec : 0);
  if (m.crc32c == info.payload_crc32c) {
    meta.shape = m.shape;
    meta.raw_bytes = m.shape.Bytes();
    meta.codec = codec_names_[m.codec_name];
    meta.est_quality_loss = m.est_quality_loss;
    *complete = true;
  } else {
    meta.codec = std::string(CodecFamilyName(meta.codec_family));
    *complete = false;
  }
  return meta;
}

void TierManager::EraseSsdCopy(const EntryKey& key, std::optional<uint32_t> keep_crc) {
  if (!ssd_) return;
  (void)ssd_->Erase(key, std::nullopt, keep_crc);  // NotFound / another version: nothing to do
}

TierManager::CommittingMark::CommittingMark(TierManager* tm, const EntryKey& key) : tm_(tm), key_(key) {
  std::lock_guard<std::mutex> l(tm_->mu_);
  ++tm_->committing_[key_];
}

TierManager::CommittingMark::~CommittingMark() {
  std::lock_guard<std::mutex> l(tm_->mu_);
  if (auto it = tm_->committing_.find(key_); it != tm_->committing_.end() && --it->second == 0)
    tm_->committing_.erase(it);
}

NamespaceUsage TierManager::SsdUsageOf(std::span<const uint64_t> namespaces) const {
  return ssd_ ? ssd_->UsageOf(namespaces) : NamespaceUsage{};
}

size_t TierManager::EvictFromSsd(std::span<const uint64_t> namespaces, uint64_t max_bytes) {
  if (!ssd_) return 0;
  size_t n = 0;
  for (const auto& [key, info] : ssd_->OldestBeyond(namespaces, max_bytes, UINT64_MAX)) {
    if (!ssd_->Erase(key, info.payload_crc32c).ok()) continue;  // gone or rewritten meanwhile
    ++n;
    std::lock_guard<std::mutex> l(mu_);
    ForgetSsdMetaLocked(key, info.payload_crc32c);
  }
  ssd_quota_drops_.fetch_add(n, std::memory_order_relaxed);
  return n;
}

// ---------------------------------------------------------------- demotion

void TierManager::OnDramEvict(const EntryKey& key, const EntryMeta& meta, ConstByteSpan bytes) {
  // Runs under the DRAM lock: no DRAM calls, keep it short (one copy, one queue push).
  const bool live = evict_hook_live_.load(std::memory_order_acquire);
  if (live && remote_ && remote_->write_mode() == RemoteWriteMode::kOnEviction) {
    (void)remote_->Enqueue(key, bytes);
  }
  if (!live || !ssd_ || !opts_.demote_on_evict) {
    evictions_lost_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  // Decide, copy outside mu_, then decide again and queue under mu_: a CommitPut of the
  // key marks committing_ under mu_ before its own SSD write, so no write of this older
  // version is queued after the new one's.
  auto clean = [&](const std::optional<SsdEntryInfo>& info) {
    if (committing_.contains(key)) return true;  // superseded
    if (auto it = demoting_.find(key); it != demoting_.end() && it->second->meta.crc32c == meta.crc32c) return true;
    auto sm = ssd_meta_.find(key);
    if (info && sm != ssd_meta_.end() && sm->second.master && sm->second.crc32c == info->payload_crc32c)
      return true;  // the master serves now
    if (info && info->payload_crc32c == meta.crc32c && info->payload_bytes == bytes.size()) {
      RememberSsdLocked(key, meta, false);
      return true;
    }
    return false;
  };
  {
    std::lock_guard<std::mutex> l(mu_);
    if (clean(ssd_->Lookup(key))) {
      demotions_clean_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
  auto d = std::make_shared<Demotion>();
  d->key = key;
  d->meta = meta;
  d->bytes.assign(bytes.begin(), bytes.end());
  SsdPutOptions po;
  po.borrow = true;  // d owns the bytes until the callback
  std::optional<SsdEntryInfo> refused_over;  // the older SSD copy to drop after a refusal
  {
    std::lock_guard<std::mutex> l(mu_);
    const auto info = ssd_->Lookup(key);
    if (clean(info)) {
      demotions_clean_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    // In demoting_ before the write is queued: its callback (which removes it) cannot run
    // before we release mu_.
    auto [it, inserted] = demoting_.try_emplace(key, d);
    std::shared_ptr<Demotion> superseded;
    if (!inserted) {
      superseded = it->second;
      demoting_bytes_ -= superseded->bytes.size();
      it->second = d;  // the older write lands first (FIFO); this one supersedes it
    }
    demoting_bytes_ += d->bytes.size();
    auto st = ssd_->Put(key, d->bytes, [this, d](absl::Status s) { OnDemotionDone(d, std::move(s)); },
                        po);
    if (st.ok()) {
      demotions_queued_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    demotions_refused_.fetch_add(1, std::memory_order_relaxed);
    demoting_bytes_ -= d->bytes.size();
    if (superseded) {
      it->second = superseded;
      demoting_bytes_ += superseded->bytes.size();
    } else {
      demoting_.erase(it);
    }
    ForgetSsdMetaLocked(key, info ? std::optional<uint32_t>(info->payload_crc32c) : std::nullopt);
    refused_over = info;
  }
  // A different, older SSD copy must not come back once DRAM dropped the newer one. Only
  // that copy (by CRC): no index commit under mu_, and a newer write is never touched.
  if (refused_over) (void)ssd_->Erase(key, refused_over->payload_crc32c);
}

void TierManager::OnDemotionDone(const std::shared_ptr<Demotion>& d, absl::Status st) {
  // Commit thread; no SSD lock is held while callbacks run.
  bool cancelled;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = demoting_.find(d->key);
    if (it != demoting_.end() && it->second == d) {
      demoting_bytes_ -= d->bytes.size();
      demoting_.erase(it);
    }
    cancelled = d->cancelled;
    if (st.ok() && !cancelled) RememberSsdLocked(d->key, d->meta, false);
  }
  if (!st.ok()) {
    demotions_failed_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  demotions_done_.fetch_add(1, std::memory_order_relaxed);
  if (cancelled) {
    // Deleted or re-put while in flight: drop this record unless a newer one replaced it.
    (void)ssd_->Erase(d->key, d->meta.crc32c);
  }
}

// ---------------------------------------------------------------- request path

Location TierManager::Locate(const EntryKey& key) const {
  Location loc;
  auto dm = dram_->Peek(key);
  const auto info = ssd_ ? ssd_->Lookup(key) : std::nullopt;
  std::unique_lock<std::mutex> l(mu_);
  auto sm = ssd_meta_.find(key);
  if (dm) {
    loc.tier = Tier::kDram;
    loc.meta = std::move(*dm);
    loc.on_ssd = info.has_value();
    loc.ssd_master = info && sm != ssd_meta_.end() && sm->second.master &&
                     sm->second.crc32c == info->payload_crc32c;
    return loc;
  }
  if (auto it = demoting_.find(key); it != demoting_.end()) {
    loc.tier = Tier::kSsd;
    loc.meta = it->second->meta;
    return loc;
  }
  if (!info) return loc;
  loc.tier = Tier::kSsd;
  loc.on_ssd = true;
  static const SsdMeta kNone{};
  loc.meta = SsdMetaToEntryMeta(sm != ssd_meta_.end() ? sm->second : kNone, *info,
                                &loc.meta_complete);
  if (sm == ssd_meta_.end()) loc.meta_complete = false;
  loc.ssd_master = loc.meta_complete && sm->second.master;
  if (!loc.meta_complete) {
    l.unlock();  // no I/O under mu_
    const_cast<TierManager*>(this)->LearnSsdHead(key, *info, &loc);
  }
  return loc;
}

std::vector<Location> TierManager::LocateMany(std::span<const EntryKey> keys) const {
  std::vector<Location> out;
  out.reserve(keys.size());
  std::vector<EntryKey> missing;
  std::vector<size_t> where;
  for (size_t i = 0; i < keys.size(); ++i) {
    out.push_back(Locate(keys[i]));
    if (remote_ && out.back().tier == Tier::kNone) {
      missing.push_back(keys[i]);
      where.push_back(i);
    }
  }
  if (missing.empty()) return out;
  auto heads = remote_->Heads(missing);
  for (size_t j = 0; j < heads.size(); ++j) {
    if (!heads[j]) continue;
    const ContainerHeader& h = *heads[j];
    auto dtype = DTypeFromCode(h.dtype);
    if (!dtype.ok() || h.codec > kMaxCodecId) continue;
    Location& loc = out[where[j]];
    loc.tier = Tier::kRemote;
    loc.meta.shape = KvShape{h.layers, h.tokens, h.kv_heads, h.head_dim, *dtype};
    loc.meta.raw_bytes = loc.meta.shape.Bytes();
    loc.meta.codec_family = static_cast<CodecId>(h.codec);
    loc.meta.codec = std::string(CodecFamilyName(loc.meta.codec_family));
    loc.meta.stored_bytes = h.total_bytes;
    loc.meta_complete = true;
  }
  return out;
}

void TierManager::LearnSsdHead(const EntryKey& key, const SsdEntryInfo& info, Location* loc) {
  auto head = ssd_->ReadContainerHead(key);
  if (!head.ok()) return;  // stays incomplete; a Get reports the truth
  auto h = CheckContainerHeader(*head);
  if (!h.ok() || h->total_bytes != info.payload_bytes || h->codec != info.codec) return;
  const KvShape shape{h->layers, h->tokens, h->kv_heads, h->head_dim, static_cast<DType>(h->dtype)};
  EntryMeta meta = loc->meta;
  meta.shape = shape;
  meta.raw_bytes = meta.shape.Bytes();
  meta.crc32c = info.payload_crc32c;
  loc->meta = meta;
  loc->meta_complete = true;
  // Cached so the next Lookup needs no read. The codec is the family name until a full
  // read (Get) learns the config name, which then replaces this.
  std::lock_guard<std::mutex> l(mu_);
  auto now = ssd_->Lookup(key);
  if (ssd_meta_.count(key) == 0 && now && now->payload_crc32c == info.payload_crc32c) {
    RememberSsdLocked(key, meta, false);
  }
}

absl::Status TierManager::SsdPutDurable(const EntryKey& key, ConstByteSpan bytes,
                                        const SsdPutOptions& o) {
  if (!ssd_) return absl::FailedPreconditionError("no SSD tier configured");
  return ssd_->PutSync(key, bytes, o);
}

absl::StatusOr<TierPutResult> TierManager::CommitPut(const EntryKey& key, const Extent& extent,
                                                     const EntryMeta& meta,
                                                     const TierPutOptions& popts) {
  TierPutResult r;
  CommittingMark mark(this, key);
  if (popts.durable) {
    ByteSpan b = dram_->Bytes(extent);
    if (b.size() != extent.length) return absl::InvalidArgumentError("extent outside the pool");
    SsdPutOptions o;
    o.bypass_admission = true;
    // The extent is in flight and ours: it stays valid while PutSync waits.
    r.ssd_status = SsdPutDurable(key, b, o);
    r.durable = r.ssd_status.ok();
  }
  if (remote_ && remote_->write_mode() == RemoteWriteMode::kWriteThrough) {
    ByteSpan b = dram_->Bytes(extent);  // still ours: the copy cannot race a reuse
    if (b.size() == extent.length) (void)remote_->Enqueue(key, b);
  }
  Stripe& s = StripeOf(key);
  std::lock_guard<std::mutex> sl(s.mu);
  if (auto st = dram_->Commit(key, extent, meta); !st.ok()) return st;
  ++s.version;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto sm = ssd_meta_.find(key);
    const bool same = sm != ssd_meta_.end() && sm->second.crc32c == meta.crc32c && !sm->second.master;
    auto dm = demoting_.find(key);
    const bool same_demotion = dm != demoting_.end() && dm->second->meta.crc32c == meta.crc32c;
    if (!same || (dm != demoting_.end() && !same_demotion)) ForgetLocked(key);
    if (r.durable) RememberSsdLocked(key, meta, false);
  }
  EraseSsdCopy(key, meta.crc32c);  // an older, different SSD copy must not resurface
  if (r.durable) durable_puts_.fetch_add(1, std::memory_order_relaxed);
  return r;
}

absl::StatusOr<std::pair<Extent, EntryMeta>> TierManager::CopyDemotionIntoDram(
    const EntryKey& key) {
  std::shared_ptr<Demotion> d;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = demoting_.find(key);
    if (it == demoting_.end()) return absl::NotFoundError("not being demoted");
    d = it->second;
  }
  auto e = dram_->Allocate(d->bytes.size());
  if (!e.ok()) return e.status();
  std::memcpy(dram_->Bytes(*e).data(), d->bytes.data(), d->bytes.size());
  return std::make_pair(*e, d->meta);
}

absl::StatusOr<std::pair<Extent, EntryMeta>> TierManager::ReadSsdIntoDram(const EntryKey& key,
                                                                          SsdEntryInfo* out) {
  for (int attempt = 0; attempt < kGetRetries; ++attempt) {
    auto info = ssd_->Lookup(key);
    if (!info) return absl::NotFoundError("not on SSD");
    auto e = dram_->Allocate(AlignUp(info->payload_bytes));
    if (!e.ok()) return e.status();
    auto n = ssd_->Get(key, dram_->Bytes(*e));
    if (!n.ok()) {
      dram_->Free(*e);
      if (absl::IsOutOfRange(n.status())) continue;  // rewritten larger meanwhile
      if (!absl::IsNotFound(n.status())) {
        ssd_read_errors_.fetch_add(1, std::memory_order_relaxed);
        spdlog::debug("tier manager: SSD read failed ({}); serving a miss",
                      std::string(n.status().message()));
      }
      std::lock_guard<std::mutex> l(mu_);
      ForgetSsdMetaLocked(key);
      return absl::NotFoundError("miss: SSD copy unreadable");
    }
    ConstByteSpan bytes = dram_->Bytes(*e).first(*n);
    auto meta = opts_.describe(bytes);
    if (!meta.ok()) {  // the SSD tier checked its CRC: only a foreign container gets here
      dram_->Free(*e);
      ssd_read_errors_.fetch_add(1, std::memory_order_relaxed);
      spdlog::warn("tier manager: SSD entry is not a valid container ({}); dropped",
                   std::string(meta.status().message()));
      (void)ssd_->Erase(key, info->payload_crc32c);
      return absl::NotFoundError("miss: SSD copy invalid");
    }
    meta->stored_bytes = *n;
    ssd_read_bytes_.fetch_add(*n, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> l(mu_);
      auto sm = ssd_meta_.find(key);
      if (sm != ssd_meta_.end() && sm->second.crc32c == meta->crc32c) {
        meta->est_quality_loss = sm->second.est_quality_loss;
        if (!sm->second.master) RememberSsdLocked(key, *meta, false);
      } else {
        RememberSsdLocked(key, *meta, false);
      }
    }
    info->hits += 1;  // this read
    if (out) *out = *info;
    return std::make_pair(*e, *meta);
  }
  return absl::UnavailableError("SSD entry kept changing during the read; retry");
}

absl::StatusOr<TierLease> TierManager::GetFromDram(const EntryKey& key, uint32_t lease_ms) {
  auto lease = dram_->Acquire(key, lease_ms);
  if (!lease.ok()) return lease.status();
  dram_hits_.fetch_add(1, std::memory_order_relaxed);
  if (ssd_) ssd_->NoteAccess(key);
  return TierLease{*lease, Tier::kDram, false};
}

absl::StatusOr<TierLease> TierManager::Get(const EntryKey& key, uint32_t lease_ms) {
  for (int attempt = 0; attempt < kGetRetries; ++attempt) {
    auto hit = GetFromDram(key, lease_ms);
    if (!absl::IsNotFound(hit.status())) return hit;
    if (!ssd_) break;

    Stripe& s = StripeOf(key);
    uint64_t version;
    {
      std::lock_guard<std::mutex> sl(s.mu);
      version = s.version;
    }
    SsdEntryInfo info;
    info.hits = 1;
    auto got = CopyDemotionIntoDram(key);
    if (absl::IsNotFound(got.status())) got = ReadSsdIntoDram(key, &info);
    if (!got.ok()) {
      if (absl::IsNotFound(got.status())) break;
      return got.status();
    }
    auto& [extent, meta] = *got;
    const uint64_t n = meta.stored_bytes;
    ssd_hits_.fetch_add(1, std::memory_order_relaxed);
    const bool promote = opts_.promote_after_hits > 0 && info.hits >= opts_.promote_after_hits;
    if (promote) {
      std::unique_lock<std::mutex> sl(s.mu);
      if (s.version == version && dram_->Commit(key, Extent{extent.offset, n}, meta).ok()) {
        auto l = dram_->Acquire(key, lease_ms);
        sl.unlock();
        if (l.ok()) {
          promotions_.fetch_add(1, std::memory_order_relaxed);
          return TierLease{*l, Tier::kSsd, true};
        }
        if (!absl::IsNotFound(l.status())) return l.status();
        continue;  // evicted before we could lease it: start over
      }
    }
    auto l = dram_->LeaseAnonymous(Extent{extent.offset, n}, meta, lease_ms);
    if (!l.ok()) {
      dram_->Free(extent);
      return l.status();
    }
    anonymous_leases_.fetch_add(1, std::memory_order_relaxed);
    return TierLease{*l, Tier::kSsd, false};
  }
  if (remote_) {
    auto r = GetFromRemote(key, lease_ms);
    if (!absl::IsNotFound(r.status())) return r;
  }
  misses_.fetch_add(1, std::memory_order_relaxed);
  return absl::NotFoundError("miss: no such entry");
}

absl::StatusOr<TierLease> TierManager::GetFromRemote(const EntryKey& key, uint32_t lease_ms) {
  Stripe& s = StripeOf(key);
  uint64_t version;
  {
    std::lock_guard<std::mutex> sl(s.mu);
    version = s.version;
  }
  std::optional<Extent> extent;
  auto n = remote_->Get(key, [&](uint64_t bytes) -> absl::StatusOr<ByteSpan> {
    auto e = dram_->Allocate(bytes);
    if (!e.ok()) return e.status();
    extent = *e;
    return dram_->Bytes(*e);
  });
  if (!n.ok()) {
    if (extent) dram_->Free(*extent);
    return n.status();
  }
  const Extent got{extent->offset, *n};
  auto meta = opts_.describe(dram_->Bytes(got));
  if (!meta.ok()) {  // checked by the remote tier: only a foreign container gets here
    dram_->Free(*extent);
    return absl::NotFoundError("miss: remote value is not a container this daemon knows");
  }
  meta->stored_bytes = *n;
  remote_hits_.fetch_add(1, std::memory_order_relaxed);
  if (opts_.promote_after_hits > 0) {
    std::unique_lock<std::mutex> sl(s.mu);
    if (s.version == version && dram_->Commit(key, got, *meta).ok()) {
      auto l = dram_->Acquire(key, lease_ms);
      sl.unlock();
      if (l.ok()) {
        promotions_.fetch_add(1, std::memory_order_relaxed);
        return TierLease{*l, Tier::kRemote, true};
      }
      return l.status();  // NotFound: evicted at once; the caller sees a miss
    }
  }
  auto l = dram_->LeaseAnonymous(got, *meta, lease_ms);
  if (!l.ok()) {
    dram_->Free(*extent);
    return l.status();
  }
  anonymous_leases_.fetch_add(1, std::memory_order_relaxed);
  return TierLease{*l, Tier::kRemote, false};
}

size_t TierManager::DeleteMany(std::span<const EntryKey> keys) {
  std::vector<bool> any(keys.size(), false);
  for (size_t i = 0; i < keys.size(); ++i) {
    const EntryKey& key = keys[i];
    Stripe& s = StripeOf(key);
    std::lock_guard<std::mutex> sl(s.mu);
    ++s.version;
    bool found = dram_->Erase(key);
    {
      std::lock_guard<std::mutex> l(mu_);
      found |= demoting_.contains(key);
      ForgetLocked(key);
    }
    if (ssd_) found |= ssd_->Erase(key).ok();
    any[i] = found;
  }
  if (remote_) {  // no network I/O under a stripe
    const auto remote = remote_->Delete(keys);
    for (size_t i = 0; i < keys.size(); ++i) any[i] = any[i] || remote[i];
  }
  return static_cast<size_t>(std::count(any.begin(), any.end(), true));
}

}  // namespace adaptcache
