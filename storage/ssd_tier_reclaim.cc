// SsdTier's segment rolling and FIFO reclaim (writer thread only): opening the next
// segment, and reusing the oldest sealed one after its hot entries were appended again.
#include <cstring>
#include <future>

#include "absl/container/flat_hash_set.h"
#include "spdlog/spdlog.h"
#include "storage/ssd_format.h"
#include "storage/ssd_tier.h"

namespace adaptcache {

absl::Status SsdTier::OpenNewSegment() {
  for (;;) {
    int free = -1;
    bool have_sealed = false;
    {
      std::lock_guard<std::mutex> m(mu_);
      for (size_t i = 0; i < slots_.size(); ++i) {
        if (slots_[i].state == Slot::State::kFree && free < 0) free = static_cast<int>(i);
        if (slots_[i].state == Slot::State::kSealed) have_sealed = true;
      }
    }
    if (free < 0) {
      if (reclaiming_ || !have_sealed) return absl::UnavailableError("ssd tier: no free segment");
      ReclaimOldest();
      continue;
    }
    Slot& s = slots_[free];
    SegmentHeader h{};
    h.magic = kSegmentMagic;
    h.version = kSegmentFormatVersion;
    h.header_bytes = sizeof(SegmentHeader);
    h.slot = static_cast<uint32_t>(free);
    h.nonce = static_cast<uint32_t>(rng_());
    h.segment_id = next_segment_id_++;
    h.segment_bytes = opts_.segment_bytes;
    h.created_unix_ns = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                  std::chrono::system_clock::now().time_since_epoch())
                                                  .count());
    SealSegmentHeader(h);
    IoBuffer b = ring_->AcquireWriteBuffer();
    std::memset(b.data, 0, kSsdBlock);
    std::memcpy(b.data, &h, sizeof h);
    auto res = ring_->RunSync(IoRing::Lane::kWrite, IoRequest{IoOp::kWrite, s.fd, b.data, kSsdBlock, 0, b.index, &s.path});
    ring_->ReleaseBuffer(b);
    {
      std::lock_guard<std::mutex> m(mu_);
      stats_.device_bytes_written += kSsdBlock;
    }
    if (!res.ok() || *res != static_cast<int>(kSsdBlock)) {
      FailSlot(static_cast<uint32_t>(free), 0, "segment header write failed");
      continue;
    }
    {
      std::lock_guard<std::mutex> m(mu_);
      s.state = Slot::State::kActive;
      s.segment_id = h.segment_id;
      s.nonce = h.nonce;
      s.write_offset = kSsdBlock;
      s.keys.clear();
    }
    active_ = free;
    break;
  }
  // Keep one slot free ahead of need so reinsertion during reclaim has room.
  while (!reclaiming_) {
    bool have_free = false, have_sealed = false;
    {
      std::lock_guard<std::mutex> m(mu_);
      for (const Slot& s : slots_) {
        have_free |= s.state == Slot::State::kFree;
        have_sealed |= s.state == Slot::State::kSealed;
      }
    }
    if (have_free || !have_sealed) break;
    ReclaimOldest();
  }
  return absl::OkStatus();
}

void SsdTier::ReclaimOldest() {
  reclaiming_ = true;
  std::vector<std::pair<EntryKey, Entry>> live;
  const int victim = PickReclaimVictim(&live);
  if (victim < 0) {
    reclaiming_ = false;
    return;
  }
  const uint32_t slot = static_cast<uint32_t>(victim);
  const uint64_t victim_seg = slots_[slot].segment_id;
  std::vector<PutReq> reins = ReadHotEntries(live);
  const ReinsertTotals done = Reinsert(reins);
  FreeReclaimedSlot(slot, victim_seg, done);
  InvalidateSegmentHeader(slot);
  reclaiming_ = false;
}

// The oldest sealed slot (-1 if none) and its live entries, each once.
int SsdTier::PickReclaimVictim(std::vector<std::pair<EntryKey, Entry>>* live) {
  int victim = -1;
  std::lock_guard<std::mutex> m(mu_);
  for (size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].state == Slot::State::kSealed &&
        (victim < 0 || slots_[i].segment_id < slots_[victim].segment_id))
      victim = static_cast<int>(i);
  if (victim < 0) return victim;
  absl::flat_hash_set<EntryKey> seen;
  for (const EntryKey& k : slots_[victim].keys) {
    auto it = map_.find(k);
    if (it != map_.end() && it->second.loc.slot == static_cast<uint32_t>(victim) &&
        it->second.loc.segment_id == slots_[victim].segment_id && seen.insert(k).second)
      live->emplace_back(k, it->second);
  }
  return victim;
}

// Hot entries: read (verified), optionally transformed, queued to be appended again,
// within max_reinsert_fraction of a segment.
std::vector<SsdTier::PutReq> SsdTier::ReadHotEntries(const std::vector<std::pair<EntryKey, Entry>>& live) {
  uint64_t budget = static_cast<uint64_t>(opts_.max_reinsert_fraction * static_cast<double>(opts_.segment_bytes));
  std::vector<PutReq> reins;
  for (const auto& [k, e] : live) {
    const SsdEntryInfo info = e.Info();
    const bool keep = opts_.reclaim.keep ? opts_.reclaim.keep(k, info)
                                         : (opts_.reinsert_min_hits > 0 && e.hits >= opts_.reinsert_min_hits);
    if (!keep || RecordBytes(e.loc.payload_bytes) > budget) continue;
    auto bytes = ReadForReinsertion(k, e);
    if (!bytes || RecordBytes(bytes->size()) > budget) continue;
    budget -= RecordBytes(bytes->size());
    PutReq r;
    r.key = k;
    r.owned = std::move(*bytes);
    r.bytes = ConstByteSpan(r.owned);
    r.reinsert_of_seq = e.loc.seq;
    r.queued = std::chrono::steady_clock::now();
    reins.push_back(std::move(r));
  }
  return reins;
}

// The entry's container as it is to be stored again, or nullopt to drop it (unreadable,
// or the transform hook failed or returned a bad container).
std::optional<std::vector<std::byte>> SsdTier::ReadForReinsertion(const EntryKey& k, const Entry& e) {
  std::vector<std::byte> bytes(e.loc.payload_bytes);
  std::promise<absl::StatusOr<uint64_t>> p;
  auto f = p.get_future();
  if (!ReadEntry(k, e, ByteSpan(bytes), false, [&p](absl::StatusOr<uint64_t> r) { p.set_value(std::move(r)); })
           .ok() ||
      !f.get().ok())
    return std::nullopt;
  if (!opts_.reclaim.transform) return bytes;
  auto t = opts_.reclaim.transform(k, ConstByteSpan(bytes));
  if (!t.ok()) return std::nullopt;
  auto th = PeekHeader(ConstByteSpan(*t));
  if (!th.ok() || th->total_bytes != t->size()) return std::nullopt;  // never store a bad container
  return std::move(*t);
}

SsdTier::ReinsertTotals SsdTier::Reinsert(std::vector<PutReq>& reins) {
  std::vector<std::unique_ptr<Staged>> staged;
  ReinsertTotals done;
  for (PutReq& r : reins) {
    const uint64_t n = r.bytes.size();
    if (!EnsureSpace(RecordBytes(n), staged)) break;
    admission_->ChargeInternal(RecordBytes(n));
    Stage(std::move(r), staged);
    ++done.entries;
    done.bytes += n;
  }
  CommitStaged(staged);
  DrainCommits();
  return done;
}

// Everything still pointing at the victim becomes a miss; the slot is free again.
void SsdTier::FreeReclaimedSlot(uint32_t victim, uint64_t victim_seg, const ReinsertTotals& reinserted) {
  std::vector<EntryKey> deletes;
  std::lock_guard<std::mutex> il(index_mu_);
  {
    std::lock_guard<std::mutex> m(mu_);
    Slot& s = slots_[victim];
    for (const EntryKey& k : s.keys) {
      auto it = map_.find(k);
      if (it != map_.end() && it->second.loc.slot == victim && it->second.loc.segment_id == victim_seg) {
        CountOutLocked(k, it->second.loc);
        map_.erase(it);
        deletes.push_back(k);
      }
    }
    std::vector<EntryKey>().swap(s.keys);
    stats_.dropped_on_reclaim += deletes.size();
    stats_.reinserted_entries += reinserted.entries;
    stats_.reinserted_bytes += reinserted.bytes;
    ++stats_.segments_reclaimed;
    if (s.state == Slot::State::kSealed) s.state = Slot::State::kFree;
  }
  if (auto st = index_->Commit({}, deletes, std::nullopt); !st.ok())
    spdlog::warn("ssd reclaim: index delete failed ({}); stale entries are dropped at the next open",
                 std::string(st.message()));
}

// Zeroes the slot's segment header so a rebuild never sees the dropped records.
void SsdTier::InvalidateSegmentHeader(uint32_t victim) {
  IoBuffer b = ring_->AcquireWriteBuffer();
  std::memset(b.data, 0, kSsdBlock);
  auto res = ring_->RunSync(IoRing::Lane::kWrite,
                            IoRequest{IoOp::kWrite, slots_[victim].fd, b.data, kSsdBlock, 0, b.index, &slots_[victim].path});
  ring_->ReleaseBuffer(b);
  if (!res.ok() || *res != static_cast<int>(kSsdBlock)) FailSlot(victim, 0, "header reset failed");
}

}  // namespace adaptcache
