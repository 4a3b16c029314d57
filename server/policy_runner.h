// The policy runner: the daemon's placement loop (DESIGN.md §7, docs/optimizer.md
// "The mover"). Every `interval` a background thread
//   1. snapshots the entries (TierManager::ForEach + Locate: shape, config, tier, CRC,
//      leases, master copy) and their decayed access frequencies (policy/access_stats,
//      fed by OnAccess() from the request path, server/access_observer.h),
//   2. estimates per-entry, per-config quality losses for entries it has not estimated
//      yet (or whose bytes changed), hottest first, under the CPU budget: the best copy
//      (ReadBest) is decoded and every config of the config space is encoded, decoded
//      and compared with it (kernels/quality_proxy.h), the proxy mapped through the
//      calibration file when configured (policy/quality_model.h). The loss of config c
//      for an entry whose best copy is already lossy (no master) is that copy's own
//      estimate plus the proxy of c relative to it. Measured container sizes per
//      (shape, config) feed the size classes,
//   3. runs the configured policy (adaptive = AdaptiveOptimizer, lru-raw, static:<cfg>,
//      greedy-downgrade) on a PolicyInput whose capacities are fractions of the tiers'
//      (room for Put staging and SSD garbage collection). Entries not yet estimated or
//      under lease are pinned (kept as they are); configs whose loss is unknown for an
//      entry get a prohibitive loss (lossless options only),
//   4. hands the plan to the Mover (server/mover.h), which executes it under the CPU
//      and SSD-write budgets, never on a leased entry and never blocking Put/Get.
// Counters (plans, plan time, objective, moves by kind and result, estimates, bytes)
// are exported through the metrics registry.
//
// Thread safety: OnAccess() and OnPut() may be called from any thread. RunOnce() must
// not run concurrently with itself (the background thread calls it; tests call it
// directly with interval 0). The destructor stops and joins the thread; callers must
// stop request threads that call OnAccess()/OnPut() before destroying the runner.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "common/key.h"
#include "kernels/codec.h"
#include "policy/access_stats.h"
#include "policy/group_capacity.h"
#include "policy/quality_model.h"
#include "policy/types.h"
#include "server/access_observer.h"
#include "server/config.h"
#include "server/metrics.h"
#include "server/mover.h"
#include "storage/tier_manager.h"

namespace adaptcache::server {

struct PolicyRunnerOptions {
  // "adaptive", "lru-raw", "greedy-downgrade" or "static:<config name>".
  std::string policy = "adaptive";
  // The config space; empty = DefaultConfigSpace(). raw is always included, and so is
  // the static policy's config. Configs found on entries are added as seen (<= 64).
  std::vector<std::string> configs;
  policy::QualityBudget budget;      // namespaces without their own budget
  std::map<uint64_t, policy::QualityBudget> ns_budgets;  // by NamespaceId
  std::string calibration_file;      // "" = loss is the proxy itself
  policy::DelayModelOptions delay;
  // Take delay.remote from the remote tier's start-up measurement when it has one.
  bool remote_latency_auto = false;
  bool remote_bandwidth_auto = false;
  std::chrono::milliseconds interval{5000};  // 0 = no thread (call RunOnce)
  double dram_fraction = 0.85;       // of the pool the plan may fill
  double ssd_fraction = 0.9;         // of the SSD capacity the plan may fill
  uint32_t estimates_per_plan = 256; // entries estimated per cycle at most
  bool transcode_puts = true;        // act on OnPut (see RunPutTranscodes)
  size_t put_queue = 4096;           // queued puts at most; more are left to the next plan
  int64_t half_life_ns = 600'000'000'000;
  MoverOptions mover;
  // Tenants' quotas: once per plan, the group (index into group_caps) of each NamespaceId
  // that has one. Each plan is fitted to them (policy/group_capacity.h) before the mover
  // runs it.
  std::function<absl::flat_hash_map<uint64_t, int32_t>()> groups;
  std::vector<policy::GroupCapacity> group_caps;
};

// The runner's options from the daemon config; InvalidArgument on a bad policy name,
// config list or number.
absl::StatusOr<PolicyRunnerOptions> PolicyRunnerOptionsFrom(const ServerConfig& cfg);

// Totals of the last cycle, for tests and the log.
struct CycleReport {
  uint64_t entries = 0;      // in the plan input
  uint64_t pinned = 0;       // leased or not yet estimated (kept as they are)
  uint64_t estimated = 0;    // entries estimated in this cycle
  uint64_t estimate_errors = 0;
  double plan_seconds = 0;
  uint64_t quota_moves = 0;  // placements the tenants' quotas changed
  policy::PlanTotals totals;
  MoverReport moves;
};

class PolicyRunner final : public AccessObserver {
 public:
  // Loads the calibration file, builds the policy, registers metrics (registry may be
  // null), and starts the thread (interval > 0).
  static absl::StatusOr<std::unique_ptr<PolicyRunner>> Create(PolicyRunnerOptions opts,
                                                              TierManager* tm,
                                                              MetricsRegistry* registry);
  ~PolicyRunner() override;
  PolicyRunner(const PolicyRunner&) = delete;
  PolicyRunner& operator=(const PolicyRunner&) = delete;

  // Records one access in the statistics. Cheap: one sharded-map update.
  void OnAccess(const EntryKey& key) override;
  // Queues a raw entry for put transcoding (see RunPutTranscodes). A no-op for other
  // families, with transcode_puts off, or when no plan has given the shape a lossy put
  // config. Cheap: one short mutex section.
  void OnPut(const EntryKey& key, const KvShape& shape, CodecId family) override;

  // One snapshot -> estimate -> plan -> move cycle.
  absl::StatusOr<CycleReport> RunOnce();

  // Put transcoding: transcodes the entries queued by OnPut, in arrival order, into the
  // put config the last plan gave their shape (policy::Policy::PutConfigs), in DRAM,
  // under the mover's rules (still raw in DRAM, same CRC, unleased) and a CPU budget of
  // the same rate as the mover's, kept apart. So a new entry does not sit uncompressed,
  // crowding DRAM, until the next plan. A second background thread runs it as soon as
  // puts are queued, concurrently with the planning thread (a plan's move and a put
  // transcode of the same entry race safely: Replace checks the CRC); with interval 0
  // tests call it. Must not run concurrently with itself. Returns the transcodes done.
  uint64_t RunPutTranscodes();
  void EnqueuePutTranscode(const EntryKey& key, const KvShape& shape);

  policy::AccessStats* access_stats() { return stats_.get(); }
  const std::vector<std::string>& config_names() const { return config_names_; }

 private:
  using ShapeKey = std::tuple<uint32_t, uint32_t, uint32_t, uint32_t, uint8_t>;
  static ShapeKey ShapeKeyOf(const KvShape& s);
  struct Estimate {
    std::vector<float> qloss;     // by config index; NaN = not evaluated / not applicable
    std::vector<uint32_t> crcs;   // container CRCs this estimate describes
    float base = 0;               // loss of the copy estimated from (0 if lossless)
  };
  // Defined in policy_runner_internal.h.
  struct Metrics;
  struct Row;
  struct Snapshot;
  struct PlanInput;
  using PutRuleKey = std::pair<uint16_t, ShapeKey>;  // (plan namespace index, shape)
  struct PutRule {
    std::string config;
    float loss = 0;  // the class's median estimate, recorded on the new copy
  };

  PolicyRunner(PolicyRunnerOptions opts, TierManager* tm);
  absl::Status Init(MetricsRegistry* registry);
  absl::Status BuildConfigSpace();
  absl::Status RegisterMetrics(MetricsRegistry* registry);
  void Loop();
  void PutTranscodeLoop();
  int ConfigIndex(const std::string& name);  // adds names seen on entries; -1 if full/bad
  std::vector<uint64_t>& SizesFor(const KvShape& shape);

  // The cycle's steps, in order.
  Snapshot TakeSnapshot(int64_t now_ns);
  void EstimateHottest(const std::vector<Row>& rows, CycleReport* report);
  void ForgetGone(const Snapshot& snap, int64_t now_ns);
  absl::StatusOr<PlanInput> BuildInput(const Snapshot& snap, CycleReport* report);
  void Publish(const CycleReport& r, bool ok);

  // Quality estimation (policy_runner_quality.cc).
  // The estimate describing the row's current bytes, or null.
  const Estimate* CurrentEstimate(const Row& r) const;
  absl::Status EstimateEntry(const EntryKey& key, Estimate* out, uint64_t* cost);

  // Plan input (policy_runner_input.cc).
  uint32_t SizeClassOf(const KvShape& s, PlanInput* p);
  void AppendLosses(const Row& r, const Estimate* est, std::vector<float>* qloss) const;

  // Put transcoding (policy_runner_put_transcode.cc).
  void SetPutRules(const PlanInput& p, const policy::PlacementPlan& plan);
  PutRuleKey PutRuleKeyOf(uint64_t ns, const KvShape& shape) const;
  MoveResult TranscodePut(const EntryKey& key, const std::map<PutRuleKey, PutRule>& rules,
                          ByteBudget& cpu, MoverReport* report);

  PolicyRunnerOptions opts_;
  TierManager* const tm_;
  std::unique_ptr<policy::AccessStats> stats_;
  policy::QualityModel quality_;
  std::unique_ptr<policy::Policy> policy_;
  std::unique_ptr<Mover> mover_;
  std::unique_ptr<Mover> put_mover_;  // the put-transcoding thread's (its own budgets)
  std::unique_ptr<Metrics> metrics_;

  // Planning state (the planning thread only).
  std::vector<std::string> config_names_;
  std::vector<CodecConfig> configs_;
  absl::flat_hash_map<std::string, int> config_index_;
  absl::flat_hash_map<EntryKey, Estimate> estimates_;
  std::map<ShapeKey, std::vector<uint64_t>> sizes_;  // measured container sizes; 0 = n/a
  uint64_t quality_epoch_ = 1;

  std::atomic<bool> stop_{false};
  std::mutex mu_;  // guards the put rules and queue; cv_ wakes the thread
  std::condition_variable cv_;
  std::condition_variable put_cv_;  // wakes the put-transcoding thread
  std::shared_ptr<const std::map<PutRuleKey, PutRule>> put_rules_;  // swapped whole
  // NamespaceId -> index in the plan's namespaces (1..); others use 0. Set in Init.
  absl::flat_hash_map<uint64_t, uint16_t> ns_index_;
  std::vector<EntryKey> put_queue_;
  std::thread thread_;
  std::thread put_thread_;
};

}  // namespace adaptcache::server
