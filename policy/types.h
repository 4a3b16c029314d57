// The optimizer's vocabulary: what a policy reads (PolicyInput) and what it emits
// (PlacementPlan), plus the Policy interface every placement policy implements
// (DESIGN.md §7). Pure data and pure functions: no I/O, no clock, no storage calls.
//
// Entries are addressed by their index in PolicyInput::entries; the caller (the mover)
// maps indices back to keys. Sizes depend only on (shape, config), so entries share a
// SizeClass; per-entry data is kept small (EntryInput is 24 bytes).
//
// Thread safety: the structs are plain values. Policy implementations are not thread
// safe (they may keep warm-start state); use one instance per planning thread.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/container.h"
#include "policy/delay_model.h"

namespace adaptcache::policy {

// Index of a config in PolicyInput::configs; kNoConfig for "not stored".
using ConfigIndex = int16_t;
inline constexpr ConfigIndex kNoConfig = -1;
// The solver keeps config indices in a byte.
inline constexpr size_t kMaxConfigs = 64;

struct ConfigSpec {
  std::string name;  // CodecConfig::Name(), for plans and logs
  CodecId family = CodecId::kRaw;
};

// All entries of one shape share their per-config stored sizes.
struct SizeClass {
  uint32_t tokens = 0;     // tokens in the chunk (miss cost)
  uint64_t raw_bytes = 0;  // decoded tensor bytes (decode cost)
  // Stored bytes per config (index = config); 0 = the config does not apply to this shape.
  std::vector<uint64_t> bytes;
};

// The operator's quality budget for one namespace (DESIGN.md §5). All three may be set.
struct QualityBudget {
  // Weight trading delay (seconds) against expected quality drop (calibrated units) in
  // the objective. With avg_loss set it is the starting point of the search.
  double alpha = 1.0;
  // Hard floor: no entry of the namespace is placed in a config whose loss exceeds this.
  double max_loss = std::numeric_limits<double>::infinity();
  // Average budget: access-weighted mean loss Σ f·q / Σ f over the namespace's entries
  // (evicted entries count as loss 0: they are recomputed exactly). < 0 disables it.
  double avg_loss = -1.0;
};

enum EntryFlags : uint8_t {
  kPinned = 1,     // leased or otherwise pinned: the plan never moves it
  kHasMaster = 2,  // a high-fidelity copy exists, so any config can be re-derived
};

struct EntryInput {
  float freq = 0.f;            // decayed access frequency (AccessStats)
  uint32_t size_class = 0;     // index into PolicyInput::classes
  int64_t last_access_ns = 0;  // for recency baselines
  ConfigIndex config = kNoConfig;  // current config (kNoConfig iff tier == kNone)
  Tier tier = Tier::kNone;         // current tier
  uint8_t flags = 0;               // EntryFlags
  uint16_t ns = 0;                 // index into PolicyInput::namespaces
};
static_assert(sizeof(EntryInput) == 24, "keep the per-entry input small");

struct PolicyInput {
  std::vector<ConfigSpec> configs;
  std::vector<SizeClass> classes;
  std::vector<QualityBudget> namespaces;  // at least one
  std::vector<EntryInput> entries;
  // Expected quality drop per (entry, config), row-major [entry][config], already
  // calibrated (QualityModel). Must be finite and >= 0; raw has 0.
  std::vector<float> qloss;
  uint64_t dram_capacity = 0;
  uint64_t ssd_capacity = 0;
  DelayModel delay;
  // Bump whenever qloss (or configs, classes, budgets, delay) change: solvers may cache
  // per-entry work derived from them between calls with the same epoch.
  uint64_t quality_epoch = 0;

  float QLoss(size_t entry, size_t config) const { return qloss[entry * configs.size() + config]; }
};

// Checks sizes, indices, finiteness and the current state of every entry. A stored
// entry's current config must apply to its class. Returns InvalidArgument naming the
// first offending field.
absl::Status ValidateInput(const PolicyInput& in);

struct Placement {
  ConfigIndex config = kNoConfig;
  Tier tier = Tier::kNone;
  friend bool operator==(const Placement&, const Placement&) = default;
};

// Whether `to` can be derived from the entry's current state: anything from an entry
// with a master copy or stored raw (zero loss); otherwise the same config, or one that
// is smaller and at least as lossy (lossy re-encoding only moves down in fidelity).
// Not-stored entries can only stay not stored.
bool Reachable(const PolicyInput& in, size_t entry, ConfigIndex to);

enum class MoveKind : uint8_t {
  kEvict = 0,      // drop the entry from every tier
  kDemote = 1,     // DRAM -> SSD, same config
  kPromote = 2,    // SSD -> DRAM, same config
  kTranscode = 3,  // change config (the tier may change too)
};
std::string MoveKindName(MoveKind k);

struct Move {
  uint32_t entry = 0;
  MoveKind kind = MoveKind::kEvict;
  Placement from;
  Placement to;
  double benefit = 0;      // objective decrease f·(cost(from) - cost(to)); may be < 0
  int64_t dram_delta = 0;  // bytes the move adds (+) or frees (-) per tier
  int64_t ssd_delta = 0;
};

struct PlanTotals {
  double objective = 0;     // Σ f·(delay + α·qloss), seconds-equivalent per unit frequency
  double delay_term = 0;    // Σ f·delay
  double quality_term = 0;  // Σ f·α·qloss
  uint64_t dram_bytes = 0;
  uint64_t ssd_bytes = 0;
  uint64_t entries_dram = 0;
  uint64_t entries_ssd = 0;
  uint64_t entries_none = 0;
  uint64_t moves_by_kind[4] = {0, 0, 0, 0};
  uint64_t transcode_raw_bytes = 0;  // decoded bytes the mover re-encodes
  uint64_t ssd_write_bytes = 0;      // bytes moves write to SSD
  bool feasible = true;              // capacities hold (false only if pinned entries overflow)
  // Solver diagnostics (0 for baselines).
  double lambda_dram = 0;
  double lambda_ssd = 0;
  uint32_t rounds = 0;
  // The Lagrangian assignment was feasible with no slack in any priced tier, which
  // proves it optimal; repair and fill changed nothing that matters.
  bool lagrangian_optimal = false;
};

// Per-entry target state, moves relative to the current state, and totals.
// Moves come in execution order: first those that free space (evictions, then
// demotions and shrinking transcodes), then those that consume it, each group by
// benefit, descending. Executing them in order never needs more space than the final
// state per tier, except transiently for the move in flight.
struct PlacementPlan {
  std::vector<Placement> target;  // one per entry
  std::vector<Move> moves;
  PlanTotals totals;
  std::vector<double> ns_avg_loss;  // access-weighted mean loss per namespace
  // False when an average budget (QualityBudget::avg_loss) is not met.
  bool budgets_met = true;
};

// Cost per unit frequency of one entry in one placement (delay + α·qloss; the miss
// cost when not stored).
double PlacementCost(const PolicyInput& in, size_t entry, Placement p);

// Fills totals (objective, bytes, feasibility), moves and ns_avg_loss from
// plan->target. Solver diagnostics in totals are left as they are.
void FinalizePlan(const PolicyInput& in, PlacementPlan* plan);

// Every hard rule a plan must obey: one target per entry, valid configs, capacities,
// per-entry quality floors, pinned entries unmoved, reachability. OK or the first
// violation. (Average budgets are soft for baselines and are not checked here.)
absl::Status CheckPlan(const PolicyInput& in, const PlacementPlan& plan);

// Put config table (DESIGN.md §7): the config an entry stored between plans should be
// kept in, in DRAM, per namespace and size class, row-major [ns * classes + class].
// kNoConfig = keep whatever config it arrives in. Consumers apply it to entries that
// arrive lossless (raw), so a new entry does not sit uncompressed until the next plan.
using PutConfigTable = std::vector<ConfigIndex>;

// The priced put configs: per (namespace, class) the applicable config minimising
//   fresh_freq · (delay(DRAM, config) + alpha[ns] · q) + lambda_dram · stored_bytes
// among those with q <= the namespace's floor, where q is the median loss of that config
// over (up to 255 of) the class's unpinned entries in the namespace; kNoConfig where the
// namespace has no unpinned entry of the class. fresh_freq is the frequency a new entry is
// expected to have; <= 0 (default): the median decayed frequency of those entries, at
// least 1 (a put counts as one access). Pricing every new entry at 1 compressed it harder
// than it later deserved, and without a master it cannot be upgraded (docs/evaluation.md).
PutConfigTable PricedPutConfigs(const PolicyInput& in, double lambda_dram,
                                const std::vector<double>& alpha, double fresh_freq = 0);

// The plan's own choice for entries like a new one: per (namespace, class) the config the
// plan gives most of the class's unpinned entries it keeps in DRAM; kNoConfig where it
// keeps none. For policies without a pricing of their own (the greedy downgrader).
PutConfigTable ModalPutConfigs(const PolicyInput& in, const PlacementPlan& plan);

// The median loss per [ns][class][config] over (up to 255 of) the unpinned entries of
// that class in that namespace; NaN where there is none.
std::vector<float> MedianClassLoss(const PolicyInput& in);

class Policy {
 public:
  virtual ~Policy() = default;
  virtual std::string Name() const = 0;
  // Validates `in` and returns a plan obeying CheckPlan (unless pinned entries alone
  // overflow a tier: then totals.feasible is false and everything unpinned is evicted
  // from that tier).
  virtual absl::StatusOr<PlacementPlan> Plan(const PolicyInput& in) = 0;
  // The put config table that goes with `plan`, the plan this policy just returned for
  // `in`. Default: kNoConfig everywhere (entries stay as stored until the next plan).
  virtual PutConfigTable PutConfigs(const PolicyInput& in, const PlacementPlan& plan) const;
};

}  // namespace adaptcache::policy
