#include "storage/ssd_admission.h"

#include <algorithm>
#include <chrono>

namespace adaptcache {

TokenBucket::TokenBucket(uint64_t rate, uint64_t burst, NanoClock clock)
    : rate_(rate),
      burst_(static_cast<double>(burst ? burst : rate)),
      clock_(clock ? std::move(clock) : SteadyNanoClock()),
      tokens_(burst_),
      last_ns_(clock_()) {}

void TokenBucket::RefillLocked() {
  const int64_t now = clock_();
  if (now > last_ns_) {
    tokens_ = std::min(burst_, tokens_ + static_cast<double>(now - last_ns_) * 1e-9 * static_cast<double>(rate_));
    last_ns_ = now;
  }
}

bool TokenBucket::TryConsume(uint64_t bytes) {
  if (rate_ == 0) return true;
  std::lock_guard<std::mutex> l(mu_);
  RefillLocked();
  const double need = static_cast<double>(bytes);
  // Oversized requests pass only from a full bucket, so they cannot starve.
  if (tokens_ >= need || (need > burst_ && tokens_ >= burst_)) {
    tokens_ -= need;
    return true;
  }
  return false;
}

void TokenBucket::ForceConsume(uint64_t bytes) {
  if (rate_ == 0) return;
  std::lock_guard<std::mutex> l(mu_);
  RefillLocked();
  tokens_ -= static_cast<double>(bytes);
}

double TokenBucket::tokens() {
  std::lock_guard<std::mutex> l(mu_);
  RefillLocked();
  return tokens_;
}

namespace {
// Four independent row hashes from the 192-bit entry key (splitmix64 finalizer).
inline uint64_t Mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}
inline uint64_t RowHash(const EntryKey& k, int row) {
  return Mix(k.key.lo ^ Mix(k.key.hi + 0x9e3779b97f4a7c15ull * (row + 1)) ^ Mix(k.ns + row));
}
}  // namespace

FrequencySketch::FrequencySketch(uint32_t width) : counters_(4ull * std::max(width, 16u)), width_(std::max(width, 16u)) {}

uint32_t FrequencySketch::Increment(const EntryKey& key) {
  std::lock_guard<std::mutex> l(mu_);
  uint32_t est = UINT32_MAX;
  for (int r = 0; r < 4; ++r) {
    uint8_t& c = counters_[uint64_t(r) * width_ + RowHash(key, r) % width_];
    if (c < 255) ++c;
    est = std::min<uint32_t>(est, c);
  }
  if (++increments_ >= uint64_t{width_} * 8) Age();
  return est;
}

uint32_t FrequencySketch::Estimate(const EntryKey& key) const {
  std::lock_guard<std::mutex> l(mu_);
  uint32_t est = UINT32_MAX;
  for (int r = 0; r < 4; ++r) est = std::min<uint32_t>(est, counters_[uint64_t(r) * width_ + RowHash(key, r) % width_]);
  return est;
}

void FrequencySketch::Age() {
  for (uint8_t& c : counters_) c >>= 1;
  increments_ = 0;
  ++agings_;
}

AdmissionController::AdmissionController(const AdmissionOptions& opts, NanoClock clock)
    : opts_(opts),
      sketch_(opts.sketch_width),
      bucket_(opts.write_budget_bytes_per_s, opts.write_budget_burst_bytes, std::move(clock)) {}

void AdmissionController::NoteAccess(const EntryKey& key) {
  if (opts_.admit_after_accesses > 1) sketch_.Increment(key);
}

AdmissionController::Verdict AdmissionController::Decide(const EntryKey& key, uint64_t bytes) {
  if (opts_.admit_after_accesses > 1 && sketch_.Increment(key) < opts_.admit_after_accesses)
    return Verdict::kTooCold;
  return bucket_.TryConsume(bytes) ? Verdict::kAdmit : Verdict::kOverBudget;
}

}  // namespace adaptcache
