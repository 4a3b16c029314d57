// The daemon's metrics (names documented in docs/operations.md), registered on a
// MetricsRegistry. The request path calls Record()/CountLookup() etc., which are a few
// relaxed atomic adds on cached children; pool gauges are refreshed from the DRAM tier
// by a collector at scrape time.
//
// Thread safety: all methods may be called concurrently.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <set>
#include <string>

#include <grpcpp/support/status.h>

#include "absl/status/statusor.h"
#include "server/metrics.h"
#include "storage/tier_manager.h"

namespace adaptcache::server {

enum class Op : int {
  kLookup = 0,
  kPut,
  kReservePut,
  kCommitPut,
  kGet,
  kRelease,
  kDelete,
  kPoolInfo,
  kStats,
  kHealth,
  kLeasePrefix,
  kCount
};
const char* OpName(Op op);
const char* GrpcCodeName(grpc::StatusCode code);

class ServerMetrics {
 public:
  // Registers every family; fails only on a programming error (bad name).
  static absl::StatusOr<std::unique_ptr<ServerMetrics>> Create(MetricsRegistry* registry,
                                                               TierManager* tm);

  void Record(Op op, grpc::StatusCode code, double seconds);
  void CountLookup(bool hit) { (hit ? key_hits_ : key_misses_)->Inc(); }
  void CountGet(bool hit) { (hit ? get_hits_ : get_misses_)->Inc(); }
  void CountPut(uint64_t raw_bytes, uint64_t stored_bytes) {
    put_raw_bytes_->Inc(raw_bytes);
    put_stored_bytes_->Inc(stored_bytes);
  }
  void CountGetBytes(uint64_t bytes, bool shm) { (shm ? get_shm_bytes_ : get_stream_bytes_)->Inc(bytes); }
  void CountDataLoss() { data_loss_->Inc(); }
  // A call refused for its identity (Unauthenticated) or its namespace (PermissionDenied).
  void CountAuthRefusal(bool permission) { (permission ? denied_ : unauthenticated_)->Inc(); }
  void SetInflightPuts(int64_t n) { inflight_puts_->Set(static_cast<double>(n)); }

  // Totals for the Stats RPC.
  uint64_t requests(Op op) const;
  uint64_t lookups() const { return key_hits_->Value() + key_misses_->Value() + gets(); }
  uint64_t gets() const { return get_hits_->Value() + get_misses_->Value(); }
  uint64_t hits() const { return key_hits_->Value() + get_hits_->Value(); }
  uint64_t misses() const { return key_misses_->Value() + get_misses_->Value(); }
  uint64_t puts_ok() const;

  // Entries and container bytes per codec config, from a walk of the DRAM index.
  struct CodecUsage {
    uint64_t entries = 0;
    uint64_t bytes = 0;
  };
  std::map<std::string, CodecUsage> UsageByCodec() const;

 private:
  ServerMetrics() = default;
  void Collect();

  static constexpr int kCodes = 17;
  MetricsRegistry* registry_ = nullptr;
  TierManager* tm_ = nullptr;
  Family<Counter>* requests_ = nullptr;
  std::array<std::array<std::atomic<Counter*>, kCodes>, static_cast<int>(Op::kCount)> by_code_{};
  std::array<Histogram*, static_cast<int>(Op::kCount)> latency_{};
  Counter* key_hits_ = nullptr;
  Counter* key_misses_ = nullptr;
  Counter* get_hits_ = nullptr;
  Counter* get_misses_ = nullptr;
  Counter* put_raw_bytes_ = nullptr;
  Counter* put_stored_bytes_ = nullptr;
  Counter* get_shm_bytes_ = nullptr;
  Counter* get_stream_bytes_ = nullptr;
  Counter* data_loss_ = nullptr;
  Counter* unauthenticated_ = nullptr;
  Counter* denied_ = nullptr;
  Gauge* inflight_puts_ = nullptr;
  // Refreshed by Collect().
  Family<Gauge>* entries_by_codec_ = nullptr;
  Family<Gauge>* bytes_by_codec_ = nullptr;
  Gauge* capacity_ = nullptr;
  Gauge* used_ = nullptr;
  Gauge* entry_bytes_ = nullptr;
  Gauge* entries_ = nullptr;
  Gauge* leases_ = nullptr;
  Gauge* reservations_ = nullptr;
  Gauge* reserved_bytes_ = nullptr;
  Gauge* largest_free_ = nullptr;
  Gauge* fragmentation_ = nullptr;
  Counter* evictions_ = nullptr;
  Counter* expired_leases_ = nullptr;
  Counter* expired_reservations_ = nullptr;
  Counter* alloc_failures_ = nullptr;
  Gauge* mlocked_ = nullptr;
  Gauge* huge_pages_ = nullptr;
  Gauge* uptime_ = nullptr;
  std::set<std::string> codecs_seen_;  // Collect() only (serialized by the registry)
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

// Times one RPC and records it on Finish().
class RequestScope {
 public:
  RequestScope(ServerMetrics* m, Op op)
      : metrics_(m), op_(op), start_(std::chrono::steady_clock::now()) {}
  grpc::Status Finish(grpc::Status st) {
    std::chrono::duration<double> d = std::chrono::steady_clock::now() - start_;
    metrics_->Record(op_, st.error_code(), d.count());
    return st;
  }

 private:
  ServerMetrics* metrics_;
  Op op_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace adaptcache::server
