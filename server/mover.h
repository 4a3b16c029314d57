// The mover: carries out a placement plan's moves (policy/types.h) through the tier
// manager (storage/tier_manager.h), under a CPU budget (raw bytes transcoded per second)
// and an SSD write budget (bytes written per second).
//
// Move by move, in plan order:
//  - the entry must still be where the plan saw it (same tier, same container CRC) and
//    have no DRAM lease; otherwise the move is skipped ("stale" / "leased"). A lease taken
//    after this check is still safe: the tier manager's primitives never move or free
//    leased bytes (Demote/Evict refuse, Replace unlinks and frees at the last release).
//  - a move that adds DRAM bytes runs only if the pool has that much free now, so it
//    never makes the DRAM tier evict (demote) another entry ("no_space").
//  - evict -> TierManager::Evict; demote -> Demote (SSD admission bypassed: the mover
//    has its own budget); promote -> Promote; transcode -> ReadBest, decode, encode
//    with the target config (kernels/codec.h), Replace(if_crc32c = the copy read) into
//    the target tier. A transcode of a lossless copy into a lossy DRAM config keeps the
//    lossless copy on SSD as the master when it is already there (e.g. a durable Put),
//    or when keep_master is set and there is an SSD.
//  - budgets are token buckets that may go into debt by one move: a move runs while
//    its bucket is not negative and is charged afterwards; once a bucket is negative,
//    the rest of the moves needing it are deferred to the next plan ("budget").
//
// Thread safety: one Mover is used by one thread (the policy runner's); the tier
// manager it calls is thread safe, so Put/Get run concurrently and are never blocked
// for longer than the tier manager's short critical sections.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "common/key.h"
#include "common/kv_shape.h"
#include "policy/types.h"
#include "storage/tier_manager.h"

namespace adaptcache::server {

// Token bucket in bytes per second; rate 0 = unlimited. Not thread safe.
class ByteBudget {
 public:
  ByteBudget(uint64_t bytes_per_s, double burst_s = 1.0);
  // Adds the tokens accrued since the last call (capped at rate * burst_s).
  void Refill(std::chrono::steady_clock::time_point now);
  bool Available() const { return rate_ == 0 || tokens_ >= 0; }
  void Charge(uint64_t bytes) {
    if (rate_ != 0) tokens_ -= static_cast<double>(bytes);
  }
  double tokens() const { return tokens_; }

 private:
  uint64_t rate_;
  double cap_;
  double tokens_;
  std::chrono::steady_clock::time_point last_;
};

struct MoverOptions {
  uint64_t cpu_bytes_per_s = 0;  // raw bytes decoded+encoded by transcodes; 0 = unlimited
  uint64_t ssd_bytes_per_s = 0;  // bytes written to SSD by moves; 0 = unlimited
  bool keep_master = false;      // keep a lossless copy on SSD when compressing in DRAM
};

// What the plan's entry indices refer to: the state the plan was computed from.
struct MoveSubject {
  EntryKey key;
  KvShape shape;
  uint32_t crc32c = 0;  // container CRC of the serving copy at snapshot time
};

enum class MoveResult : uint8_t { kDone = 0, kStale, kLeased, kNoSpace, kBudget, kFailed };
inline constexpr int kMoveResults = 6;
const char* MoveResultName(MoveResult r);

struct MoverReport {
  // [MoveKind][MoveResult]
  uint64_t counts[4][kMoveResults] = {};
  uint64_t transcode_raw_bytes = 0;  // raw bytes decoded and re-encoded
  uint64_t ssd_write_bytes = 0;      // bytes the moves wrote to SSD (masters included)
  // (plan entry index, CRC of the installed container) of every transcode done.
  std::vector<std::pair<uint32_t, uint32_t>> installed;
  std::vector<std::string> errors;   // first few failures, for the log
};

class Mover {
 public:
  Mover(TierManager* tm, MoverOptions opts);

  // Executes plan.moves in order (see above). `subjects[i]` is entry i of `in`. Stops
  // early (the rest uncounted) when `stop` becomes true.
  MoverReport Execute(const policy::PolicyInput& in, const policy::PlacementPlan& plan,
                      const std::vector<MoveSubject>& subjects, const std::atomic<bool>& stop);

  // Re-encodes the key's best copy into `config` and installs it in `tier`, keeping
  // the best copy as the SSD master when asked and possible. `expected_crc`, when
  // given, must be the CRC of the copy ReadBest returns (else Aborted, nothing changes).
  // est_quality_loss goes into the new copy's metadata. Adds the work to `report`;
  // `new_crc` (optional) receives the installed container's CRC.
  // allow_master = false keeps a master only where the lossless copy is already on SSD.
  absl::Status Transcode(const EntryKey& key, const std::string& config, Tier tier,
                         float est_quality_loss, std::optional<uint32_t> expected_crc,
                         MoverReport* report, uint32_t* new_crc = nullptr,
                         bool allow_master = true);

  ByteBudget& cpu_budget() { return cpu_; }
  ByteBudget& ssd_budget() { return ssd_; }

 private:
  MoveResult RunOne(const policy::PolicyInput& in, const policy::Move& m,
                    const MoveSubject& subj, MoverReport* report);

  TierManager* const tm_;
  const MoverOptions opts_;
  ByteBudget cpu_;
  ByteBudget ssd_;
};

}  // namespace adaptcache::server
