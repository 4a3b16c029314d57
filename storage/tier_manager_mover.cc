// TierManager: the mover primitives (Demote, Promote, Replace, Evict, ReadBest),
// ForEach and Stats. The request path is in tier_manager.cc.
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/crc32c.h"
#include "storage/tier_manager.h"

namespace adaptcache {
namespace {

// Short internal leases: long enough for one SSD write, never a client's.
constexpr uint32_t kInternalLeaseMs = 60'000;

// Ends an internal lease however the caller returns.
class InternalLease {
 public:
  InternalLease(DramTier* t, uint64_t id) : t_(t), id_(id) {}
  ~InternalLease() { t_->Release(id_); }

 private:
  DramTier* t_;
  uint64_t id_;
};

}  // namespace

absl::Status TierManager::Demote(const EntryKey& key, bool bypass_admission) {
  if (!ssd_) return absl::FailedPreconditionError("no SSD tier configured");
  auto view = dram_->Inspect(key);
  if (!view) return absl::NotFoundError("not in DRAM");
  if (view->leases > 0) return LeasedError("DRAM copy is leased");
  const uint32_t crc = view->meta.crc32c;
  auto info = ssd_->Lookup(key);
  if (!info || info->payload_crc32c != crc) {
    auto lease = dram_->Acquire(key, kInternalLeaseMs);
    if (!lease.ok()) return lease.status();
    InternalLease guard(dram_.get(), lease->id);
    if (lease->meta.crc32c != crc) return absl::AbortedError("entry changed during Demote");
    SsdPutOptions o;
    o.bypass_admission = bypass_admission;
    if (auto st = SsdPutDurable(key, dram_->Bytes(lease->extent), o); !st.ok()) return st;
  }
  Stripe& s = StripeOf(key);
  std::lock_guard<std::mutex> sl(s.mu);
  // Our own lease is gone here (guard ended above), so any lease now is a reader's.
  if (auto st = dram_->EraseIf(key, crc, /*require_unleased=*/true); !st.ok()) return st;
  ++s.version;
  std::lock_guard<std::mutex> l(mu_);
  RememberSsdLocked(key, view->meta, false);
  return absl::OkStatus();
}

SsdFlushResult TierManager::FlushToSsd(std::chrono::steady_clock::time_point deadline,
                                      const std::function<void(const SsdFlushResult&)>& progress) {
  SsdFlushResult r;
  if (!ssd_) return r;
  std::vector<std::pair<EntryKey, uint32_t>> todo;  // key, DRAM crc
  ForEach([&](const TierEntry& e) {
    if (e.tier != Tier::kDram) return;
    if (e.on_ssd) {
      auto info = ssd_->Lookup(e.key);
      if (info && info->payload_crc32c == e.crc32c) return;  // twin (or master) on SSD
      if (info && e.ssd_master) return;  // lossy DRAM copy over a master: keep the master
    }
    todo.emplace_back(e.key, e.crc32c);
  });
  r.candidates = todo.size();
  for (const auto& [key, crc] : todo) {
    if (std::chrono::steady_clock::now() >= deadline) {
      r.timed_out = true;
      break;
    }
    auto lease = dram_->Acquire(key, kInternalLeaseMs);
    if (!lease.ok() || lease->meta.crc32c != crc) {  // gone or changed: nothing to save
      if (lease.ok()) dram_->Release(lease->id);
      ++r.failed;
      continue;
    }
    InternalLease guard(dram_.get(), lease->id);
    SsdPutOptions o;
    o.bypass_admission = true;
    const ConstByteSpan bytes = dram_->Bytes(lease->extent);
    if (auto st = SsdPutDurable(key, bytes, o); !st.ok()) {
      ++r.failed;
      if (progress) progress(r);
      continue;
    }
    Stripe& s = StripeOf(key);
    std::lock_guard<std::mutex> sl(s.mu);
    auto now = dram_->Peek(key);
    if (!now || now->crc32c != crc) {
      EraseSsdCopy(key, now ? std::optional<uint32_t>(now->crc32c) : std::nullopt);
      ++r.failed;
    } else {
      std::lock_guard<std::mutex> l(mu_);
      RememberSsdLocked(key, lease->meta, false);
      ++r.written;
      r.written_bytes += bytes.size();
    }
    if (progress) progress(r);
  }
  return r;
}

absl::Status TierManager::Promote(const EntryKey& key) {
  if (dram_->Peek(key)) return absl::OkStatus();
  if (!ssd_) return absl::NotFoundError("not in DRAM and no SSD tier");
  Stripe& s = StripeOf(key);
  uint64_t version;
  {
    std::lock_guard<std::mutex> sl(s.mu);
    version = s.version;
  }
  auto got = CopyDemotionIntoDram(key);
  if (absl::IsNotFound(got.status())) got = ReadSsdIntoDram(key, nullptr);
  if (!got.ok()) return got.status();
  auto& [extent, meta] = *got;
  std::lock_guard<std::mutex> sl(s.mu);
  if (s.version != version) {
    dram_->Free(extent);
    return absl::AbortedError("entry changed during Promote");
  }
  if (dram_->Peek(key)) {  // a Get promoted it meanwhile (same bytes: same version)
    dram_->Free(extent);
    return absl::OkStatus();
  }
  if (auto st = dram_->Commit(key, Extent{extent.offset, meta.stored_bytes}, meta); !st.ok()) {
    dram_->Free(extent);
    return st;
  }
  promotions_.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard<std::mutex> l(mu_);
  // The DRAM copy is now the SSD copy's twin; a master flag has no lossy copy to serve.
  if (auto sm = ssd_meta_.find(key); sm != ssd_meta_.end() && sm->second.master) {
    sm->second.master = false;
    --masters_;
  }
  return absl::OkStatus();
}

absl::Status TierManager::Replace(const EntryKey& key, ConstByteSpan container,
                                  const EntryMeta& meta_in, const ReplaceOptions& ropts) {
  if (ropts.target != Tier::kDram && ropts.target != Tier::kSsd) {
    return absl::InvalidArgumentError("Replace target must be DRAM or SSD");
  }
  if (auto v = ParseContainer(container, /*verify_payload_crc=*/true); !v.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("Replace: not a valid container: ", std::string(v.status().message())));
  }
  EntryMeta meta = meta_in;
  meta.crc32c = Crc32c(container.data(), container.size());
  meta.stored_bytes = container.size();
  if (ropts.target == Tier::kSsd && !ssd_) {
    return absl::FailedPreconditionError("no SSD tier configured");
  }
  // The crc of the current best copy (what ReadBest would return), under the stripe.
  auto best_crc = [&]() -> std::optional<uint32_t> {
    auto info = ssd_ ? ssd_->Lookup(key) : std::nullopt;
    {
      std::lock_guard<std::mutex> l(mu_);
      auto sm = ssd_meta_.find(key);
      if (info && sm != ssd_meta_.end() && sm->second.master &&
          sm->second.crc32c == info->payload_crc32c) {
        return info->payload_crc32c;
      }
    }
    if (auto dm = dram_->Peek(key)) return dm->crc32c;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (auto it = demoting_.find(key); it != demoting_.end()) return it->second->meta.crc32c;
    }
    if (info) return info->payload_crc32c;
    return std::nullopt;
  };
  Stripe& s = StripeOf(key);
  uint64_t version;
  {
    std::lock_guard<std::mutex> sl(s.mu);
    version = s.version;
    if (ropts.if_crc32c.has_value() && best_crc() != ropts.if_crc32c) {
      return absl::AbortedError("entry changed since it was read");
    }
  }
  SsdPutOptions so;
  so.bypass_admission = ropts.bypass_admission;
  CommittingMark mark(this, key);  // the old DRAM copy is being replaced: never demote it

  if (ropts.target == Tier::kSsd) {
    if (auto st = SsdPutDurable(key, container, so); !st.ok()) return st;
    std::lock_guard<std::mutex> sl(s.mu);
    if (s.version != version) {
      // A Put or Delete won meanwhile; take our record back out unless it was replaced.
      auto dm = dram_->Peek(key);
      if (!(dm && dm->crc32c == meta.crc32c)) (void)ssd_->Erase(key, meta.crc32c);
      return absl::AbortedError("entry changed during Replace");
    }
    ++s.version;
    dram_->Erase(key);  // a leased old copy lives on until its last release
    std::lock_guard<std::mutex> l(mu_);
    ForgetLocked(key);
    RememberSsdLocked(key, meta, false);
    return absl::OkStatus();
  }

  // Target DRAM. With keep_master, first make sure the current best copy is on SSD.
  std::optional<EntryMeta> master_meta;
  if (ropts.keep_master) {
    if (!ssd_) return absl::FailedPreconditionError("keep_master needs an SSD tier");
    auto loc = Locate(key);
    if (loc.tier == Tier::kNone) return absl::NotFoundError("no copy to keep as master");
    if (loc.ssd_master || (loc.tier == Tier::kSsd && loc.on_ssd)) {
      master_meta = loc.meta;
    } else {
      auto lease = dram_->Acquire(key, kInternalLeaseMs);
      if (!lease.ok()) return lease.status();
      InternalLease guard(dram_.get(), lease->id);
      if (auto info = ssd_->Lookup(key); !info || info->payload_crc32c != lease->meta.crc32c) {
        if (auto st = SsdPutDurable(key, dram_->Bytes(lease->extent), so); !st.ok()) return st;
      }
      master_meta = lease->meta;
    }
  }
  auto extent = dram_->Allocate(container.size());
  if (!extent.ok()) return extent.status();
  std::memcpy(dram_->Bytes(*extent).data(), container.data(), container.size());
  std::lock_guard<std::mutex> sl(s.mu);
  if (s.version != version) {
    dram_->Free(*extent);
    return absl::AbortedError("entry changed during Replace");
  }
  if (auto st = dram_->Commit(key, *extent, meta); !st.ok()) {
    dram_->Free(*extent);
    return st;
  }
  ++s.version;
  {
    std::lock_guard<std::mutex> l(mu_);
    ForgetLocked(key);
    if (master_meta) RememberSsdLocked(key, *master_meta, true);
  }
  if (!master_meta) EraseSsdCopy(key, meta.crc32c);
  return absl::OkStatus();
}

absl::Status TierManager::Evict(const EntryKey& key) {
  Stripe& s = StripeOf(key);
  std::lock_guard<std::mutex> sl(s.mu);
  auto st = dram_->EraseIf(key, std::nullopt, /*require_unleased=*/true);
  if (absl::IsFailedPrecondition(st)) return st;
  bool any = st.ok();
  ++s.version;
  {
    std::lock_guard<std::mutex> l(mu_);
    any |= demoting_.contains(key);
    ForgetLocked(key);
  }
  if (ssd_) any |= ssd_->Erase(key).ok();
  return any ? absl::OkStatus() : absl::NotFoundError("no such entry");
}

absl::StatusOr<BestCopy> TierManager::ReadBest(const EntryKey& key) {
  BestCopy out;
  const Location loc = Locate(key);
  if (loc.tier == Tier::kNone) return absl::NotFoundError("no such entry");
  if (loc.tier == Tier::kDram && !loc.ssd_master) {
    auto lease = dram_->Acquire(key, kInternalLeaseMs);
    if (lease.ok()) {
      InternalLease guard(dram_.get(), lease->id);
      ConstByteSpan b = dram_->Bytes(lease->extent);
      out.container.assign(b.begin(), b.end());
      out.meta = lease->meta;
      out.tier = Tier::kDram;
      return out;
    }
    if (!absl::IsNotFound(lease.status())) return lease.status();
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    if (auto it = demoting_.find(key); it != demoting_.end() && !loc.ssd_master) {
      out.container = it->second->bytes;
      out.meta = it->second->meta;
      out.tier = Tier::kSsd;
      return out;
    }
  }
  if (!ssd_) return absl::NotFoundError("no such entry");
  auto bytes = ssd_->Get(key);
  if (!bytes.ok()) {
    if (!absl::IsNotFound(bytes.status())) ssd_read_errors_.fetch_add(1, std::memory_order_relaxed);
    return absl::NotFoundError(absl::StrCat("miss: ", std::string(bytes.status().message())));
  }
  auto meta = opts_.describe(*bytes);
  if (!meta.ok()) return absl::DataLossError("SSD copy is not a valid container");
  ssd_read_bytes_.fetch_add(bytes->size(), std::memory_order_relaxed);
  out.container = std::move(*bytes);
  out.meta = std::move(*meta);
  out.tier = Tier::kSsd;
  out.master = loc.ssd_master;
  return out;
}

void TierManager::ForEach(const std::function<void(const TierEntry&)>& fn) const {
  std::vector<TierEntry> snap;
  absl::flat_hash_set<EntryKey> in_dram;
  dram_->ForEachWithLeases([&](const EntryKey& k, const EntryMeta& m, uint32_t leases) {
    TierEntry e;
    e.key = k;
    e.tier = Tier::kDram;
    e.stored_bytes = m.stored_bytes;
    e.codec = m.codec;
    e.crc32c = m.crc32c;
    e.leases = leases;
    snap.push_back(std::move(e));
    in_dram.insert(k);
  });
  if (ssd_) {
    std::vector<std::pair<EntryKey, SsdEntryInfo>> ssd;
    ssd_->ForEach([&](const EntryKey& k, const SsdEntryInfo& i) { ssd.emplace_back(k, i); });
    absl::flat_hash_map<EntryKey, size_t> pos;
    for (size_t i = 0; i < snap.size(); ++i) pos.emplace(snap[i].key, i);
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& [k, info] : ssd) {
      auto sm = ssd_meta_.find(k);
      const bool known = sm != ssd_meta_.end() && sm->second.crc32c == info.payload_crc32c;
      if (auto p = pos.find(k); p != pos.end()) {
        TierEntry& e = snap[p->second];
        e.on_ssd = true;
        e.ssd_bytes = info.payload_bytes;
        e.ssd_master = known && sm->second.master;
        e.ssd_hits = info.hits;
        continue;
      }
      TierEntry e;
      e.key = k;
      e.tier = Tier::kSsd;
      e.stored_bytes = e.ssd_bytes = info.payload_bytes;
      e.codec = known ? codec_names_[sm->second.codec_name]
                      : std::string(CodecFamilyName(static_cast<CodecId>(
                            info.codec <= kMaxCodecId ? info.codec : 0)));
      e.crc32c = info.payload_crc32c;
      e.on_ssd = true;
      e.ssd_hits = info.hits;
      snap.push_back(std::move(e));
    }
  }
  for (const TierEntry& e : snap) fn(e);
}

std::optional<SsdTierStats> TierManager::SsdStats() const {
  if (!ssd_) return std::nullopt;
  return ssd_->Stats();
}

std::optional<RemoteTierStats> TierManager::RemoteStats() const {
  if (!remote_) return std::nullopt;
  return remote_->Stats();
}

std::optional<RemoteLink> TierManager::RemoteLinkInfo() const {
  if (!remote_) return std::nullopt;
  return remote_->link();
}

uint32_t TierManager::DramLeases(const EntryKey& key) const {
  auto v = dram_->Inspect(key);
  return v ? v->leases : 0;
}

TierManagerStats TierManager::Stats() const {
  TierManagerStats s;
  s.dram = dram_->Stats();
  if (ssd_) s.ssd = ssd_->Stats();
  if (remote_) s.remote = remote_->Stats();
  auto ld = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  s.dram_hits = ld(dram_hits_);
  s.ssd_hits = ld(ssd_hits_);
  s.remote_hits = ld(remote_hits_);
  s.misses = ld(misses_);
  s.promotions = ld(promotions_);
  s.anonymous_leases = ld(anonymous_leases_);
  s.demotions_queued = ld(demotions_queued_);
  s.demotions_done = ld(demotions_done_);
  s.demotions_failed = ld(demotions_failed_);
  s.demotions_clean = ld(demotions_clean_);
  s.demotions_refused = ld(demotions_refused_);
  s.evictions_lost = ld(evictions_lost_);
  s.ssd_quota_drops = ld(ssd_quota_drops_);
  s.ssd_read_bytes = ld(ssd_read_bytes_);
  s.ssd_read_errors = ld(ssd_read_errors_);
  s.durable_puts = ld(durable_puts_);
  std::lock_guard<std::mutex> l(mu_);
  s.demoting_entries = demoting_.size();
  s.demoting_bytes = demoting_bytes_;
  s.master_entries = masters_;
  return s;
}

}  // namespace adaptcache
