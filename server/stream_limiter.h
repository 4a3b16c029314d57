// Bounds the daemon's streaming RPCs (Put, Get). They run on gRPC's callback API, so a
// stream whose peer stops sending or reading holds no thread, but it still holds memory
// (staging, a frame in flight, a lease) and would hold it forever.
//
//   - At most `max_streams` streams run at once; the rest are refused at once with
//     RESOURCE_EXHAUSTED and a retry hint. When all are taken, a new stream preempts the
//     one idle longest if it has been idle for `preempt_idle`: stalled clients yield to
//     moving ones.
//   - A watchdog thread cancels a stream that made no progress for `idle_timeout` or ran
//     longer than `max_age` (TryCancel fails its pending read or write).
//   - A stream waiting on the daemon's own work (queued for or running on a work pool) is
//     busy, not idle: neither the idle timeout nor preemption touches it.
//
// Thread safety: every method may be called from any thread. A Ticket belongs to one
// RPC, and must be destroyed before its server context.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <thread>

#include "grpcpp/server_context.h"
#include "grpcpp/support/status.h"

namespace adaptcache::server {

// Trailing-metadata key of an overload refusal: milliseconds the client should wait.
inline constexpr char kRetryAfterMetadata[] = "retry-after-ms";

// RESOURCE_EXHAUSTED with the retry hint in its message and in trailing metadata.
grpc::Status Overloaded(grpc::ServerContextBase* ctx, const std::string& why, uint32_t retry_after_ms);

struct StreamLimits {
  uint32_t max_streams = 1024;
  std::chrono::milliseconds idle_timeout{10'000};  // 0 = none
  std::chrono::milliseconds max_age{600'000};      // 0 = none
  std::chrono::milliseconds preempt_idle{1'000};   // 0 = never preempt
  uint32_t retry_after_ms = 50;
  // Cancelled streams not yet finished that may overlap new ones.
  uint32_t max_cancelling = 16;
};

class StreamLimiter {
 private:
  struct Slot {
    grpc::ServerContextBase* ctx;
    std::chrono::steady_clock::time_point start;
    std::atomic<int64_t> last_progress_ns;
    std::atomic<bool> busy{false};
    bool cancelled = false;
    const char* reason = nullptr;
  };

 public:
  class Ticket {
   public:
    Ticket() = default;
    Ticket(Ticket&& o) noexcept : owner_(o.owner_), slot_(o.slot_) { o.owner_ = nullptr; }
    Ticket& operator=(Ticket&& o) noexcept;
    ~Ticket();
    bool admitted() const { return owner_ != nullptr; }
    // Marks progress (a frame read or written); keeps the idle timeout away.
    void Touch();
    // Marks the stream as waiting on the daemon (true) or on its peer again (false).
    void SetBusy(bool busy);
    // Why the watchdog cancelled this stream, or null if it did not.
    const char* cancel_reason() const;

   private:
    friend class StreamLimiter;
    Ticket(StreamLimiter* owner, std::list<Slot>::iterator slot) : owner_(owner), slot_(slot) {}
    StreamLimiter* owner_ = nullptr;
    std::list<Slot>::iterator slot_;
  };

  explicit StreamLimiter(const StreamLimits& limits);
  ~StreamLimiter();
  StreamLimiter(const StreamLimiter&) = delete;
  StreamLimiter& operator=(const StreamLimiter&) = delete;

  // Admits a stream, or returns a ticket that is not admitted; then `refusal` is set.
  Ticket Admit(grpc::ServerContextBase* ctx, grpc::Status* refusal);

  uint32_t active() const;
  uint64_t refused() const { return refused_.load(std::memory_order_relaxed); }
  uint64_t cancelled_idle() const { return cancelled_idle_.load(std::memory_order_relaxed); }
  uint64_t cancelled_age() const { return cancelled_age_.load(std::memory_order_relaxed); }
  uint64_t preempted() const { return preempted_.load(std::memory_order_relaxed); }
  const StreamLimits& limits() const { return limits_; }

 private:
  void Watch();
  void Leave(std::list<Slot>::iterator slot);
  void CancelLocked(Slot* s, const char* reason);

  const StreamLimits limits_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::list<Slot> slots_;
  uint32_t active_ = 0;
  uint32_t cancelling_ = 0;  // slots cancelled whose tickets have not left
  bool stop_ = false;
  std::atomic<uint64_t> refused_{0}, cancelled_idle_{0}, cancelled_age_{0}, preempted_{0};
  std::thread watchdog_;
};

}  // namespace adaptcache::server
