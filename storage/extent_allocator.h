// A variable-size allocator over the byte range [0, capacity) of the DRAM pool.
//
// Every extent starts on a kAlignment (4 KiB) boundary and occupies its length rounded
// up to kAlignment, so pool buffers can be handed to O_DIRECT I/O without a bounce copy.
// Only free space is tracked: two ordered maps (offset -> length for coalescing, and
// (length, offset) for best fit), so Allocate and Free are O(log n) in the number of
// free extents and make no system call. Best fit picks the smallest free extent that
// fits, lowest offset on ties, and carves the allocation from its start.
//
// Free validates what it can without per-allocation state: alignment, range, and that
// the range overlaps no free extent (which catches double frees). Invalid calls return
// an error and change nothing. Partial frees are allowed (e.g. trimming the tail of an
// allocation), as long as the range is currently allocated.
//
// Thread safety: none; the owner (DramTier) serializes calls.
#pragma once

#include <cstdint>
#include <utility>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace adaptcache {

struct ExtentAllocatorStats {
  uint64_t capacity_bytes = 0;
  uint64_t free_bytes = 0;
  uint64_t largest_free_extent = 0;
  uint64_t free_extents = 0;
  // 1 - largest_free_extent / free_bytes: 0 when all free space is one extent (or none
  // is free), close to 1 when free space is scattered in small holes.
  double fragmentation = 0.0;
};

class ExtentAllocator {
 public:
  static constexpr uint64_t kAlignment = 4096;

  // Rounds `bytes` up to kAlignment. The caller must ensure bytes <= UINT64_MAX - 4095
  // (everything the allocator accepts is <= capacity, so callers check that first).
  static constexpr uint64_t AlignUp(uint64_t bytes) {
    return (bytes + kAlignment - 1) & ~(kAlignment - 1);
  }

  // Manages [0, capacity rounded down to kAlignment); all of it starts free.
  explicit ExtentAllocator(uint64_t capacity);

  // Returns the offset of a free range of AlignUp(bytes) bytes, now allocated.
  // InvalidArgument for bytes == 0; ResourceExhausted if no free extent is large enough
  // (including bytes > capacity).
  absl::StatusOr<uint64_t> Allocate(uint64_t bytes);

  // Returns [offset, offset + AlignUp(bytes)) to the free space, merging it with free
  // neighbours. InvalidArgument (and no change) if bytes == 0, offset is unaligned, the
  // range leaves the pool, or any part of it is already free.
  absl::Status Free(uint64_t offset, uint64_t bytes);

  uint64_t capacity() const { return capacity_; }
  uint64_t free_bytes() const { return free_bytes_; }
  uint64_t used_bytes() const { return capacity_ - free_bytes_; }
  uint64_t largest_free_extent() const;
  uint64_t free_extents() const { return by_offset_.size(); }
  ExtentAllocatorStats Stats() const;

  // Calls fn(offset, length) for every free extent in offset order (tests, debugging).
  template <typename Fn>
  void ForEachFree(Fn&& fn) const {
    for (const auto& [off, len] : by_offset_) fn(off, len);
  }

 private:
  void InsertFree(uint64_t offset, uint64_t length);
  void EraseFree(uint64_t offset, uint64_t length);

  uint64_t capacity_;
  uint64_t free_bytes_ = 0;
  absl::btree_map<uint64_t, uint64_t> by_offset_;           // offset -> length
  absl::btree_set<std::pair<uint64_t, uint64_t>> by_size_;  // (length, offset)
};

}  // namespace adaptcache
