// Admission control for the SSD tier: a write budget (token bucket over bytes) and a
// frequency rule ("admit on the N-th access") backed by a small count-min sketch.
//
// The sketch is bounded: `width` 4-way counters of 8 bits, halved every `width * 8`
// increments so old popularity fades (TinyLFU-style aging). Estimates may over-count
// (hash collisions), never under-count between agings.
//
// Time comes from an injectable clock so the logic is tested without sleeping.
// Thread safety: every class here is internally synchronized.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

#include "common/clock.h"
#include "common/key.h"

namespace adaptcache {

class TokenBucket {
 public:
  // rate 0 = unlimited. burst 0 = one second of rate.
  TokenBucket(uint64_t rate_bytes_per_s, uint64_t burst_bytes, NanoClock clock);
  // Takes `bytes` if available now. A request larger than the burst is admitted when the
  // bucket is full (and drives it negative), so large entries are never refused forever.
  bool TryConsume(uint64_t bytes);
  // Takes `bytes` unconditionally (internal rewrites): may go negative, delaying others.
  void ForceConsume(uint64_t bytes);
  double tokens();

 private:
  void RefillLocked();
  std::mutex mu_;
  const uint64_t rate_;
  const double burst_;
  NanoClock clock_;
  double tokens_;
  int64_t last_ns_;
};

class FrequencySketch {
 public:
  explicit FrequencySketch(uint32_t width = 1 << 16);
  // Counts one access; returns the new estimate.
  uint32_t Increment(const EntryKey& key);
  uint32_t Estimate(const EntryKey& key) const;
  uint64_t agings() const { return agings_; }

 private:
  void Age();
  std::vector<uint8_t> counters_;  // 4 rows x width
  uint32_t width_;
  uint64_t increments_ = 0;
  uint64_t agings_ = 0;
  mutable std::mutex mu_;
};

struct AdmissionOptions {
  uint32_t admit_after_accesses = 1;    // 1: admit every write; 2: on the second access ...
  uint32_t sketch_width = 1 << 16;      // counters per row (memory: 4 x width bytes)
  uint64_t write_budget_bytes_per_s = 0;  // 0 = unlimited
  uint64_t write_budget_burst_bytes = 0;  // 0 = one second of budget
};

class AdmissionController {
 public:
  enum class Verdict : uint8_t { kAdmit, kTooCold, kOverBudget };
  AdmissionController(const AdmissionOptions& opts, NanoClock clock);
  // Counts an access to `key` without writing (e.g. a DRAM hit the tier manager saw).
  void NoteAccess(const EntryKey& key);
  // Counts the access, then decides. The budget is charged only when admitted.
  Verdict Decide(const EntryKey& key, uint64_t bytes);
  // Charges internal rewrites (reclaim reinsertion) against the budget without refusing.
  void ChargeInternal(uint64_t bytes) { bucket_.ForceConsume(bytes); }

 private:
  AdmissionOptions opts_;
  FrequencySketch sketch_;
  TokenBucket bucket_;
};

}  // namespace adaptcache
