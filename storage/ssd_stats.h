// Counters and latency summaries of the SSD tier. Thread safety: LatencyHistogram is
// lock-free (relaxed atomics); SsdTierStats is a plain snapshot.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

namespace adaptcache {

// Power-of-two buckets over microseconds; percentiles are bucket upper bounds (x2 error).
class LatencyHistogram {
 public:
  static constexpr int kBuckets = 32;
  void Record(uint64_t micros) {
    int b = 0;
    while (b + 1 < kBuckets && (1ull << b) < micros) ++b;
    buckets_[b].fetch_add(1, std::memory_order_relaxed);
  }
  // Upper bound (us) of the bucket holding quantile q in [0,1]; 0 when empty.
  uint64_t Quantile(double q) const {
    uint64_t total = 0;
    std::array<uint64_t, kBuckets> c{};
    for (int i = 0; i < kBuckets; ++i) total += c[i] = buckets_[i].load(std::memory_order_relaxed);
    if (total == 0) return 0;
    const uint64_t target = static_cast<uint64_t>(q * static_cast<double>(total - 1)) + 1;
    uint64_t seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      seen += c[i];
      if (seen >= target) return 1ull << i;
    }
    return 1ull << (kBuckets - 1);
  }
  uint64_t Count() const {
    uint64_t t = 0;
    for (const auto& b : buckets_) t += b.load(std::memory_order_relaxed);
    return t;
  }

 private:
  std::array<std::atomic<uint64_t>, kBuckets> buckets_{};
};

struct SsdTierStats {
  uint64_t entries = 0;
  uint64_t live_payload_bytes = 0;     // container bytes of indexed entries
  uint64_t slots = 0;                  // segment files
  uint64_t slots_in_use = 0;           // holding a segment (active or sealed)
  uint64_t slots_failed = 0;           // out of service after I/O errors
  uint64_t capacity_bytes = 0;         // usable slots x segment_bytes

  uint64_t puts_accepted = 0;          // Put calls queued
  uint64_t puts_committed = 0;         // made durable and indexed
  uint64_t puts_failed = 0;            // completed with an error
  uint64_t rejected_queue_full = 0;
  uint64_t rejected_budget = 0;
  uint64_t rejected_cold = 0;          // admission rule said "not yet"

  uint64_t user_bytes_written = 0;     // container bytes of committed Puts
  uint64_t device_bytes_written = 0;   // everything written to segment files
  uint64_t device_bytes_read = 0;
  double write_amplification = 0;      // device_bytes_written / user_bytes_written

  uint64_t gets = 0;
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t checksum_failures = 0;      // reads or scans whose CRC did not match
  uint64_t io_errors = 0;

  uint64_t segments_reclaimed = 0;
  uint64_t reinserted_entries = 0;
  uint64_t reinserted_bytes = 0;
  uint64_t reinsert_superseded = 0;    // erased or re-put while its copy was written
  uint64_t dropped_on_reclaim = 0;

  uint64_t recovered_from_scan = 0;    // entries the last Open took from the log
  bool rebuilt_index = false;          // last Open rebuilt the whole index
  bool registered_buffers = false;

  uint64_t write_p50_us = 0, write_p99_us = 0;  // Put: queued -> durable and indexed
  uint64_t read_p50_us = 0, read_p99_us = 0;    // Get: call -> verified bytes
};

}  // namespace adaptcache
