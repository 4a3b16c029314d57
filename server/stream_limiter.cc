#include "server/stream_limiter.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/clock.h"

namespace adaptcache::server {

grpc::Status Overloaded(grpc::ServerContextBase* ctx, const std::string& why, uint32_t retry_after_ms) {
  if (ctx != nullptr) ctx->AddTrailingMetadata(kRetryAfterMetadata, std::to_string(retry_after_ms));
  return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                      absl::StrCat(why, "; retry in ", retry_after_ms, " ms"));
}

StreamLimiter::StreamLimiter(const StreamLimits& limits) : limits_(limits) {
  if (limits_.idle_timeout.count() > 0 || limits_.max_age.count() > 0) {
    watchdog_ = std::thread([this] { Watch(); });
  }
}

StreamLimiter::~StreamLimiter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
}

StreamLimiter::Ticket StreamLimiter::Admit(grpc::ServerContextBase* ctx, grpc::Status* refusal) {
  std::lock_guard<std::mutex> lock(mu_);
  if (active_ - cancelling_ >= limits_.max_streams && limits_.preempt_idle.count() > 0) {
    // Full: the stream idle longest yields its slot if it has been idle long enough, so
    // streams that stopped moving cannot keep out ones that would.
    Slot* idlest = nullptr;
    for (Slot& s : slots_) {
      if (!s.cancelled && !s.busy.load(std::memory_order_relaxed) &&
          (idlest == nullptr || s.last_progress_ns.load(std::memory_order_relaxed) <
                                    idlest->last_progress_ns.load(std::memory_order_relaxed))) {
        idlest = &s;
      }
    }
    if (idlest != nullptr &&
        std::chrono::nanoseconds(SteadyNowNs() - idlest->last_progress_ns.load(std::memory_order_relaxed)) >=
            limits_.preempt_idle) {
      CancelLocked(idlest, "preempted while idle");
      preempted_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  // Cancelled streams hold their memory until they finish (promptly); `max_cancelling`
  // of them may overlap new ones.
  if (active_ - cancelling_ >= limits_.max_streams || cancelling_ > limits_.max_cancelling) {
    refused_.fetch_add(1, std::memory_order_relaxed);
    *refusal = Overloaded(ctx, absl::StrCat(limits_.max_streams, " streams in flight"),
                          limits_.retry_after_ms);
    return Ticket();
  }
  ++active_;
  auto it = slots_.emplace(slots_.end());
  it->ctx = ctx;
  it->start = std::chrono::steady_clock::now();
  it->last_progress_ns.store(SteadyNowNs(), std::memory_order_relaxed);
  return Ticket(this, it);
}

void StreamLimiter::CancelLocked(Slot* s, const char* reason) {
  s->cancelled = true;
  s->reason = reason;
  ++cancelling_;
  // Under mu_: the RPC cannot end and free its context before its ticket leaves.
  s->ctx->TryCancel();
}

uint32_t StreamLimiter::active() const {
  std::lock_guard<std::mutex> lock(mu_);
  return active_;
}

void StreamLimiter::Leave(std::list<Slot>::iterator slot) {
  std::lock_guard<std::mutex> lock(mu_);
  if (slot->cancelled) --cancelling_;
  slots_.erase(slot);
  --active_;
}

StreamLimiter::Ticket::~Ticket() {
  if (owner_ != nullptr) owner_->Leave(slot_);
}

StreamLimiter::Ticket& StreamLimiter::Ticket::operator=(Ticket&& o) noexcept {
  if (this != &o) {
    if (owner_ != nullptr) owner_->Leave(slot_);
    owner_ = o.owner_;
    slot_ = o.slot_;
    o.owner_ = nullptr;
  }
  return *this;
}

void StreamLimiter::Ticket::Touch() {
  if (owner_ != nullptr) slot_->last_progress_ns.store(SteadyNowNs(), std::memory_order_relaxed);
}

void StreamLimiter::Ticket::SetBusy(bool busy) {
  if (owner_ == nullptr) return;
  slot_->busy.store(busy, std::memory_order_relaxed);
  Touch();  // the idle time of a stream coming back from the daemon starts now
}

const char* StreamLimiter::Ticket::cancel_reason() const {
  if (owner_ == nullptr) return nullptr;
  std::lock_guard<std::mutex> lock(owner_->mu_);
  return slot_->reason;
}

void StreamLimiter::Watch() {
  const auto idle = limits_.idle_timeout;
  const auto age = limits_.max_age;
  auto tick = std::chrono::milliseconds(250);
  if (idle.count() > 0) tick = std::min(tick, std::max(std::chrono::milliseconds(10), idle / 4));
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, tick);
    const auto now = std::chrono::steady_clock::now();
    const int64_t now_ns = SteadyNowNs();
    for (Slot& s : slots_) {
      if (s.cancelled) continue;
      const auto since = std::chrono::nanoseconds(now_ns - s.last_progress_ns.load(std::memory_order_relaxed));
      if (idle.count() > 0 && since > idle && !s.busy.load(std::memory_order_relaxed)) {
        CancelLocked(&s, "idle");
        cancelled_idle_.fetch_add(1, std::memory_order_relaxed);
      } else if (age.count() > 0 && now - s.start > age) {
        CancelLocked(&s, "too old");
        cancelled_age_.fetch_add(1, std::memory_order_relaxed);
      }
    }
  }
}

}  // namespace adaptcache::server
