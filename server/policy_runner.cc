// The policy runner's lifecycle and cycle: creation (config space, policy), the
// planning thread, and RunOnce's steps in order. The steps live in
// policy_runner_input.cc (snapshot, plan input) and policy_runner_quality.cc
// (estimates); put transcoding in policy_runner_put_transcode.cc.
#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "policy/baselines.h"
#include "policy/optimizer.h"
#include "server/policy_runner_internal.h"
#include "spdlog/spdlog.h"

namespace adaptcache::server {

PolicyRunner::PolicyRunner(PolicyRunnerOptions opts, TierManager* tm)
    : opts_(std::move(opts)), tm_(tm) {}

absl::StatusOr<std::unique_ptr<PolicyRunner>> PolicyRunner::Create(PolicyRunnerOptions opts,
                                                                   TierManager* tm,
                                                                   MetricsRegistry* registry) {
  if (tm == nullptr) return absl::InvalidArgumentError("no tier manager");
  std::unique_ptr<PolicyRunner> r(new PolicyRunner(std::move(opts), tm));
  if (auto st = r->Init(registry); !st.ok()) return st;
  if (r->opts_.interval.count() > 0) {
    r->thread_ = std::thread([p = r.get()] { p->Loop(); });
    if (r->opts_.transcode_puts) r->put_thread_ = std::thread([p = r.get()] { p->PutTranscodeLoop(); });
  }
  return r;
}

absl::Status PolicyRunner::Init(MetricsRegistry* registry) {
  policy::AccessStatsOptions so;
  so.half_life_ns = opts_.half_life_ns;
  auto stats = policy::AccessStats::Create(so);
  if (!stats.ok()) return stats.status();
  stats_ = std::move(*stats);
  if (opts_.ns_budgets.size() >= 0xffff) return absl::InvalidArgumentError("too many namespace budgets");
  for (const auto& [id, b] : opts_.ns_budgets) {
    ns_index_[id] = static_cast<uint16_t>(ns_index_.size() + 1);
  }
  if (!opts_.calibration_file.empty()) {
    auto q = policy::QualityModel::FromFile(opts_.calibration_file);
    if (!q.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("calibration file ", opts_.calibration_file,
                                                     ": ", std::string(q.status().message())));
    }
    quality_ = std::move(*q);
  }
  if (const auto link = tm_->RemoteLinkInfo(); link && link->measured) {
    // Remote -> host DRAM, then the DRAM -> GPU hop: the two run one after the other.
    policy::TierParams& r = opts_.delay.remote;
    if (opts_.remote_latency_auto) r.latency_s = link->latency_s + opts_.delay.dram.latency_s;
    if (opts_.remote_bandwidth_auto) {
      r.bandwidth_Bps = 1.0 / (1.0 / link->bandwidth_Bps + 1.0 / opts_.delay.dram.bandwidth_Bps);
    }
  }
  if (auto d = policy::DelayModel::Create(opts_.delay); !d.ok()) return d.status();
  const policy::DelayModelOptions& dm = opts_.delay;
  spdlog::info(
      "policy {}: delay model DRAM {:.0f} us + {:.1f} GB/s, SSD {:.0f} us + {:.1f} GB/s, recompute "
      "{:.0f} us/token, GPU decode fp8/quant/drop/lowrank {:.0f}/{:.0f}/{:.0f}/{:.0f} GB/s",
      opts_.policy, dm.dram.latency_s * 1e6, dm.dram.bandwidth_Bps / 1e9, dm.ssd.latency_s * 1e6,
      dm.ssd.bandwidth_Bps / 1e9, dm.recompute_s_per_token * 1e6, dm.decode_Bps[1] / 1e9,
      dm.decode_Bps[2] / 1e9, dm.decode_Bps[3] / 1e9, dm.decode_Bps[4] / 1e9);
  if (tm_->HasRemote()) {
    spdlog::info("policy {}: remote tier {:.0f} us + {:.2f} GB/s{}", opts_.policy,
                 dm.remote.latency_s * 1e6, dm.remote.bandwidth_Bps / 1e9,
                 dm.remote_backs_misses ? "; a local miss is a remote load (write-through)" : "");
  }

  if (auto st = BuildConfigSpace(); !st.ok()) return st;
  mover_ = std::make_unique<Mover>(tm_, opts_.mover);
  put_mover_ = std::make_unique<Mover>(tm_, opts_.mover);
  return RegisterMetrics(registry);
}

// The config space: raw first, then the configured (or default) configs, then the
// static policy's. Builds the policy.
absl::Status PolicyRunner::BuildConfigSpace() {
  std::vector<std::string> names = {"raw"};
  if (opts_.configs.empty()) {
    for (const auto& c : DefaultConfigSpace()) names.push_back(c.Name());
  } else {
    names.insert(names.end(), opts_.configs.begin(), opts_.configs.end());
  }
  std::string static_config;
  if (opts_.policy == "adaptive") {
    policy_ = std::make_unique<policy::AdaptiveOptimizer>();
  } else if (opts_.policy == "lru-raw") {
    policy_ = std::make_unique<policy::LruPolicy>();
  } else if (opts_.policy == "greedy-downgrade") {
    policy_ = std::make_unique<policy::GreedyDowngrader>();
  } else if (opts_.policy.rfind("static:", 0) == 0) {
    static_config = opts_.policy.substr(7);
    auto c = ParseCodecConfig(static_config);
    if (!c.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("policy ", opts_.policy, ": ",
                                                     std::string(c.status().message())));
    }
    static_config = c->Name();
    names.push_back(static_config);
    policy_ = std::make_unique<policy::StaticPolicy>(static_config);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown policy '", opts_.policy, "'"));
  }
  for (const auto& n : names) {
    if (ConfigIndex(n) < 0) {
      return absl::InvalidArgumentError(absl::StrCat("config space: '", n, "' is not a config "
                                                     "or more than ", kMaxPlanConfigs, " configs"));
    }
  }
  return absl::OkStatus();
}

PolicyRunner::~PolicyRunner() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  put_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (put_thread_.joinable()) put_thread_.join();
}

void PolicyRunner::OnAccess(const EntryKey& key) { stats_->Record(key, SteadyNowNs()); }

void PolicyRunner::OnPut(const EntryKey& key, const KvShape& shape, CodecId family) {
  if (family != CodecId::kRaw || !opts_.transcode_puts) return;
  EnqueuePutTranscode(key, shape);
}

void PolicyRunner::Loop() {
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    cv_.wait_for(l, opts_.interval, [this] { return stop_.load(); });
    if (stop_) break;
    l.unlock();
    auto r = RunOnce();
    if (!r.ok()) {
      spdlog::warn("policy {}: cycle failed: {}", opts_.policy, std::string(r.status().message()));
    } else {
      for (const auto& e : r->moves.errors) spdlog::warn("mover: {}", e);
      spdlog::debug("policy {}: {} entries, plan {:.3f} s, objective {:.6g}, {} moves",
                    opts_.policy, r->entries, r->plan_seconds, r->totals.objective,
                    r->moves.installed.size());
    }
    l.lock();
  }
}

int PolicyRunner::ConfigIndex(const std::string& name) {
  if (auto it = config_index_.find(name); it != config_index_.end()) return it->second;
  if (configs_.size() >= kMaxPlanConfigs) return -1;
  auto c = ParseCodecConfig(name);
  if (!c.ok() || c->Name() != name) return -1;
  const int idx = static_cast<int>(configs_.size());
  configs_.push_back(*c);
  config_names_.push_back(name);
  config_index_.emplace(name, idx);
  ++quality_epoch_;
  return idx;
}

std::vector<uint64_t>& PolicyRunner::SizesFor(const KvShape& s) {
  auto& v = sizes_[ShapeKeyOf(s)];
  if (v.size() < configs_.size()) v.resize(configs_.size(), kUnknownSize);
  return v;
}

absl::StatusOr<CycleReport> PolicyRunner::RunOnce() {
  CycleReport report;
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t now_ns = SteadyNowNs();
  const Snapshot snap = TakeSnapshot(now_ns);
  EstimateHottest(snap.rows, &report);
  ForgetGone(snap, now_ns);
  auto input = BuildInput(snap, &report);
  if (!input.ok()) return input.status();
  const policy::PolicyInput& in = input->in;

  auto plan = policy_->Plan(in);
  if (plan.ok() && opts_.groups && !opts_.group_caps.empty()) {
    const auto owner = opts_.groups();
    std::vector<int32_t> group(in.entries.size(), -1);
    for (size_t i = 0; i < group.size(); ++i) {
      if (auto it = owner.find(input->subjects[i].key.ns); it != owner.end()) group[i] = it->second;
    }
    report.quota_moves = policy::FitGroupCapacities(in, group, opts_.group_caps, &*plan);
  }
  report.plan_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!plan.ok()) {
    Publish(report, false);
    return plan.status();
  }
  report.totals = plan->totals;
  if (metrics_->budgets_met) metrics_->budgets_met->Set(plan->budgets_met ? 1 : 0);
  if (opts_.transcode_puts) SetPutRules(*input, *plan);

  report.moves = mover_->Execute(in, *plan, input->subjects, stop_);
  for (const auto& [entry, crc] : report.moves.installed) {
    if (auto it = estimates_.find(input->subjects[entry].key); it != estimates_.end()) {
      it->second.crcs.push_back(crc);  // the estimate still describes the entry
    }
  }
  Publish(report, true);
  return report;
}

}  // namespace adaptcache::server
