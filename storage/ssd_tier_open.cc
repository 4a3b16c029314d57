// SsdTier::Open and recovery: slot files, index load, catch-up scan past the index tail,
// full rebuild from the log when the index is missing. Also ReadContainerHead.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/crc32c.h"
#include "spdlog/spdlog.h"
#include "storage/ssd_format.h"
#include "storage/ssd_tier.h"

namespace adaptcache {

struct SsdTier::ScanResult {
  std::vector<std::pair<EntryKey, SsdLocation>> records;
  std::vector<uint64_t> reinsert_of;  // per record: ReinsertionOf (0: a plain record)
  uint64_t end_offset = kSsdBlock;  // after the last record with a valid header
  uint64_t corrupt = 0;
};

namespace {
constexpr uint64_t kScanWindow = 8ull << 20;
constexpr uint64_t kSeqGapOnOpen = 1ull << 24;  // beyond any record we might not have seen

// The tier holds tenants' bytes: its directories are 0700, its files 0600. A looser
// directory or file we own (an older version, a hand-made dir) is tightened and logged.
absl::Status MakePrivateDir(const std::string& dir) {
  std::error_code ec;
  const std::filesystem::path parent = std::filesystem::path(dir).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  if (::mkdir(dir.c_str(), 0700) == 0) return absl::OkStatus();
  if (errno != EEXIST) return absl::ErrnoToStatus(errno, absl::StrCat("ssd tier: create ", dir));
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return absl::ErrnoToStatus(errno, absl::StrCat("ssd tier: ", dir));
  if (!S_ISDIR(st.st_mode)) return absl::FailedPreconditionError(absl::StrCat("ssd tier: ", dir, " is not a directory"));
  if ((st.st_mode & 077) == 0) return absl::OkStatus();
  if (st.st_uid != ::geteuid()) {
    spdlog::warn("ssd tier: {} has mode {:o} and is not ours; others may read the cache", dir, st.st_mode & 07777);
  } else if (::chmod(dir.c_str(), 0700) == 0) {
    spdlog::warn("ssd tier: {} had mode {:o}; set to 0700", dir, st.st_mode & 07777);
  } else {
    spdlog::warn("ssd tier: chmod 0700 {}: {}", dir, std::strerror(errno));
  }
  return absl::OkStatus();
}

// Sets files of ours in `dir` looser than 0600 to 0600; returns how many.
int TightenFiles(const std::string& dir) {
  int n = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    struct stat st;
    if (::lstat(e.path().c_str(), &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077) == 0 ||
        st.st_uid != ::geteuid())
      continue;
    if (::chmod(e.path().c_str(), 0600) == 0) ++n;
  }
  return n;
}
}  // namespace

absl::StatusOr<std::unique_ptr<SsdTier>> SsdTier::Open(const SsdTierOptions& opts) {
  if (opts.dir.empty()) return absl::InvalidArgumentError("ssd tier: dir is empty");
  if (opts.segment_bytes < (64u << 10) || opts.segment_bytes % kSsdBlock != 0)
    return absl::InvalidArgumentError("ssd tier: segment_bytes must be a multiple of 4 KiB and >= 64 KiB");
  if (opts.segment_count < 3) return absl::InvalidArgumentError("ssd tier: segment_count must be >= 3");
  if (opts.io_bytes == 0 || opts.io_bytes % kSsdBlock != 0 || opts.io_bytes > (256u << 20))
    return absl::InvalidArgumentError("ssd tier: io_bytes must be a multiple of 4 KiB, <= 256 MiB");
  if (opts.write_buffers == 0 || opts.read_queue_depth < 2 || opts.max_pending_puts == 0)
    return absl::InvalidArgumentError("ssd tier: buffers, queue depth and pending puts must be non-zero");
  if (opts.max_reinsert_fraction < 0 || opts.max_reinsert_fraction > 0.75)
    return absl::InvalidArgumentError("ssd tier: max_reinsert_fraction must be in [0, 0.75]");
  std::unique_ptr<SsdTier> t(new SsdTier(opts));
  if (auto st = t->OpenImpl(); !st.ok()) return st;
  return t;
}

absl::Status SsdTier::OpenImpl() {
  if (auto st = MakePrivateDir(opts_.dir); !st.ok()) return st;
  if (auto st = MakePrivateDir(opts_.dir + "/index"); !st.ok()) return st;
  IoRingOptions ro;
  ro.buffer_bytes = opts_.io_bytes;
  ro.write_buffers = opts_.write_buffers;
  ro.write_slots = opts_.write_buffers + 4;  // staging buffers bound writes; +fsync/header
  ro.read_buffers = opts_.read_buffers;
  ro.read_slots = opts_.read_queue_depth;
  ro.register_buffers = opts_.register_buffers;
  ro.faults = opts_.faults;
  auto ring = IoRing::Create(ro);
  if (!ring.ok()) return ring.status();
  ring_ = std::move(*ring);
  admission_ = std::make_unique<AdmissionController>(opts_.admission, opts_.clock);

  bool fresh = false;
  auto idx = SsdIndex::Open(opts_.dir + "/index", opts_.index_sync, &fresh);
  if (!idx.ok()) return idx.status();
  index_ = std::move(*idx);
  // New index files follow the process umask (the daemon sets 077); fix older ones.
  if (const int n = TightenFiles(opts_.dir) + TightenFiles(opts_.dir + "/index"); n > 0)
    spdlog::warn("ssd tier: {} files under {} were readable by others; set to 0600", n, opts_.dir);
  const IndexLayout layout{opts_.segment_bytes, opts_.segment_count};
  if (!fresh) {
    auto l = index_->ReadLayout();
    if (!l.ok()) return l.status();
    if (*l && ((*l)->segment_bytes != layout.segment_bytes || (*l)->slot_count != layout.slot_count))
      return absl::FailedPreconditionError(absl::StrFormat(
          "ssd tier: %s was created with %d segments of %d bytes; options ask for %d of %d", opts_.dir,
          (*l)->slot_count, (*l)->segment_bytes, layout.slot_count, layout.segment_bytes));
  }
  auto failed = index_->FailedSlots();
  if (!failed.ok()) return failed.status();
  if (auto st = OpenSlots(*failed); !st.ok()) return st;
  if (auto st = fresh ? RebuildIndex() : LoadIndex(); !st.ok()) return st;
  if (fresh) {
    if (auto st = index_->Initialize(layout); !st.ok()) return st;
  }
  for (const auto& [k, e] : map_) CountInLocked(k, e.loc);
  ResumeNewestSegment();
  committer_ = std::thread([this] { CommitterLoop(); });
  writer_ = std::thread([this] { WriterLoop(); });
  return absl::OkStatus();
}

absl::Status SsdTier::OpenSlots(const std::set<uint32_t>& failed) {
  slots_.resize(opts_.segment_count);
  uint32_t usable = 0;
  AlignedBuffer hdr(kSsdBlock);
  for (uint32_t i = 0; i < opts_.segment_count; ++i) {
    Slot& s = slots_[i];
    s.path = absl::StrCat(opts_.dir, "/", SegmentFileName(i));
    if (failed.count(i)) {
      s.state = Slot::State::kFailed;
      ++stats_.slots_failed;
      continue;
    }
    s.fd = ::open(s.path.c_str(), O_RDWR | O_CREAT | O_DIRECT | O_CLOEXEC, 0600);
    if (s.fd < 0) {
      if (errno == EINVAL)
        return absl::FailedPreconditionError(absl::StrCat("ssd tier: ", opts_.dir, " does not support O_DIRECT"));
      return absl::UnavailableError(absl::StrCat("ssd tier: open ", s.path, ": ", std::strerror(errno)));
    }
    if (::fallocate(s.fd, 0, 0, static_cast<off_t>(opts_.segment_bytes)) != 0) {
      // ENOSPC or an I/O error: this slot is unusable now, but may be fine next start.
      spdlog::error("ssd tier: fallocate {} ({} bytes): {}; slot out of service", s.path, opts_.segment_bytes,
                    std::strerror(errno));
      s.state = Slot::State::kFailed;
      ++stats_.slots_failed;
      continue;
    }
    ++usable;
    auto res = ring_->RunSync(IoRing::Lane::kRead, IoRequest{IoOp::kRead, s.fd, hdr.data(), kSsdBlock, 0, -1, &s.path});
    if (!res.ok()) return res.status();
    SegmentHeader h;
    if (*res == static_cast<int>(kSsdBlock) &&
        ValidateSegmentHeader(std::span<const std::byte>(hdr.data(), kSsdBlock), &h).ok() && h.slot == i &&
        h.segment_bytes == opts_.segment_bytes) {
      s.state = Slot::State::kSealed;
      s.segment_id = h.segment_id;
      s.nonce = h.nonce;
      next_segment_id_ = std::max(next_segment_id_, h.segment_id + 1);
    } else if (*res < 0) {
      spdlog::error("ssd tier: reading {}: {}; slot out of service", s.path, std::strerror(-*res));
      s.state = Slot::State::kFailed;
      ++stats_.slots_failed;
      --usable;
    }
  }
  if (usable < 3)
    return absl::ResourceExhaustedError(absl::StrCat("ssd tier: only ", usable, " usable segment files in ", opts_.dir));
  return absl::OkStatus();
}

absl::Status SsdTier::ScanSlot(uint32_t slot, uint64_t from, bool probe, ScanResult* out) {
  Slot& s = slots_[slot];
  const uint64_t seg = opts_.segment_bytes;
  AlignedBuffer win(std::min(kScanWindow, seg));
  uint64_t wstart = 0, wlen = 0;
  out->end_offset = from;
  uint64_t p = from;
  auto read = [&](std::byte* dst, uint64_t len, uint64_t off) -> absl::Status {
    for (uint64_t done = 0; done < len;) {
      const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(len - done, opts_.io_bytes));
      auto res = ring_->RunSync(IoRing::Lane::kRead, IoRequest{IoOp::kRead, s.fd, dst + done, n, off + done, -1, &s.path});
      if (!res.ok()) return res.status();
      if (*res != static_cast<int>(n))
        return absl::DataLossError(absl::StrCat("read ", s.path, ": ", *res < 0 ? std::strerror(-*res) : "short"));
      stats_.device_bytes_read += n;
      done += n;
    }
    return absl::OkStatus();
  };
  while (p + kSsdBlock <= seg) {
    if (p < wstart || p + kSsdBlock > wstart + wlen) {
      wstart = p;
      wlen = std::min(win.size(), seg - p);
      if (auto st = read(win.data(), wlen, wstart); !st.ok()) return st;
    }
    const std::byte* blk = win.data() + (p - wstart);
    RecordHeader h;
    const bool ok = ValidateRecordHeader(std::span<const std::byte>(blk, kSsdBlock), &h).ok() &&
                    h.segment_id == s.segment_id && h.nonce == s.nonce && RecordBytes(h.payload_bytes) <= seg - p;
    if (!ok) {
      if (!probe) break;
      p += kSsdBlock;
      continue;
    }
    const uint64_t rec = RecordBytes(h.payload_bytes);
    uint32_t crc;
    if (p + rec <= wstart + wlen) {
      crc = Crc32c(blk + kSsdBlock, h.payload_bytes);
    } else {
      AlignedBuffer pb(rec - kSsdBlock);
      if (pb.data() == nullptr) return absl::ResourceExhaustedError("ssd scan: out of memory");
      if (auto st = read(pb.data(), rec - kSsdBlock, p + kSsdBlock); !st.ok()) return st;
      crc = Crc32c(pb.data(), h.payload_bytes);
    }
    auto of = ReinsertionOf(std::span<const std::byte>(blk, kSsdBlock), h);
    if (crc == h.payload_crc32c && of.ok()) {
      EntryKey k{h.ns, Key128{h.key_lo, h.key_hi}};
      out->records.emplace_back(k, SsdLocation{slot, s.segment_id, p, h.payload_bytes, h.payload_crc32c, h.codec, h.seq});
      out->reinsert_of.push_back(*of);
    } else {
      ++out->corrupt;  // header intact, payload not: skip this record only
    }
    p += rec;
    out->end_offset = p;
  }
  return absl::OkStatus();
}

namespace {
// Applies scanned records: the highest sequence per key wins. A reclaim's copy counts only
// while the record it copies is the key's entry (an Erase or newer Put came after it was
// read); in a rebuild, where erases are unknown anyway, also when the key has none.
template <typename Scan, typename Map, typename Slots>
void ApplyRecords(const Scan& r, bool rebuild, Map& map, Slots& slots,
                  std::vector<std::pair<EntryKey, SsdLocation>>* puts, uint64_t* applied) {
  for (size_t i = 0; i < r.records.size(); ++i) {
    const auto& [k, loc] = r.records[i];
    auto it = map.find(k);
    if (it != map.end() && it->second.loc.seq >= loc.seq) continue;
    if (const uint64_t of = r.reinsert_of[i]; of != 0) {
      const bool copies_entry = it != map.end() ? it->second.loc.seq == of : rebuild;
      if (!copies_entry) continue;
    }
    map[k].loc = loc;
    map[k].hits = 0;
    slots[loc.slot].keys.push_back(k);
    puts->emplace_back(k, loc);
    ++*applied;
  }
}
}  // namespace

absl::Status SsdTier::LoadIndex() {
  auto tail = index_->ReadTail();
  if (!tail.ok()) return tail.status();
  uint64_t max_seq = *tail ? (*tail)->hw_seq : 0;
  if (*tail) next_segment_id_ = std::max(next_segment_id_, (*tail)->segment_id + 1);
  std::vector<EntryKey> stale;
  uint64_t corrupt = 0;
  auto st = index_->ForEach(
      [&](const EntryKey& k, const SsdLocation& l) {
        if (l.slot >= slots_.size() || slots_[l.slot].state != Slot::State::kSealed ||
            slots_[l.slot].segment_id != l.segment_id || l.offset < kSsdBlock || l.offset % kSsdBlock != 0 ||
            l.offset + RecordBytes(l.payload_bytes) > opts_.segment_bytes || l.payload_bytes == 0) {
          stale.push_back(k);  // failed or reused segment: a miss now
          return;
        }
        map_[k] = Entry{l, 0};
        slots_[l.slot].keys.push_back(k);
        max_seq = std::max(max_seq, l.seq);
      },
      &corrupt);
  if (!st.ok()) return st;
  // Catch up: every segment at or past the tail, from the tail's end offset.
  std::vector<uint32_t> order;
  for (uint32_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].state == Slot::State::kSealed && (!*tail || slots_[i].segment_id >= (*tail)->segment_id))
      order.push_back(i);
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return slots_[a].segment_id < slots_[b].segment_id; });
  std::vector<std::pair<EntryKey, SsdLocation>> puts;
  uint64_t applied = 0;
  for (uint32_t i : order) {
    const uint64_t from = (*tail && slots_[i].segment_id == (*tail)->segment_id) ? (*tail)->end_offset : kSsdBlock;
    ScanResult r;
    if (auto sst = ScanSlot(i, from, /*probe=*/false, &r); !sst.ok()) {
      FailSlot(i, slots_[i].segment_id, std::string(sst.message()));
      continue;
    }
    stats_.checksum_failures += r.corrupt;
    slots_[i].write_offset = r.end_offset;
    for (const auto& rec : r.records) max_seq = std::max(max_seq, rec.second.seq);
    ApplyRecords(r, /*rebuild=*/false, map_, slots_, &puts, &applied);
  }
  stats_.recovered_from_scan = applied;
  next_seq_ = max_seq + kSeqGapOnOpen;
  std::optional<IndexTail> nt;
  if (!order.empty()) {
    const Slot& n = slots_[order.back()];
    nt = IndexTail{max_seq, order.back(), n.segment_id, n.write_offset};
  }
  if (applied) spdlog::info("ssd tier: caught up {} records from the log past the index tail", applied);
  if (!stale.empty() || !puts.empty() || nt) return index_->Commit(puts, stale, nt);
  return absl::OkStatus();
}

absl::Status SsdTier::RebuildIndex() {
  if (auto st = index_->ClearEntries(); !st.ok()) return st;
  std::vector<uint32_t> order;
  for (uint32_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].state == Slot::State::kSealed) order.push_back(i);
  if (!order.empty()) spdlog::warn("ssd tier: rebuilding the index of {} from a log scan", opts_.dir);
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return slots_[a].segment_id < slots_[b].segment_id; });
  uint64_t max_seq = 0, applied = 0;
  std::vector<std::pair<EntryKey, SsdLocation>> puts;
  for (uint32_t i : order) {
    ScanResult r;
    if (auto st = ScanSlot(i, kSsdBlock, /*probe=*/true, &r); !st.ok()) {
      FailSlot(i, slots_[i].segment_id, std::string(st.message()));
      continue;
    }
    stats_.checksum_failures += r.corrupt;
    slots_[i].write_offset = r.end_offset;
    for (const auto& rec : r.records) max_seq = std::max(max_seq, rec.second.seq);
    ApplyRecords(r, /*rebuild=*/true, map_, slots_, &puts, &applied);
  }
  // Only the winners go to the index (a key may appear in several segments).
  std::vector<std::pair<EntryKey, SsdLocation>> winners;
  winners.reserve(map_.size());
  for (const auto& [k, e] : map_) {
    winners.emplace_back(k, e.loc);
  }
  std::optional<IndexTail> nt;
  if (!order.empty()) {
    const Slot& n = slots_[order.back()];
    nt = IndexTail{max_seq, order.back(), n.segment_id, n.write_offset};
  }
  if (auto st = index_->Commit(winners, {}, nt); !st.ok()) return st;
  stats_.recovered_from_scan = map_.size();
  stats_.rebuilt_index = true;
  next_seq_ = max_seq + kSeqGapOnOpen;
  return absl::OkStatus();
}

void SsdTier::ResumeNewestSegment() {
  int newest = -1;
  for (size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].state == Slot::State::kSealed &&
        (newest < 0 || slots_[i].segment_id > slots_[newest].segment_id))
      newest = static_cast<int>(i);
  // Append after the last valid record of the newest segment instead of wasting it.
  if (newest >= 0 && slots_[newest].write_offset >= kSsdBlock &&
      slots_[newest].write_offset + 2 * kSsdBlock <= opts_.segment_bytes) {
    slots_[newest].state = Slot::State::kActive;
    active_ = newest;
  }
}

absl::StatusOr<std::array<std::byte, kContainerHeaderBytes>> SsdTier::ReadContainerHead(const EntryKey& key) const {
  SsdLocation loc;
  int fd = -1;
  const std::string* path = nullptr;
  {
    std::lock_guard<std::mutex> m(mu_);
    auto it = map_.find(key);
    if (it == map_.end()) return absl::NotFoundError("ssd: miss");
    loc = it->second.loc;
    const Slot& s = slots_[loc.slot];
    if (s.state == Slot::State::kFailed || s.segment_id != loc.segment_id || s.fd < 0)
      return absl::NotFoundError("ssd: segment gone");
    fd = s.fd;
    path = &s.path;
  }
  // The slot may be reused meanwhile: the record header check below then fails.
  AlignedBuffer buf(2 * kSsdBlock);
  IoRequest r{IoOp::kRead, fd, buf.data(), static_cast<uint32_t>(2 * kSsdBlock), loc.offset, -1, path};
  auto n = ring_->RunSync(IoRing::Lane::kRead, r);
  if (!n.ok()) return n.status();
  if (*n < static_cast<int>(kSsdBlock + kContainerHeaderBytes)) return absl::DataLossError("ssd: short header read");
  RecordHeader h;
  const bool ok = ValidateRecordHeader(std::span<const std::byte>(buf.data(), kSsdBlock), &h).ok() &&
                  h.ns == key.ns && h.key_lo == key.key.lo && h.key_hi == key.key.hi && h.seq == loc.seq &&
                  h.segment_id == loc.segment_id && h.payload_bytes == loc.payload_bytes &&
                  h.payload_crc32c == loc.payload_crc32c && loc.payload_bytes >= kContainerHeaderBytes;
  if (!ok) return absl::NotFoundError("ssd: record header mismatch");
  std::array<std::byte, kContainerHeaderBytes> head;
  std::memcpy(head.data(), buf.data() + kSsdBlock, head.size());
  return head;
}

}  // namespace adaptcache
