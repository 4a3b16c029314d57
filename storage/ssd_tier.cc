// SsdTier: the request paths (Put/Get) and the writer thread with group commit. Open and
// recovery live in ssd_tier_open.cc, segment rolling and reclaim in ssd_tier_reclaim.cc.
#include "storage/ssd_tier.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <future>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/crc32c.h"
#include "spdlog/spdlog.h"
#include "storage/ssd_format.h"

namespace adaptcache {

namespace {

uint64_t MicrosSince(std::chrono::steady_clock::time_point t) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t).count());
}
}  // namespace

// One read in flight (header block + payload chunks).
struct SsdTier::ReadCtx {
  EntryKey key;
  SsdLocation loc;
  ByteSpan dst;
  GetCallback done;
  bool user = true;
  bool direct = false;
  std::byte* hdr = nullptr;
  std::byte* payload = nullptr;
  AlignedBuffer own;
  std::optional<IoBuffer> staging;
  std::atomic<int> remaining{0};
  std::atomic<int> error{0};
  std::chrono::steady_clock::time_point start;
};

SsdTier::SsdTier(const SsdTierOptions& opts) : opts_(opts), rng_(std::random_device{}()) {}

SsdTier::~SsdTier() {
  {
    std::lock_guard<std::mutex> l(q_mu_);
    stop_ = true;
  }
  q_cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  {
    std::lock_guard<std::mutex> l(c_mu_);
    c_stop_ = true;
  }
  c_cv_.notify_all();
  if (committer_.joinable()) committer_.join();
  ring_.reset();  // waits for in-flight reads; their callbacks may still use index_
  for (Slot& s : slots_)
    if (s.fd >= 0) ::close(s.fd);
  index_.reset();
}

std::string SsdTier::SlotPath(uint32_t slot) const { return slot < slots_.size() ? slots_[slot].path : ""; }

// ---------------------------------------------------------------------------- Put

absl::Status SsdTier::Put(const EntryKey& key, ConstByteSpan container, PutCallback done,
                          const SsdPutOptions& popts) {
  auto hdr = PeekHeader(container);
  if (!hdr.ok()) return absl::InvalidArgumentError(absl::StrCat("ssd put: not a container: ", std::string(hdr.status().message())));
  if (hdr->total_bytes != container.size())
    return absl::InvalidArgumentError("ssd put: container size does not match its header");
  if (container.size() > UINT32_MAX || RecordBytes(container.size()) > opts_.segment_bytes - kSsdBlock)
    return absl::InvalidArgumentError(
        absl::StrCat("ssd put: ", container.size(), " bytes do not fit a segment of ", opts_.segment_bytes));
  {
    std::lock_guard<std::mutex> l(q_mu_);
    if (stop_) return absl::UnavailableError("ssd tier is closing");
    if (!queue_.empty() && (queue_.size() >= opts_.max_pending_puts ||
                            queued_bytes_ + container.size() > opts_.max_pending_put_bytes)) {
      std::lock_guard<std::mutex> m(mu_);
      ++stats_.rejected_queue_full;
      return absl::ResourceExhaustedError("ssd put queue full");
    }
  }
  if (!popts.bypass_admission) {
    const auto v = admission_->Decide(key, container.size());
    if (v != AdmissionController::Verdict::kAdmit) {
      std::lock_guard<std::mutex> m(mu_);
      if (v == AdmissionController::Verdict::kTooCold) {
        ++stats_.rejected_cold;
        return NotAdmittedError("ssd admission: not admitted");
      }
      ++stats_.rejected_budget;
      return OverBudgetError("ssd admission: write budget exhausted");
    }
  }
  {
    std::lock_guard<std::mutex> m(mu_);
    if (stats_.slots_failed >= slots_.size()) return absl::UnavailableError("ssd tier: every segment is out of service");
    ++stats_.puts_accepted;
  }
  PutReq r;
  r.key = key;
  r.done = std::move(done);
  r.queued = std::chrono::steady_clock::now();
  if (popts.borrow) {
    r.bytes = container;
  } else {
    r.owned.assign(container.begin(), container.end());
    r.bytes = ConstByteSpan(r.owned);  // the vector's heap block survives moves
  }
  {
    std::lock_guard<std::mutex> l(q_mu_);
    queued_bytes_ += container.size();
    queue_.push_back(std::move(r));
  }
  q_cv_.notify_one();
  return absl::OkStatus();
}

absl::Status SsdTier::PutSync(const EntryKey& key, ConstByteSpan container, const SsdPutOptions& popts) {
  std::promise<absl::Status> p;
  auto f = p.get_future();
  SsdPutOptions o = popts;
  o.borrow = true;  // we wait, so the caller's bytes outlive the write
  if (auto st = Put(key, container, [&p](absl::Status s) { p.set_value(std::move(s)); }, o); !st.ok()) return st;
  return f.get();
}

void SsdTier::Flush() {
  {
    std::unique_lock<std::mutex> l(q_mu_);
    idle_cv_.wait(l, [&] { return queue_.empty() && !busy_; });
  }
  DrainCommits();  // the writer hands its last batch over before it goes idle
}

void SsdTier::NoteAccess(const EntryKey& key) { admission_->NoteAccess(key); }

// ------------------------------------------------------------------------ writer

void SsdTier::WriterLoop() {
  for (;;) {
    std::vector<PutReq> batch;
    {
      std::unique_lock<std::mutex> l(q_mu_);
      q_cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      uint64_t bytes = 0;
      while (!queue_.empty() && (batch.empty() || bytes + queue_.front().bytes.size() <= opts_.max_batch_bytes)) {
        bytes += queue_.front().bytes.size();
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      queued_bytes_ -= bytes;
      busy_ = true;
    }
    ProcessBatch(batch);
    {
      std::lock_guard<std::mutex> l(q_mu_);
      busy_ = false;
    }
    idle_cv_.notify_all();
  }
}

void SsdTier::ProcessBatch(std::vector<PutReq>& batch) {
  std::vector<std::unique_ptr<Staged>> staged;
  for (PutReq& r : batch) {
    if (!EnsureSpace(RecordBytes(r.bytes.size()), staged)) {
      {
        std::lock_guard<std::mutex> m(mu_);
        ++stats_.puts_failed;
      }
      if (r.done) r.done(absl::UnavailableError("ssd tier: no usable segment"));
      continue;
    }
    Stage(std::move(r), staged);
  }
  CommitStaged(staged);
}

bool SsdTier::EnsureSpace(uint64_t bytes, std::vector<std::unique_ptr<Staged>>& staged) {
  if (active_ >= 0) {
    std::lock_guard<std::mutex> m(mu_);
    Slot& s = slots_[active_];
    if (s.state == Slot::State::kActive && s.write_offset + bytes <= opts_.segment_bytes) return true;
  }
  CommitStaged(staged);
  DrainCommits();  // sealing and reclaim look at the index state
  if (active_ >= 0) {
    std::lock_guard<std::mutex> m(mu_);
    if (slots_[active_].state == Slot::State::kActive) slots_[active_].state = Slot::State::kSealed;
    active_ = -1;
  }
  return OpenNewSegment().ok();
}

void SsdTier::Stage(PutReq&& req, std::vector<std::unique_ptr<Staged>>& staged) {
  Slot& s = slots_[active_];
  auto st = std::make_unique<Staged>();
  const uint64_t payload = req.bytes.size();
  const uint64_t rec = RecordBytes(payload);
  st->loc.slot = static_cast<uint32_t>(active_);
  st->loc.segment_id = s.segment_id;
  st->loc.offset = s.write_offset;
  st->loc.payload_bytes = static_cast<uint32_t>(payload);
  st->loc.payload_crc32c = Crc32c(req.bytes.data(), payload);
  st->loc.codec = static_cast<uint8_t>(req.bytes[offsetof(ContainerHeader, codec)]);
  st->loc.seq = next_seq_++;
  s.write_offset += rec;

  RecordHeader h{};
  h.magic = kRecordMagic;
  h.version = kRecordFormatVersion;
  h.codec = st->loc.codec;
  h.ns = req.key.ns;
  h.key_lo = req.key.key.lo;
  h.key_hi = req.key.key.hi;
  h.seq = st->loc.seq;
  h.segment_id = s.segment_id;
  h.payload_bytes = st->loc.payload_bytes;
  h.payload_crc32c = st->loc.payload_crc32c;
  h.nonce = s.nonce;
  if (req.reinsert_of_seq != 0) h.flags = kRecordReinsertion;
  SealRecordHeader(h);
  ReinsertionTrailer trailer{};
  trailer.of_seq = req.reinsert_of_seq;
  SealReinsertionTrailer(trailer);

  const std::byte* src = req.bytes.data();
  uint64_t left = payload;
  Staged* raw = st.get();
  const uint64_t chunk = ring_->buffer_bytes();
  for (uint64_t off = 0; off < rec; off += chunk) {
    const uint64_t len = std::min(chunk, rec - off);
    IoBuffer buf = ring_->AcquireWriteBuffer();  // blocks while the write lane is full
    uint64_t fill = 0;
    if (off == 0) {
      std::memset(buf.data, 0, kSsdBlock);
      std::memcpy(buf.data, &h, sizeof h);
      if (req.reinsert_of_seq != 0) std::memcpy(buf.data + sizeof h, &trailer, sizeof trailer);
      fill = kSsdBlock;
    }
    const uint64_t n = std::min(left, len - fill);
    std::memcpy(buf.data + fill, src, n);
    src += n;
    left -= n;
    fill += n;
    if (fill < len) std::memset(buf.data + fill, 0, len - fill);
    {
      std::lock_guard<std::mutex> l(io_mu_);
      ++raw->ios;
    }
    IoRequest r{IoOp::kWrite, s.fd, buf.data, static_cast<uint32_t>(len), st->loc.offset + off, buf.index, &s.path};
    std::vector<IoRing::Callback> cb;
    cb.emplace_back([this, raw, buf, len](int res) {
      if (res != static_cast<int>(len)) {
        int expected = 0;
        raw->error.compare_exchange_strong(expected, res < 0 ? res : -EIO);
      }
      ring_->ReleaseBuffer(buf);
      {
        std::lock_guard<std::mutex> l(io_mu_);
        --raw->ios;
      }
      io_cv_.notify_all();
    });
    if (auto sst = ring_->Submit(IoRing::Lane::kWrite, std::span<const IoRequest>(&r, 1), std::move(cb)); !sst.ok()) {
      int expected = 0;
      raw->error.compare_exchange_strong(expected, -EIO);
      ring_->ReleaseBuffer(buf);
      std::lock_guard<std::mutex> l(io_mu_);
      --raw->ios;
    }
  }
  {
    std::lock_guard<std::mutex> m(mu_);
    stats_.device_bytes_written += rec;
  }
  st->req = std::move(req);
  staged.push_back(std::move(st));
}

void SsdTier::CommitStaged(std::vector<std::unique_ptr<Staged>>& staged) {
  if (staged.empty()) return;
  {
    std::unique_lock<std::mutex> l(c_mu_);
    c_idle_cv_.wait(l, [&] { return commit_q_.size() < kMaxCommitBacklog; });
    commit_q_.push_back(std::move(staged));
  }
  staged.clear();
  c_cv_.notify_one();
}

void SsdTier::DrainCommits() {
  std::unique_lock<std::mutex> l(c_mu_);
  c_idle_cv_.wait(l, [&] { return commit_q_.empty() && !c_busy_; });
}

void SsdTier::CommitterLoop() {
  for (;;) {
    std::vector<std::unique_ptr<Staged>> batch;
    {
      std::unique_lock<std::mutex> l(c_mu_);
      c_cv_.wait(l, [&] { return c_stop_ || !commit_q_.empty(); });
      if (commit_q_.empty()) return;
      batch = std::move(commit_q_.front());
      commit_q_.pop_front();
      c_busy_ = true;
    }
    c_idle_cv_.notify_all();
    CommitNow(batch);
    {
      std::lock_guard<std::mutex> l(c_mu_);
      c_busy_ = false;
    }
    c_idle_cv_.notify_all();
  }
}

// Waits for the batch's writes, fdatasyncs its segment, commits the index, acknowledges.
void SsdTier::CommitNow(std::vector<std::unique_ptr<Staged>>& staged) {
  {
    std::unique_lock<std::mutex> l(io_mu_);
    io_cv_.wait(l, [&] {
      for (auto& s : staged)
        if (s->ios != 0) return false;
      return true;
    });
  }
  const uint32_t slot = staged.front()->loc.slot;
  const uint64_t seg = staged.front()->loc.segment_id;
  int err = 0;
  for (auto& s : staged)
    if (int e = s->error.load(); e != 0 && err == 0) err = e;
  std::string why;
  if (err != 0) {
    why = absl::StrCat("write failed: ", std::strerror(-err));
  } else {
    IoRequest r{IoOp::kFsync, slots_[slot].fd, nullptr, 0, 0, -1, &slots_[slot].path};
    auto res = ring_->RunSync(IoRing::Lane::kWrite, r);
    if (!res.ok()) why = absl::StrCat("fdatasync not submitted: ", std::string(res.status().message()));
    else if (*res < 0) why = absl::StrCat("fdatasync failed: ", std::strerror(-*res));
  }
  absl::Status result;
  std::vector<std::unique_ptr<Staged>> done = std::move(staged);
  staged.clear();
  std::vector<bool> superseded(done.size(), false);
  if (!why.empty()) {
    FailSlot(slot, seg, why);
    result = absl::UnavailableError(absl::StrCat("ssd write: ", why, "; segment out of service"));
  } else {
    std::lock_guard<std::mutex> il(index_mu_);
    std::vector<std::pair<EntryKey, SsdLocation>> puts;
    puts.reserve(done.size());
    {
      std::lock_guard<std::mutex> m(mu_);
      if (slots_[slot].state == Slot::State::kFailed) result = absl::UnavailableError("ssd write: segment taken out of service");
      for (size_t i = 0; i < done.size() && result.ok(); ++i) {
        const PutReq& q = done[i]->req;
        if (q.reinsert_of_seq != 0) {
          // A reclaim's copy must not undo an Erase or a newer Put that came meanwhile.
          auto it = map_.find(q.key);
          superseded[i] = it == map_.end() || it->second.loc.seq != q.reinsert_of_seq;
          if (superseded[i]) continue;
        }
        puts.emplace_back(q.key, done[i]->loc);
      }
    }
    if (result.ok()) {
      const SsdLocation& last = done.back()->loc;
      IndexTail tail{last.seq, slot, seg, last.offset + RecordBytes(last.payload_bytes)};
      result = index_->Commit(puts, {}, tail);
    }
    if (result.ok()) {
      std::lock_guard<std::mutex> m(mu_);
      if (slots_[slot].state == Slot::State::kFailed) {
        result = absl::UnavailableError("ssd write: segment taken out of service");
      } else {
        for (size_t i = 0; i < done.size(); ++i) {
          auto& s = done[i];
          if (superseded[i]) {
            ++stats_.reinsert_superseded;
            continue;
          }
          auto [it, inserted] = map_.try_emplace(s->req.key);
          if (!inserted) CountOutLocked(s->req.key, it->second.loc);
          it->second = Entry{s->loc, 0};
          CountInLocked(s->req.key, s->loc);
          slots_[slot].keys.push_back(s->req.key);
          if (!s->req.reinsertion()) {
            stats_.user_bytes_written += s->loc.payload_bytes;
            ++stats_.puts_committed;
          }
        }
      }
    }
  }
  if (!result.ok()) {
    std::lock_guard<std::mutex> m(mu_);
    for (auto& s : done)
      if (!s->req.reinsertion()) ++stats_.puts_failed;
  }
  for (auto& s : done) {
    if (!s->req.reinsertion()) write_lat_.Record(MicrosSince(s->req.queued));
    if (s->req.done) s->req.done(result);
  }
}

void SsdTier::FailSlot(uint32_t slot, uint64_t segment_id, const std::string& why) {
  std::vector<EntryKey> deletes;
  std::lock_guard<std::mutex> il(index_mu_);
  {
    std::lock_guard<std::mutex> m(mu_);
    Slot& s = slots_[slot];
    ++stats_.io_errors;
    if (s.state == Slot::State::kFailed) return;
    s.state = Slot::State::kFailed;
    ++stats_.slots_failed;
    for (const EntryKey& k : s.keys) {
      auto it = map_.find(k);
      if (it != map_.end() && it->second.loc.slot == slot) {
        CountOutLocked(k, it->second.loc);
        map_.erase(it);
        deletes.push_back(k);
      }
    }
    std::vector<EntryKey>().swap(s.keys);
  }
  spdlog::error("ssd tier: segment slot {} ({}) taken out of service: {}; {} entries dropped", slot, slots_[slot].path,
                why, deletes.size());
  if (auto st = index_->MarkSlotFailed(slot); !st.ok()) spdlog::error("ssd tier: {}", std::string(st.message()));
  if (auto st = index_->Commit({}, deletes, std::nullopt); !st.ok()) spdlog::error("ssd tier: {}", std::string(st.message()));
}

// ---------------------------------------------------------------------------- Get

absl::Status SsdTier::GetAsync(const EntryKey& key, ByteSpan dst, GetCallback done) {
  Entry e;
  {
    std::lock_guard<std::mutex> m(mu_);
    ++stats_.gets;
    auto it = map_.find(key);
    if (it == map_.end()) {
      ++stats_.misses;
      return absl::NotFoundError("ssd: miss");
    }
    if (dst.size() < it->second.loc.payload_bytes)
      return absl::OutOfRangeError(absl::StrCat("ssd get: entry has ", it->second.loc.payload_bytes,
                                                " bytes, buffer ", dst.size()));
    ++it->second.hits;
    e = it->second;
  }
  return ReadEntry(key, e, dst, true, std::move(done));
}

absl::StatusOr<uint64_t> SsdTier::Get(const EntryKey& key, ByteSpan dst) {
  std::promise<absl::StatusOr<uint64_t>> p;
  auto f = p.get_future();
  if (auto st = GetAsync(key, dst, [&p](absl::StatusOr<uint64_t> r) { p.set_value(std::move(r)); }); !st.ok())
    return st;
  return f.get();
}

absl::StatusOr<std::vector<std::byte>> SsdTier::Get(const EntryKey& key) {
  auto info = Lookup(key);
  if (!info) {
    std::lock_guard<std::mutex> m(mu_);
    ++stats_.gets;
    ++stats_.misses;
    return absl::NotFoundError("ssd: miss");
  }
  std::vector<std::byte> out(info->payload_bytes);
  auto n = Get(key, ByteSpan(out));
  if (!n.ok()) return n.status();
  out.resize(*n);
  return out;
}

absl::Status SsdTier::ReadEntry(const EntryKey& key, const Entry& e, ByteSpan dst, bool user, GetCallback done) {
  const Slot& s = slots_[e.loc.slot];
  const uint64_t payload = e.loc.payload_bytes;
  const uint64_t padded = RoundUpBlock(payload);
  const uint64_t chunk = ring_->buffer_bytes();
  auto ctx = std::make_unique<ReadCtx>();
  ctx->key = key;
  ctx->loc = e.loc;
  ctx->dst = dst;
  ctx->done = std::move(done);
  ctx->user = user;
  ctx->start = std::chrono::steady_clock::now();
  ctx->direct = reinterpret_cast<uintptr_t>(dst.data()) % kSsdBlock == 0 && dst.size() >= padded;
  std::vector<IoRequest> reqs;
  if (ctx->direct) {
    ctx->staging = ring_->TryAcquireReadBuffer();
    if (!ctx->staging) ctx->own = AlignedBuffer(kSsdBlock);
    ctx->hdr = ctx->staging ? ctx->staging->data : ctx->own.data();
    ctx->payload = dst.data();
    // Header block and the first payload chunk in one readv; the rest in chunks.
    const uint64_t first = std::min(padded, chunk);
    IoRequest r0{IoOp::kRead, s.fd, ctx->hdr, static_cast<uint32_t>(kSsdBlock), e.loc.offset, -1, &s.path};
    r0.buf2 = dst.data();
    r0.len2 = static_cast<uint32_t>(first);
    reqs.push_back(r0);
    for (uint64_t off = first; off < padded; off += chunk)
      reqs.push_back({IoOp::kRead, s.fd, dst.data() + off, static_cast<uint32_t>(std::min(chunk, padded - off)),
                      e.loc.offset + kSsdBlock + off, -1, &s.path});
  } else {
    const uint64_t rec = kSsdBlock + padded;
    if (rec <= chunk) ctx->staging = ring_->TryAcquireReadBuffer();
    if (!ctx->staging) ctx->own = AlignedBuffer(rec);
    std::byte* base = ctx->staging ? ctx->staging->data : ctx->own.data();
    if (base == nullptr) return absl::ResourceExhaustedError("ssd get: cannot allocate a read buffer");
    ctx->hdr = base;
    ctx->payload = base + kSsdBlock;
    for (uint64_t off = 0; off < rec; off += chunk)
      reqs.push_back({IoOp::kRead, s.fd, base + off, static_cast<uint32_t>(std::min(chunk, rec - off)),
                      e.loc.offset + off, (ctx->staging && off == 0) ? ctx->staging->index : -1, &s.path});
  }
  if (ctx->hdr == nullptr) return absl::ResourceExhaustedError("ssd get: cannot allocate a read buffer");
  ctx->remaining = static_cast<int>(reqs.size());
  ReadCtx* raw = ctx.get();
  std::vector<IoRing::Callback> cbs;
  for (const IoRequest& r : reqs) {
    const int len = static_cast<int>(r.len + r.len2);
    cbs.emplace_back([this, raw, len](int res) {
      if (res != len) {
        int expected = 0;
        raw->error.compare_exchange_strong(expected, res < 0 ? res : -EIO);
      }
      if (raw->remaining.fetch_sub(1) == 1) FinishRead(raw);
    });
  }
  absl::Status st = ring_->Submit(IoRing::Lane::kRead, reqs, std::move(cbs));
  if (!st.ok()) {
    if (ctx->staging) ring_->ReleaseBuffer(*ctx->staging);
    return st;
  }
  ctx.release();  // owned by the completions now; FinishRead deletes it
  return absl::OkStatus();
}

void SsdTier::FinishRead(ReadCtx* ctx) {
  std::unique_ptr<ReadCtx> owner(ctx);
  absl::StatusOr<uint64_t> result;
  const SsdLocation& loc = ctx->loc;
  bool corrupt = false;
  if (int err = ctx->error.load(); err != 0) {
    FailSlot(loc.slot, loc.segment_id, absl::StrCat("read failed: ", std::strerror(-err)));
    result = absl::UnavailableError(absl::StrCat("ssd read: ", std::strerror(-err), "; segment out of service"));
  } else {
    RecordHeader h;
    const bool ok = ValidateRecordHeader(std::span<const std::byte>(ctx->hdr, kSsdBlock), &h).ok() &&
                    h.ns == ctx->key.ns && h.key_lo == ctx->key.key.lo && h.key_hi == ctx->key.key.hi &&
                    h.seq == loc.seq && h.segment_id == loc.segment_id && h.payload_bytes == loc.payload_bytes &&
                    h.payload_crc32c == loc.payload_crc32c &&
                    Crc32c(ctx->payload, loc.payload_bytes) == loc.payload_crc32c;
    if (!ok) {
      corrupt = true;
      result = absl::NotFoundError("ssd: checksum mismatch; entry dropped");
    } else {
      if (!ctx->direct) std::memcpy(ctx->dst.data(), ctx->payload, loc.payload_bytes);
      result = static_cast<uint64_t>(loc.payload_bytes);
    }
  }
  if (ctx->staging) ring_->ReleaseBuffer(*ctx->staging);
  if (corrupt) DropCorrupt(ctx->key, loc.seq);
  {
    std::lock_guard<std::mutex> m(mu_);
    stats_.device_bytes_read += kSsdBlock + RoundUpBlock(loc.payload_bytes);
    if (ctx->user) {
      if (result.ok()) ++stats_.hits;
      else ++stats_.misses;
    }
  }
  if (ctx->user && result.ok()) read_lat_.Record(MicrosSince(ctx->start));
  if (ctx->done) ctx->done(std::move(result));
}

void SsdTier::DropCorrupt(const EntryKey& key, uint64_t seq) {
  bool erased = false;
  std::lock_guard<std::mutex> il(index_mu_);
  {
    std::lock_guard<std::mutex> m(mu_);
    ++stats_.checksum_failures;
    auto it = map_.find(key);
    if (it != map_.end() && it->second.loc.seq == seq) {
      CountOutLocked(key, it->second.loc);
      map_.erase(it);
      erased = true;
    }
  }
  if (erased) {
    spdlog::warn("ssd tier: checksum mismatch for an entry; dropped");
    if (auto st = index_->Commit({}, {key}, std::nullopt); !st.ok()) spdlog::error("ssd tier: {}", std::string(st.message()));
  }
}

// ----------------------------------------------------------------- lookups, stats

std::optional<SsdEntryInfo> SsdTier::Lookup(const EntryKey& key) const {
  std::lock_guard<std::mutex> m(mu_);
  auto it = map_.find(key);
  if (it == map_.end()) return std::nullopt;
  return it->second.Info();
}

absl::Status SsdTier::Erase(const EntryKey& key, std::optional<uint32_t> only_crc,
                           std::optional<uint32_t> unless_crc) {
  auto erasable = [&]() -> absl::Status {  // under mu_
    auto it = map_.find(key);
    if (it == map_.end()) return absl::NotFoundError("ssd erase: no such entry");
    const uint32_t crc = it->second.loc.payload_crc32c;
    if ((only_crc && crc != *only_crc) || (unless_crc && crc == *unless_crc))
      return absl::FailedPreconditionError("ssd erase: the entry is another version");
    return absl::OkStatus();
  };
  {
    // Most erases find nothing to do (every Put asks); they need not wait for a commit.
    std::lock_guard<std::mutex> m(mu_);
    if (auto st = erasable(); !st.ok()) return st;
  }
  std::lock_guard<std::mutex> il(index_mu_);
  {
    std::lock_guard<std::mutex> m(mu_);
    if (auto st = erasable(); !st.ok()) return st;
    auto it = map_.find(key);
    CountOutLocked(key, it->second.loc);
    map_.erase(it);
  }
  return index_->Commit({}, {key}, std::nullopt);
}

void SsdTier::CountInLocked(const EntryKey& key, const SsdLocation& loc) {
  stats_.live_payload_bytes += loc.payload_bytes;
  NamespaceUsage& u = ns_usage_[key.ns];
  u.bytes += loc.payload_bytes;
  ++u.entries;
}

void SsdTier::CountOutLocked(const EntryKey& key, const SsdLocation& loc) {
  stats_.live_payload_bytes -= loc.payload_bytes;
  auto it = ns_usage_.find(key.ns);
  if (it == ns_usage_.end()) return;
  it->second.bytes -= loc.payload_bytes;
  if (--it->second.entries <= 0) ns_usage_.erase(it);
}

NamespaceUsage SsdTier::UsageOf(std::span<const uint64_t> namespaces) const {
  std::lock_guard<std::mutex> m(mu_);
  NamespaceUsage sum;
  for (uint64_t ns : namespaces) {
    if (auto it = ns_usage_.find(ns); it != ns_usage_.end()) {
      sum.bytes += it->second.bytes;
      sum.entries += it->second.entries;
    }
  }
  return sum;
}

std::vector<std::pair<EntryKey, SsdEntryInfo>> SsdTier::OldestBeyond(std::span<const uint64_t> namespaces,
                                                                     uint64_t max_bytes, uint64_t max_entries) const {
  std::vector<std::pair<EntryKey, SsdEntryInfo>> out;
  const NamespaceUsage u = UsageOf(namespaces);
  uint64_t bytes = static_cast<uint64_t>(std::max<int64_t>(u.bytes, 0));
  uint64_t entries = static_cast<uint64_t>(std::max<int64_t>(u.entries, 0));
  if (bytes <= max_bytes && entries <= max_entries) return out;
  const absl::flat_hash_set<uint64_t> in(namespaces.begin(), namespaces.end());
  {
    std::lock_guard<std::mutex> m(mu_);
    for (const auto& [k, e] : map_) {
      if (!in.contains(k.ns)) continue;
      out.emplace_back(k, e.Info());
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.second.seq < b.second.seq; });
  size_t n = 0;
  while (n < out.size() && (bytes > max_bytes || entries > max_entries)) {
    bytes -= out[n].second.payload_bytes;
    --entries;
    ++n;
  }
  out.resize(n);
  return out;
}

SsdTierStats SsdTier::Stats() const {
  std::lock_guard<std::mutex> m(mu_);
  SsdTierStats s = stats_;
  s.entries = map_.size();
  s.slots = slots_.size();
  s.slots_in_use = 0;
  for (const Slot& sl : slots_)
    if (sl.state == Slot::State::kActive || sl.state == Slot::State::kSealed) ++s.slots_in_use;
  s.capacity_bytes = (s.slots - s.slots_failed) * opts_.segment_bytes;
  s.write_amplification = s.user_bytes_written ? static_cast<double>(s.device_bytes_written) /
                                                     static_cast<double>(s.user_bytes_written)
                                               : 0.0;
  s.registered_buffers = ring_ && ring_->buffers_registered();
  s.write_p50_us = write_lat_.Quantile(0.5);
  s.write_p99_us = write_lat_.Quantile(0.99);
  s.read_p50_us = read_lat_.Quantile(0.5);
  s.read_p99_us = read_lat_.Quantile(0.99);
  return s;
}

void SsdTier::ForEach(const std::function<void(const EntryKey&, const SsdEntryInfo&)>& fn) const {
  std::lock_guard<std::mutex> m(mu_);
  for (const auto& [k, e] : map_)
    fn(k, e.Info());
}

}  // namespace adaptcache
