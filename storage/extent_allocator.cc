#include "storage/extent_allocator.h"

#include <iterator>
#include <string>

#include "absl/strings/str_cat.h"

namespace adaptcache {

ExtentAllocator::ExtentAllocator(uint64_t capacity) : capacity_(capacity & ~(kAlignment - 1)) {
  if (capacity_ > 0) InsertFree(0, capacity_);
}

void ExtentAllocator::InsertFree(uint64_t offset, uint64_t length) {
  by_offset_.emplace(offset, length);
  by_size_.emplace(length, offset);
  free_bytes_ += length;
}

void ExtentAllocator::EraseFree(uint64_t offset, uint64_t length) {
  by_offset_.erase(offset);
  by_size_.erase({length, offset});
  free_bytes_ -= length;
}

absl::StatusOr<uint64_t> ExtentAllocator::Allocate(uint64_t bytes) {
  if (bytes == 0) return absl::InvalidArgumentError("extent allocation of 0 bytes");
  if (bytes > capacity_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("extent of ", bytes, " bytes exceeds the pool capacity of ", capacity_));
  }
  const uint64_t need = AlignUp(bytes);
  // Smallest free extent with length >= need; ties broken by the lowest offset.
  auto it = by_size_.lower_bound({need, 0});
  if (it == by_size_.end()) {
    return absl::ResourceExhaustedError(absl::StrCat("no free extent of ", need, " bytes (free ",
                                                     free_bytes_, ", largest ",
                                                     largest_free_extent(), ")"));
  }
  const auto [len, off] = *it;
  EraseFree(off, len);
  if (len > need) InsertFree(off + need, len - need);
  return off;
}

absl::Status ExtentAllocator::Free(uint64_t offset, uint64_t bytes) {
  if (bytes == 0) return absl::InvalidArgumentError("free of 0 bytes");
  if (offset % kAlignment != 0) {
    return absl::InvalidArgumentError(absl::StrCat("free of unaligned offset ", offset));
  }
  if (offset >= capacity_ || bytes > capacity_ - offset || AlignUp(bytes) > capacity_ - offset) {
    return absl::InvalidArgumentError(
        absl::StrCat("free of [", offset, ", +", bytes, ") outside the pool of ", capacity_));
  }
  uint64_t start = offset;
  uint64_t len = AlignUp(bytes);
  const uint64_t end = start + len;

  // The first free extent starting at or after `offset`, and the one before it.
  auto next = by_offset_.lower_bound(offset);
  auto prev = next == by_offset_.begin() ? by_offset_.end() : std::prev(next);
  if (next != by_offset_.end() && next->first < end) {
    return absl::InvalidArgumentError(
        absl::StrCat("free of [", offset, ", +", len, ") overlaps free space (double free?)"));
  }
  if (prev != by_offset_.end() && prev->first + prev->second > start) {
    return absl::InvalidArgumentError(
        absl::StrCat("free of [", offset, ", +", len, ") overlaps free space (double free?)"));
  }
  // Coalesce with the neighbours that touch the freed range. btree erase invalidates
  // iterators, so read both neighbours before erasing either.
  const bool merge_next = next != by_offset_.end() && next->first == end;
  const bool merge_prev = prev != by_offset_.end() && prev->first + prev->second == start;
  const uint64_t n_off = merge_next ? next->first : 0, n_len = merge_next ? next->second : 0;
  const uint64_t p_off = merge_prev ? prev->first : 0, p_len = merge_prev ? prev->second : 0;
  if (merge_next) {
    EraseFree(n_off, n_len);
    len += n_len;
  }
  if (merge_prev) {
    EraseFree(p_off, p_len);
    start = p_off;
    len += p_len;
  }
  InsertFree(start, len);
  return absl::OkStatus();
}

uint64_t ExtentAllocator::largest_free_extent() const {
  return by_size_.empty() ? 0 : by_size_.rbegin()->first;
}

ExtentAllocatorStats ExtentAllocator::Stats() const {
  ExtentAllocatorStats s;
  s.capacity_bytes = capacity_;
  s.free_bytes = free_bytes_;
  s.largest_free_extent = largest_free_extent();
  s.free_extents = by_offset_.size();
  s.fragmentation = free_bytes_ == 0 ? 0.0
                                     : 1.0 - static_cast<double>(s.largest_free_extent) /
                                                 static_cast<double>(free_bytes_);
  return s;
}

}  // namespace adaptcache
