// The policy runner's metrics: registration (adaptcache_mover_*) and the per-cycle
// update.
#include "absl/strings/str_cat.h"
#include "server/policy_runner_internal.h"

namespace adaptcache::server {

absl::Status PolicyRunner::RegisterMetrics(MetricsRegistry* registry) {
  metrics_ = std::make_unique<Metrics>();
  if (registry == nullptr) return absl::OkStatus();
  auto fail = [](const absl::Status& st) {
    return absl::InternalError(absl::StrCat("mover metrics: ", std::string(st.message())));
  };
  auto plans = registry->AddCounter("adaptcache_mover_plans_total",
                                    "Placement plans computed by the policy runner, by result.",
                                    {"result"});
  if (!plans.ok()) return fail(plans.status());
  metrics_->plans = *(*plans)->WithLabels({"ok"});
  metrics_->plan_errors = *(*plans)->WithLabels({"error"});
  auto ps = registry->AddHistogram("adaptcache_mover_plan_seconds",
                                   "Wall time of one snapshot+estimate+plan (not the moves).",
                                   {}, DefaultLatencyBuckets());
  if (!ps.ok()) return fail(ps.status());
  metrics_->plan_seconds = (*ps)->Get();
  auto obj = registry->AddGauge("adaptcache_mover_objective",
                                "Last plan's objective (sum f*(delay + alpha*qloss)) and its terms.",
                                {"term"});
  if (!obj.ok()) return fail(obj.status());
  const char* terms[3] = {"total", "delay", "quality"};
  for (int i = 0; i < 3; ++i) metrics_->objective[i] = *(*obj)->WithLabels({terms[i]});
  auto planned = registry->AddCounter("adaptcache_mover_planned_moves_total",
                                      "Moves listed by plans, by kind.", {"kind"});
  if (!planned.ok()) return fail(planned.status());
  auto moves = registry->AddCounter(
      "adaptcache_mover_moves_total",
      "Moves the mover attempted, by kind and result (done, stale, leased, no_space, budget, "
      "failed).",
      {"kind", "result"});
  if (!moves.ok()) return fail(moves.status());
  for (int k = 0; k < 4; ++k) {
    const std::string kind = policy::MoveKindName(static_cast<policy::MoveKind>(k));
    metrics_->planned[k] = *(*planned)->WithLabels({kind});
    for (int r = 0; r < kMoveResults; ++r) {
      metrics_->moves[k][r] = *(*moves)->WithLabels({kind, MoveResultName(static_cast<MoveResult>(r))});
    }
  }
  auto est = registry->AddCounter("adaptcache_mover_quality_estimates_total",
                                  "Entries whose per-config quality losses were estimated, by result.",
                                  {"result"});
  if (!est.ok()) return fail(est.status());
  metrics_->estimates = *(*est)->WithLabels({"ok"});
  metrics_->estimate_errors = *(*est)->WithLabels({"error"});
  auto bytes = registry->AddCounter("adaptcache_mover_bytes_total",
                                    "Work done by the mover: raw bytes transcoded, bytes written to SSD.",
                                    {"kind"});
  if (!bytes.ok()) return fail(bytes.status());
  metrics_->transcode_bytes = *(*bytes)->WithLabels({"transcode_raw"});
  metrics_->ssd_bytes = *(*bytes)->WithLabels({"ssd_write"});
  auto ent = registry->AddGauge("adaptcache_mover_plan_entries",
                                "Entries in the last plan's input, and those pinned (leased or not yet estimated).",
                                {"state"});
  if (!ent.ok()) return fail(ent.status());
  metrics_->entries = *(*ent)->WithLabels({"planned"});
  metrics_->pinned = *(*ent)->WithLabels({"pinned"});
  auto info = registry->AddGauge("adaptcache_mover_policy_info",
                                 "The placement policy the daemon runs (value 1).", {"policy"});
  if (!info.ok()) return fail(info.status());
  (*(*info)->WithLabels({opts_.policy}))->Set(1);
  auto bm = registry->AddGauge("adaptcache_mover_budgets_met",
                               "1 if the last plan met the average quality budget, else 0.");
  if (!bm.ok()) return fail(bm.status());
  metrics_->budgets_met = (*bm)->Get();
  auto adm = registry->AddCounter(
      "adaptcache_mover_admissions_total",
      "Raw puts the runner tried to transcode into the plan's put config, by result "
      "(done, stale, leased, no_space, budget, failed; dropped = queue full).",
      {"result"});
  if (!adm.ok()) return fail(adm.status());
  for (int x = 0; x < kMoveResults; ++x) {
    metrics_->put_transcodes[x] = *(*adm)->WithLabels({MoveResultName(static_cast<MoveResult>(x))});
  }
  metrics_->put_transcodes[kMoveResults] = *(*adm)->WithLabels({"dropped"});
  auto rules = registry->AddGauge("adaptcache_mover_admission_shapes",
                                  "KV shapes the last plan admits in a lossy config.");
  if (!rules.ok()) return fail(rules.status());
  metrics_->put_rules = (*rules)->Get();
  return absl::OkStatus();
}

void PolicyRunner::Publish(const CycleReport& r, bool ok) {
  Metrics& m = *metrics_;
  if (m.plans == nullptr) return;  // no registry
  (ok ? m.plans : m.plan_errors)->Inc();
  m.plan_seconds->Observe(r.plan_seconds);
  m.estimates->Inc(r.estimated);
  m.estimate_errors->Inc(r.estimate_errors);
  m.entries->Set(static_cast<double>(r.entries));
  m.pinned->Set(static_cast<double>(r.pinned));
  if (!ok) return;
  m.objective[0]->Set(r.totals.objective);
  m.objective[1]->Set(r.totals.delay_term);
  m.objective[2]->Set(r.totals.quality_term);
  for (int k = 0; k < 4; ++k) {
    m.planned[k]->Inc(r.totals.moves_by_kind[k]);
    for (int x = 0; x < kMoveResults; ++x) m.moves[k][x]->Inc(r.moves.counts[k][x]);
  }
  m.transcode_bytes->Inc(r.moves.transcode_raw_bytes);
  m.ssd_bytes->Inc(r.moves.ssd_write_bytes);
}

}  // namespace adaptcache::server
