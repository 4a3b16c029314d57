// Internal to the policy runner's files (policy_runner*.cc): its metrics, the cycle's
// intermediate state and the constants they share. Not for other users.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "server/policy_runner.h"

namespace adaptcache::server {

// Loss given to configs whose quality is unknown: large enough that no sensible α
// makes them worth choosing over the miss cost, yet finite as PolicyInput requires.
inline constexpr float kUnknownLoss = 1e9f;
inline constexpr uint64_t kUnknownSize = std::numeric_limits<uint64_t>::max();
inline constexpr size_t kMaxPlanConfigs = 64;

inline PolicyRunner::ShapeKey PolicyRunner::ShapeKeyOf(const KvShape& s) {
  return {s.layers, s.tokens, s.kv_heads, s.head_dim, static_cast<uint8_t>(s.dtype)};
}

struct PolicyRunner::Metrics {
  Counter* plans = nullptr;
  Counter* plan_errors = nullptr;
  Histogram* plan_seconds = nullptr;
  Gauge* objective[3] = {};  // total, delay, quality
  Counter* planned[4] = {};
  Counter* moves[4][kMoveResults] = {};
  Counter* estimates = nullptr;
  Counter* estimate_errors = nullptr;
  Counter* transcode_bytes = nullptr;
  Counter* ssd_bytes = nullptr;
  Gauge* entries = nullptr;
  Gauge* pinned = nullptr;
  Gauge* budgets_met = nullptr;
  Counter* put_transcodes[kMoveResults + 1] = {};  // by MoveResult, then "dropped"
  Gauge* put_rules = nullptr;
};

// One entry of the snapshot the cycle plans over.
struct PolicyRunner::Row {
  EntryKey key;
  Location loc;
  uint32_t leases = 0;
  int config = -1;
  float freq = 0;
  int64_t last_ns = 0;
};

struct PolicyRunner::Snapshot {
  std::vector<Row> rows;
  absl::flat_hash_map<EntryKey, size_t> alive;  // key -> index in rows
  // Bytes the plan does not model (entries left alone, SSD twins of DRAM entries).
  uint64_t excluded_dram = 0, excluded_ssd = 0;
};

// The optimizer's input and what its entry and class indices refer to.
struct PolicyRunner::PlanInput {
  policy::PolicyInput in;
  std::map<ShapeKey, uint32_t> class_of;
  std::vector<MoveSubject> subjects;  // by entry index
};

}  // namespace adaptcache::server
