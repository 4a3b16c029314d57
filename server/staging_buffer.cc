#include "server/staging_buffer.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace adaptcache::server {

bool StagingBudget::TryCharge(uint64_t n) {
  uint64_t cur = used_.load(std::memory_order_relaxed);
  do {
    if (n > capacity_ || cur > capacity_ - n) return false;
  } while (!used_.compare_exchange_weak(cur, cur + n, std::memory_order_relaxed));
  return true;
}

absl::Status StagingBudget::CheckFits(uint64_t n) const {
  if (n <= capacity_) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      absl::StrCat("entry of ", n, " bytes exceeds the staging budget (", capacity_, " bytes)"));
}

absl::StatusOr<StagingBuffer> StagingBuffer::Create(uint64_t size, StagingBudget* budget) {
  if (size == 0) return absl::InvalidArgumentError("empty staging buffer");
  if (auto st = budget->CheckFits(size); !st.ok()) return st;
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
  if (p == MAP_FAILED) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot map ", size, " bytes of staging: ", std::strerror(errno)));
  }
  // Large Puts fault in fewer pages with huge pages; best effort.
  if (size >= (2u << 20)) (void)::madvise(p, size, MADV_HUGEPAGE);
  return StagingBuffer(static_cast<std::byte*>(p), size, budget);
}

StagingBuffer::StagingBuffer(StagingBuffer&& o) noexcept
    : base_(o.base_), capacity_(o.capacity_), used_(o.used_), budget_(o.budget_) {
  o.base_ = nullptr;
  o.used_ = 0;
}

StagingBuffer::~StagingBuffer() {
  if (base_ == nullptr) return;
  ::munmap(base_, capacity_);
  budget_->Refund(used_);
}

absl::Status StagingBuffer::Append(const void* data, uint64_t n) {
  if (n > capacity_ - used_) {
    return absl::InvalidArgumentError(absl::StrCat("stream carries more than the shape's ",
                                                   capacity_, " bytes"));
  }
  if (!budget_->TryCharge(n)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "staging budget of ", budget_->capacity(), " bytes is taken by Puts in flight"));
  }
  std::memcpy(base_ + used_, data, n);
  used_ += n;
  return absl::OkStatus();
}

absl::StatusOr<PoolContainerSink> PoolContainerSink::Start(TierManager* tm, StagingBudget* budget,
                                                           const KvShape& shape) {
  const uint64_t total = RawContainerBytes(shape);
  if (!budget->TryCharge(total)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "staging budget of ", budget->capacity(), " bytes cannot take an entry of ", total, " bytes now"));
  }
  auto e = tm->Allocate(total, /*evict=*/false);  // an unfinished Put evicts nothing
  if (!e.ok()) {
    budget->Refund(total);
    return e.status();
  }
  auto b = RawContainerBuilder::Start(shape, tm->Bytes(*e).first(total));
  if (!b.ok()) {
    tm->Free(*e);
    budget->Refund(total);
    return b.status();
  }
  return PoolContainerSink(tm, budget, *e, total, std::move(*b));
}

PoolContainerSink::PoolContainerSink(PoolContainerSink&& o) noexcept
    : tm_(o.tm_), budget_(o.budget_), extent_(o.extent_), charged_(o.charged_), builder_(std::move(o.builder_)) {
  o.tm_ = nullptr;
  o.charged_ = 0;
}

PoolContainerSink::~PoolContainerSink() {
  if (tm_ != nullptr) tm_->Free(extent_);
  if (charged_ != 0) budget_->Refund(charged_);
}

absl::StatusOr<std::pair<Extent, uint32_t>> PoolContainerSink::Seal() {
  auto crc = builder_.Seal();
  if (!crc.ok()) return crc.status();
  return std::make_pair(Extent{extent_.offset, builder_.total_bytes()}, *crc);
}

}  // namespace adaptcache::server
