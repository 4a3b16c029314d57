// Where a streamed Put's raw bytes wait until the stream ends: an anonymous mapping of the
// shape's size whose pages are taken only as data arrives, so a header alone costs address
// space, never memory and never an eviction from the pool. Every in-flight Put draws on
// one StagingBudget, charged frame by frame, which bounds the daemon's staging memory.
//
// Thread safety: StagingBudget is thread safe; a StagingBuffer or PoolContainerSink belongs
// to one RPC.
#pragma once

#include <atomic>
#include <cstdint>

#include "absl/status/statusor.h"
#include "kernels/codec.h"
#include "kernels/container.h"
#include "storage/tier_manager.h"

namespace adaptcache::server {

class StagingBudget {
 public:
  explicit StagingBudget(uint64_t capacity) : capacity_(capacity) {}
  // Takes `n` bytes if they fit under the capacity.
  bool TryCharge(uint64_t n);
  void Refund(uint64_t n) { used_.fetch_sub(n, std::memory_order_relaxed); }
  uint64_t used() const { return used_.load(std::memory_order_relaxed); }
  uint64_t capacity() const { return capacity_; }
  // ResourceExhausted when an entry of `n` bytes could never be staged.
  absl::Status CheckFits(uint64_t n) const;

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

// Where a streamed raw Put's bytes go instead: straight into their container in the pool
// (kernels/codec.h RawContainerBuilder), so they are copied once and checksummed once. The
// extent comes from free pool space only (an unfinished Put never evicts) and is charged
// whole to the staging budget when the first data frame arrives (a header alone takes
// nothing), so in-flight Puts hold at most the budget either way. The extent is freed and
// the budget refunded on destruction unless Release()d.
class PoolContainerSink {
 public:
  // ResourceExhausted when the budget cannot take the whole entry now or the pool has no
  // free extent for it (the caller stages instead).
  static absl::StatusOr<PoolContainerSink> Start(TierManager* tm, StagingBudget* budget, const KvShape& shape);
  PoolContainerSink(PoolContainerSink&& o) noexcept;
  PoolContainerSink& operator=(PoolContainerSink&&) = delete;
  PoolContainerSink(const PoolContainerSink&) = delete;
  ~PoolContainerSink();

  // As StagingBuffer::Append.
  absl::Status Append(const void* data, uint64_t n) { return builder_.Append(data, n); }
  uint64_t size() const { return builder_.size(); }
  // Seals the container: its extent (exactly the container) and whole-container CRC32C.
  absl::StatusOr<std::pair<Extent, uint32_t>> Seal();
  // The caller committed the extent: nothing to free (the budget is still refunded).
  void Release() { tm_ = nullptr; }

 private:
  PoolContainerSink(TierManager* tm, StagingBudget* budget, Extent e, uint64_t charged, RawContainerBuilder b)
      : tm_(tm), budget_(budget), extent_(e), charged_(charged), builder_(std::move(b)) {}
  TierManager* tm_;
  StagingBudget* budget_;
  Extent extent_;  // as allocated (what Free takes)
  uint64_t charged_;
  RawContainerBuilder builder_;
};

}  // namespace adaptcache::server
