// Where a streamed Put's raw bytes wait until the stream ends: an anonymous mapping of the
// shape's size whose pages are taken only as data arrives, so a header alone costs address
// space, never memory and never an eviction from the pool. Every in-flight Put draws on
// one StagingBudget, charged frame by frame, which bounds the daemon's staging memory.
//
// Thread safety: StagingBudget is thread safe; a StagingBuffer belongs to one RPC.
#pragma once

#include <atomic>
#include <cstdint>

#include "absl/status/statusor.h"
#include "kernels/container.h"

namespace adaptcache::server {

class StagingBudget {
 public:
  explicit StagingBudget(uint64_t capacity) : capacity_(capacity) {}
  // Takes `n` bytes if they fit under the capacity.
  bool TryCharge(uint64_t n);
  void Refund(uint64_t n) { used_.fetch_sub(n, std::memory_order_relaxed); }
  uint64_t used() const { return used_.load(std::memory_order_relaxed); }
  uint64_t capacity() const { return capacity_; }

 private:
  const uint64_t capacity_;
  std::atomic<uint64_t> used_{0};
};

class StagingBuffer {
 public:
  // Maps `size` bytes of address space (no memory yet).
  static absl::StatusOr<StagingBuffer> Create(uint64_t size, StagingBudget* budget);
  StagingBuffer(StagingBuffer&& o) noexcept;
  StagingBuffer& operator=(StagingBuffer&&) = delete;
  StagingBuffer(const StagingBuffer&) = delete;
  ~StagingBuffer();

  // Appends `n` bytes; ResourceExhausted when the budget is spent, InvalidArgument past
  // the end. Nothing is appended on error.
  absl::Status Append(const void* data, uint64_t n);
  uint64_t size() const { return used_; }
  uint64_t capacity() const { return capacity_; }
  ConstByteSpan bytes() const { return {base_, used_}; }

 private:
  StagingBuffer(std::byte* base, uint64_t capacity, StagingBudget* budget)
      : base_(base), capacity_(capacity), budget_(budget) {}
  std::byte* base_ = nullptr;
  uint64_t capacity_ = 0;
  uint64_t used_ = 0;
  StagingBudget* budget_ = nullptr;
};

}  // namespace adaptcache::server
