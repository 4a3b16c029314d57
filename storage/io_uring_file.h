// IoRing: one io_uring instance with a completion thread, bounded submission lanes and a
// pool of 4 KiB-aligned staging buffers (registered with the ring when the kernel allows;
// otherwise the same buffers are used with plain read/write operations).
//
// Operations are positional reads/writes on O_DIRECT file descriptors and fdatasync.
// Each op's callback runs on the completion thread with the kernel's result (bytes
// transferred, or -errno); callbacks must be short and must not wait on this ring.
// Submission is bounded per lane: a batch that would exceed its lane's depth is refused
// whole with ResourceExhausted, so a reader flood cannot starve the writer and nothing
// queues without bound. Every op passes through the FaultInjector (if any) first.
//
// Thread safety: all public methods may be called concurrently, except RunSync and
// AcquireWriteBuffer, which must not be called from the completion thread.
#pragma once

#include <liburing.h>

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "storage/fault_injection.h"

namespace adaptcache {

struct IoRingOptions {
  uint32_t write_slots = 64;           // in-flight ops of the write lane
  uint32_t read_slots = 256;           // in-flight ops of the read lane
  uint64_t buffer_bytes = 1ull << 20;  // size of each staging buffer (multiple of 4 KiB)
  uint32_t write_buffers = 32;         // staging buffers for writes
  uint32_t read_buffers = 16;          // staging buffers for small reads
  bool register_buffers = true;        // try io_uring_register_buffers
  std::shared_ptr<FaultInjector> faults;
};

// A staging buffer; index >= 0 when it is registered with the ring.
struct IoBuffer {
  std::byte* data = nullptr;
  uint64_t size = 0;
  int index = -1;
  int slot = -1;  // position in the pool (internal)
};

struct IoRequest {
  IoOp op = IoOp::kRead;
  int fd = -1;
  std::byte* buf = nullptr;  // 4 KiB aligned for O_DIRECT
  uint32_t len = 0;
  uint64_t offset = 0;
  int buf_index = -1;                // registered buffer index, or -1
  const std::string* path = nullptr; // for fault-rule matching and messages
  // Reads only: a second buffer filled after `buf` in the same operation (readv), so a
  // record's header block and payload arrive in one device request.
  std::byte* buf2 = nullptr;
  uint32_t len2 = 0;
};

class IoRing {
 public:
  enum class Lane : uint8_t { kWrite = 0, kRead = 1 };
  using Callback = std::function<void(int res)>;

  static absl::StatusOr<std::unique_ptr<IoRing>> Create(const IoRingOptions& opts);
  ~IoRing();  // waits for in-flight ops, then stops the completion thread
  IoRing(const IoRing&) = delete;
  IoRing& operator=(const IoRing&) = delete;

  // Submits all of `reqs` (callbacks[i] for reqs[i]) or none: ResourceExhausted when the
  // lane lacks room, Internal if the kernel refuses the submission.
  absl::Status Submit(Lane lane, std::span<const IoRequest> reqs, std::vector<Callback> callbacks);
  // Submits one op and waits for it; returns the kernel's result (or the submit error).
  absl::StatusOr<int> RunSync(Lane lane, const IoRequest& req);

  // Write staging buffers: blocks until one is free.
  IoBuffer AcquireWriteBuffer();
  // Read staging buffers: nullopt when none is free (the caller uses its own memory).
  std::optional<IoBuffer> TryAcquireReadBuffer();
  void ReleaseBuffer(const IoBuffer& b);

  bool buffers_registered() const { return registered_; }
  uint64_t buffer_bytes() const { return opts_.buffer_bytes; }
  uint32_t lane_depth(Lane lane) const { return lane == Lane::kWrite ? opts_.write_slots : opts_.read_slots; }

 private:
  struct Pending;
  explicit IoRing(const IoRingOptions& opts);
  absl::Status Init();
  void CompletionLoop();
  void Finish(Pending* p, int res);

  IoRingOptions opts_;
  io_uring ring_{};
  bool ring_ready_ = false;
  bool registered_ = false;
  std::byte* pool_ = nullptr;
  uint64_t pool_bytes_ = 0;

  std::mutex submit_mu_;  // guards the SQ and lane counters
  uint32_t inflight_[2] = {0, 0};
  std::condition_variable drained_cv_;
  bool stopping_ = false;

  std::mutex buf_mu_;
  std::condition_variable buf_cv_;
  std::vector<int> free_write_;
  std::vector<int> free_read_;

  std::thread completion_thread_;
};

// An owned 4 KiB-aligned heap buffer (for reads that do not fit a staging buffer).
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(uint64_t bytes);
  ~AlignedBuffer();
  AlignedBuffer(AlignedBuffer&& o) noexcept;
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept;
  std::byte* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  std::byte* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace adaptcache
