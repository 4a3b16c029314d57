#include "storage/io_uring_file.h"

#include <sys/mman.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <future>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "storage/ssd_format.h"

namespace adaptcache {

struct IoRing::Pending {
  Callback cb;
  Lane lane = Lane::kRead;
  bool has_override = false;
  int override_res = 0;
  bool flip = false;
  uint64_t flip_bit = 0;
  std::byte* buf = nullptr;
  uint32_t len1 = 0;
  std::byte* buf2 = nullptr;
  iovec iov[2];
};

IoRing::IoRing(const IoRingOptions& opts) : opts_(opts) {}

absl::StatusOr<std::unique_ptr<IoRing>> IoRing::Create(const IoRingOptions& opts) {
  if (opts.buffer_bytes == 0 || opts.buffer_bytes % kSsdBlock != 0 || opts.buffer_bytes > (1u << 30))
    return absl::InvalidArgumentError("IoRing: buffer_bytes must be a non-zero multiple of 4 KiB, <= 1 GiB");
  if (opts.write_slots == 0 || opts.read_slots == 0 || opts.write_buffers == 0)
    return absl::InvalidArgumentError("IoRing: lanes and write buffers must be non-zero");
  std::unique_ptr<IoRing> r(new IoRing(opts));
  if (auto st = r->Init(); !st.ok()) return st;
  return r;
}

absl::Status IoRing::Init() {
  const uint32_t entries = opts_.write_slots + opts_.read_slots + 1;  // +1: shutdown NOP
  io_uring_params p{};
  p.flags = IORING_SETUP_CQSIZE;
  p.cq_entries = 2 * entries;
  int rc = io_uring_queue_init_params(entries, &ring_, &p);
  if (rc < 0) return absl::UnavailableError(absl::StrCat("io_uring_queue_init: ", std::strerror(-rc)));
  ring_ready_ = true;

  const uint32_t nbuf = opts_.write_buffers + opts_.read_buffers;
  pool_bytes_ = uint64_t{nbuf} * opts_.buffer_bytes;
  void* mem = ::mmap(nullptr, pool_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return absl::ResourceExhaustedError("IoRing: cannot map staging buffers");
  pool_ = static_cast<std::byte*>(mem);
  for (uint32_t i = 0; i < opts_.write_buffers; ++i) free_write_.push_back(static_cast<int>(i));
  for (uint32_t i = opts_.write_buffers; i < nbuf; ++i) free_read_.push_back(static_cast<int>(i));
  if (opts_.register_buffers) {
    std::vector<iovec> iov(nbuf);
    for (uint32_t i = 0; i < nbuf; ++i) iov[i] = {pool_ + uint64_t{i} * opts_.buffer_bytes, opts_.buffer_bytes};
    rc = io_uring_register_buffers(&ring_, iov.data(), nbuf);
    if (rc == 0) {
      registered_ = true;
    } else {
      spdlog::warn("io_uring: buffer registration refused ({}); using unregistered I/O", std::strerror(-rc));
    }
  }
  completion_thread_ = std::thread([this] { CompletionLoop(); });
  return absl::OkStatus();
}

IoRing::~IoRing() {
  if (completion_thread_.joinable()) {
    {
      std::unique_lock<std::mutex> l(submit_mu_);
      drained_cv_.wait(l, [&] { return inflight_[0] + inflight_[1] == 0; });
      stopping_ = true;
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      if (sqe) {
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data(sqe, nullptr);
        io_uring_submit(&ring_);
      }
    }
    completion_thread_.join();
  }
  if (ring_ready_) io_uring_queue_exit(&ring_);
  if (pool_) ::munmap(pool_, pool_bytes_);
}

absl::Status IoRing::Submit(Lane lane, std::span<const IoRequest> reqs, std::vector<Callback> callbacks) {
  if (reqs.size() != callbacks.size()) return absl::InvalidArgumentError("IoRing::Submit: callback count");
  if (reqs.empty()) return absl::OkStatus();
  const int li = static_cast<int>(lane);
  std::lock_guard<std::mutex> l(submit_mu_);
  if (stopping_) return absl::UnavailableError("IoRing is shutting down");
  if (inflight_[li] + reqs.size() > lane_depth(lane))
    return absl::ResourceExhaustedError(absl::StrCat("I/O queue full (", lane == Lane::kWrite ? "write" : "read",
                                                     " lane depth ", lane_depth(lane), ")"));
  static const std::string kNoPath;
  for (size_t i = 0; i < reqs.size(); ++i) {
    const IoRequest& r = reqs[i];
    auto* p = new Pending{std::move(callbacks[i]), lane};
    p->buf = r.buf;
    p->len1 = r.len;
    p->buf2 = r.buf2;
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);  // cannot fail: lanes bound the SQ
    FaultDecision fd;
    if (opts_.faults) fd = opts_.faults->Decide(r.op, r.path ? *r.path : kNoPath);
    uint32_t len = r.len;
    bool nop = false;
    if (fd.fire) {
      switch (fd.kind) {
        case FaultRule::Kind::kError:
          nop = true;
          p->has_override = true;
          p->override_res = -fd.error;
          break;
        case FaultRule::Kind::kShortWrite:
          if (r.op == IoOp::kWrite) {
            len = static_cast<uint32_t>((r.len / 2) / kSsdBlock * kSsdBlock);
            if (len == 0) {
              nop = true;
              p->has_override = true;
              p->override_res = 0;
            }
          }
          break;
        case FaultRule::Kind::kTornWrite:
          if (r.op == IoOp::kWrite) {
            const uint32_t blocks = static_cast<uint32_t>(r.len / kSsdBlock);
            len = static_cast<uint32_t>(std::min<uint64_t>(fd.blocks, blocks ? blocks - 1 : 0) * kSsdBlock);
            p->has_override = true;
            p->override_res = static_cast<int>(r.len);  // the lie: full success
            nop = len == 0;
          }
          break;
        case FaultRule::Kind::kFlipBit:
          if (r.op == IoOp::kRead) {
            p->flip = true;
            p->flip_bit = fd.bit;
          }
          break;
      }
    }
    if (nop) {
      io_uring_prep_nop(sqe);
    } else if (r.op == IoOp::kFsync) {
      io_uring_prep_fsync(sqe, r.fd, IORING_FSYNC_DATASYNC);
    } else if (r.op == IoOp::kWrite) {
      if (registered_ && r.buf_index >= 0)
        io_uring_prep_write_fixed(sqe, r.fd, r.buf, len, r.offset, r.buf_index);
      else
        io_uring_prep_write(sqe, r.fd, r.buf, len, r.offset);
    } else if (r.buf2 != nullptr) {
      p->iov[0] = {r.buf, r.len};
      p->iov[1] = {r.buf2, r.len2};
      io_uring_prep_readv(sqe, r.fd, p->iov, 2, r.offset);
    } else {
      if (registered_ && r.buf_index >= 0)
        io_uring_prep_read_fixed(sqe, r.fd, r.buf, len, r.offset, r.buf_index);
      else
        io_uring_prep_read(sqe, r.fd, r.buf, len, r.offset);
    }
    io_uring_sqe_set_data(sqe, p);
  }
  inflight_[li] += static_cast<uint32_t>(reqs.size());
  int rc = io_uring_submit(&ring_);
  if (rc < 0) {
    // The SQEs stay queued and are flushed by the next submit; treat this as fatal for
    // the caller rather than resubmitting blindly.
    spdlog::error("io_uring_submit: {}", std::strerror(-rc));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> IoRing::RunSync(Lane lane, const IoRequest& req) {
  std::promise<int> done;
  auto fut = done.get_future();
  std::vector<Callback> cbs;
  cbs.emplace_back([&done](int res) { done.set_value(res); });
  if (auto st = Submit(lane, std::span<const IoRequest>(&req, 1), std::move(cbs)); !st.ok()) return st;
  return fut.get();
}

void IoRing::Finish(Pending* p, int res) {
  if (p->has_override) res = p->override_res;
  if (p->flip && res > 0) {
    const uint64_t bit = p->flip_bit % (uint64_t(res) * 8);
    if (bit / 8 < p->len1 || p->buf2 == nullptr)
      p->buf[bit / 8] ^= std::byte(1u << (bit % 8));
    else
      p->buf2[bit / 8 - p->len1] ^= std::byte(1u << (bit % 8));
  }
  if (p->cb) p->cb(res);
  const int li = static_cast<int>(p->lane);
  delete p;
  std::lock_guard<std::mutex> l(submit_mu_);
  if (--inflight_[li] == 0 && inflight_[0] + inflight_[1] == 0) drained_cv_.notify_all();
}

void IoRing::CompletionLoop() {
  for (;;) {
    io_uring_cqe* cqe = nullptr;
    int rc = io_uring_wait_cqe(&ring_, &cqe);
    if (rc == -EINTR) continue;
    if (rc < 0) {
      spdlog::error("io_uring_wait_cqe: {}", std::strerror(-rc));
      continue;
    }
    auto* p = static_cast<Pending*>(io_uring_cqe_get_data(cqe));
    const int res = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    if (p == nullptr) return;  // shutdown NOP
    Finish(p, res);
  }
}

IoBuffer IoRing::AcquireWriteBuffer() {
  std::unique_lock<std::mutex> l(buf_mu_);
  buf_cv_.wait(l, [&] { return !free_write_.empty(); });
  const int i = free_write_.back();
  free_write_.pop_back();
  return IoBuffer{pool_ + uint64_t(i) * opts_.buffer_bytes, opts_.buffer_bytes, registered_ ? i : -1, i};
}

std::optional<IoBuffer> IoRing::TryAcquireReadBuffer() {
  std::lock_guard<std::mutex> l(buf_mu_);
  if (free_read_.empty()) return std::nullopt;
  const int i = free_read_.back();
  free_read_.pop_back();
  return IoBuffer{pool_ + uint64_t(i) * opts_.buffer_bytes, opts_.buffer_bytes, registered_ ? i : -1, i};
}

void IoRing::ReleaseBuffer(const IoBuffer& b) {
  if (b.slot < 0) return;
  {
    std::lock_guard<std::mutex> l(buf_mu_);
    if (static_cast<uint32_t>(b.slot) < opts_.write_buffers)
      free_write_.push_back(b.slot);
    else
      free_read_.push_back(b.slot);
  }
  buf_cv_.notify_one();
}

AlignedBuffer::AlignedBuffer(uint64_t bytes) {
  const uint64_t n = RoundUpBlock(bytes ? bytes : 1);
  void* p = nullptr;
  if (posix_memalign(&p, kSsdBlock, n) == 0) {
    data_ = static_cast<std::byte*>(p);
    size_ = n;
  }
}
AlignedBuffer::~AlignedBuffer() { std::free(data_); }
AlignedBuffer::AlignedBuffer(AlignedBuffer&& o) noexcept : data_(o.data_), size_(o.size_) {
  o.data_ = nullptr;
  o.size_ = 0;
}
AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& o) noexcept {
  if (this != &o) {
    std::free(data_);
    data_ = o.data_;
    size_ = o.size_;
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

}  // namespace adaptcache
