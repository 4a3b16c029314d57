// Library-level replay of a trace against one placement policy (docs/evaluation.md,
// "simulation mode"): the same policy library the daemon's mover runs (policy/), per-entry
// sizes and quality losses measured with the real codecs (bench/eval/profile.h), and the
// delay model for load + decode + recompute. No bytes move; what it measures is what the
// policy decides.
//
// Replay of one request: the context chunks are looked up in order; the leading run of
// stored chunks is loaded (delay of its tier and config), everything after the first miss
// is recomputed (the engine reuses only a prefix). Chunks never seen before are "cold":
// every policy, the oracle included, recomputes them, so their time is reported apart and
// left out of the load delay. Recomputed context and the request's puts are then stored
// at the policy's put config from the last plan (Policy::PutConfigs; before the
// first plan, or where it says kNoConfig, the put-time config): in DRAM if it fits, else the DRAM tier demotes its
// least recently used entries to SSD, which evicts its own least recently used (the
// daemon's default behaviour between plans, the same for every policy). Every
// `replan_every` requests the policy plans from the decayed access frequencies and the
// plan is applied at once.
//
// Thread safety: Simulate() is reentrant; the Policy object is used by one call at a time.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/eval/profile.h"
#include "bench/eval/trace.h"
#include "policy/delay_model.h"
#include "policy/types.h"

namespace adaptcache::eval {

struct SimOptions {
  uint64_t dram_bytes = 0;
  uint64_t ssd_bytes = 0;
  uint64_t bytes_per_token = 131072;  // raw KV bytes per token (Llama-3.1-8B bf16)
  uint32_t replan_every = 20;         // requests; 0 = never plan (put rule only)
  double half_life_s = 300;
  double alpha = 0.01;                // seconds of delay per unit of quality loss
  policy::DelayModel delay;
  uint32_t put_config = 0;            // index into ProfileSet::configs for new entries
  bool master_copies = false;         // entries may be re-derived from a lossless copy
  bool put_configs = true;            // new entries take the last plan's put config
  // Candidate (issue 18 item 3): a new entry takes the config minimising
  //   fresh_freq * (delay(DRAM, c) + alpha * est_entry(c)) + lambda_dram * bytes(c)
  // priced with its OWN estimate row instead of the class median (PricedPutConfigs), at
  // the last plan's DRAM price (PlanTotals::lambda_dram) and the class's median decayed
  // frequency. Only where the last plan had a DRAM price > 0; otherwise the put config rule.
  bool per_entry_admission = false;
};

// The delays the scorer charges in ground-truth mode (docs/evaluation.md, "Delays"),
// independent of the planner's DelayModel: per config, seconds per raw token of a load
// from DRAM / SSD (fetch + decode, derived from the measured end-to-end figures), and the
// measured prefill time of a prefix as a piecewise-linear curve (tokens, seconds) from
// (0, 0), continued with its last slope. A missed chunk covering context tokens [a, b)
// costs Recompute(a, b) = R(b) - R(a).
struct ScoreDelay {
  std::vector<double> dram_s_per_token;
  std::vector<double> ssd_s_per_token;
  std::vector<std::pair<double, double>> recompute;
  double R(double tokens) const;
  double Recompute(double a, double b) const { return R(b) - R(a); }
};

// What a simulation draws per-entry figures from. Every trace chunk id maps to one
// "source" row (TemplateOf(id ^ source_salt, sources)); the planner sees `est` of that
// row, the scorer charges `truth` (and reports truth_kl). The synthetic-profile mode has
// est == truth (the old, circular scoring), ground-truth mode has them apart.
struct SimModel {
  std::vector<policy::ConfigSpec> configs;  // raw first
  std::vector<double> size_frac;            // stored / raw bytes per config
  uint32_t sources = 0;
  std::vector<float> est;       // [source][config], what the policy is given
  std::vector<float> truth;     // [source][config], what the policy is scored with
  std::vector<float> truth_kl;  // [source][config]; may be empty (reported as 0)
  uint64_t source_salt = 0;
  const ScoreDelay* score = nullptr;  // null: the planner's DelayModel scores too
  uint32_t SourceOf(uint64_t id) const;
};

// The synthetic-profile model (est = truth = per-template qloss, scored by the DelayModel).
SimModel ModelFromProfiles(const ProfileSet& profiles);

struct SimResult {
  double mean_delay_s = 0;       // per request: loads of reused chunks + their recompute
  double mean_loss = 0;          // per request: token-weighted quality drop (SimModel::truth)
  double mean_kl = 0;            // per request: token-weighted SimModel::truth_kl
  double mean_est_loss = 0;      // per request: token-weighted SimModel::est (what the policy believed)
  double mean_cold_s = 0;        // per request: recompute of never-seen chunks (all policies)
  double dram_hit = 0, ssd_hit = 0, miss = 0;  // shares of reused chunk reads
  uint64_t plans = 0;
  double plan_cpu_s = 0;         // total planning time
  uint64_t moves[4] = {0, 0, 0, 0};  // by policy::MoveKind
  uint64_t transcode_raw_bytes = 0;
  uint64_t ssd_write_bytes = 0;  // demotions, SSD puts and transcodes into SSD
};

absl::StatusOr<SimResult> Simulate(const Trace& trace, const ProfileSet& profiles,
                                   policy::Policy* policy, const SimOptions& options);
absl::StatusOr<SimResult> Simulate(const Trace& trace, const SimModel& model, policy::Policy* policy,
                                   const SimOptions& options);

// Which template a chunk's quality comes from (deterministic in the id).
uint32_t TemplateOf(uint64_t chunk_id, uint32_t templates);

}  // namespace adaptcache::eval
