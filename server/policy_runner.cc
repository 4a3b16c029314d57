#include "server/policy_runner.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "absl/strings/str_split.h"
#include "common/crc32c.h"
#include "common/status_kinds.h"
#include "kernels/quality_proxy.h"
#include "policy/baselines.h"
#include "policy/optimizer.h"
#include "spdlog/spdlog.h"

namespace adaptcache::server {
namespace {


// Loss given to configs whose quality is unknown: large enough that no sensible α
// makes them worth choosing over the miss cost, yet finite as PolicyInput requires.
constexpr float kUnknownLoss = 1e9f;
constexpr uint64_t kUnknownSize = std::numeric_limits<uint64_t>::max();
constexpr size_t kMaxPlanConfigs = 64;

absl::StatusOr<double> ParseNumber(const std::string& what, const std::string& v) {
  if (v == "inf") return std::numeric_limits<double>::infinity();
  double d = 0;
  if (!absl::SimpleAtod(v, &d) || std::isnan(d)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": '", v, "' is not a number"));
  }
  return d;
}

policy::Tier ToPolicyTier(StorageTier t) {
  switch (t) {
    case StorageTier::kDram: return policy::Tier::kDram;
    case StorageTier::kSsd: return policy::Tier::kSsd;
    default: return policy::Tier::kNone;
  }
}

}  // namespace

absl::StatusOr<PolicyRunnerOptions> PolicyRunnerOptionsFrom(const ServerConfig& cfg) {
  PolicyRunnerOptions o;
  o.policy = cfg.policy;
  if (o.policy != "adaptive" && o.policy != "lru-raw" && o.policy != "greedy-downgrade" &&
      o.policy.rfind("static:", 0) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("unknown policy '", o.policy, "'"));
  }
  for (absl::string_view part : absl::StrSplit(cfg.policy_configs, ',', absl::SkipWhitespace())) {
    std::string name(absl::StripAsciiWhitespace(part));
    if (auto c = ParseCodecConfig(name); !c.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("policy configs: '", name, "': ",
                                                     std::string(c.status().message())));
    }
    o.configs.push_back(name);
  }
  auto alpha = ParseNumber("policy alpha", cfg.policy_alpha);
  if (!alpha.ok()) return alpha.status();
  auto max_loss = ParseNumber("policy max_loss", cfg.policy_max_loss);
  if (!max_loss.ok()) return max_loss.status();
  auto avg_loss = ParseNumber("policy avg_loss", cfg.policy_avg_loss);
  if (!avg_loss.ok()) return avg_loss.status();
  if (!(*alpha >= 0) || std::isinf(*alpha)) {
    return absl::InvalidArgumentError("policy alpha must be finite and >= 0");
  }
  if (!(*max_loss >= 0)) return absl::InvalidArgumentError("policy max_loss must be >= 0");
  o.budget.alpha = *alpha;
  o.budget.max_loss = *max_loss;
  o.budget.avg_loss = std::isinf(*avg_loss) ? -1.0 : *avg_loss;
  // Per-namespace budgets: [namespaces."NS"] alpha / max_loss / avg_loss over [policy].
  for (const auto& [name, ns] : cfg.namespaces) {
    if (ns.alpha.empty() && ns.max_loss.empty() && ns.avg_loss.empty()) continue;
    policy::QualityBudget b = o.budget;
    const std::string what = absl::StrCat("namespaces.\"", name, "\".");
    if (!ns.alpha.empty()) {
      auto v = ParseNumber(what + "alpha", ns.alpha);
      if (!v.ok()) return v.status();
      if (!(*v >= 0) || std::isinf(*v)) return absl::InvalidArgumentError(what + "alpha must be finite and >= 0");
      b.alpha = *v;
    }
    if (!ns.max_loss.empty()) {
      auto v = ParseNumber(what + "max_loss", ns.max_loss);
      if (!v.ok()) return v.status();
      if (!(*v >= 0)) return absl::InvalidArgumentError(what + "max_loss must be >= 0");
      b.max_loss = *v;
    }
    if (!ns.avg_loss.empty()) {
      auto v = ParseNumber(what + "avg_loss", ns.avg_loss);
      if (!v.ok()) return v.status();
      b.avg_loss = std::isinf(*v) ? -1.0 : *v;
    }
    o.ns_budgets[NamespaceId(name)] = b;
  }
  o.calibration_file = cfg.policy_calibration;
  o.interval = std::chrono::milliseconds(cfg.policy_interval_ms);
  o.mover.cpu_bytes_per_s = cfg.mover_cpu_budget;
  o.mover.ssd_bytes_per_s = cfg.mover_ssd_write_budget;
  o.mover.keep_master = cfg.mover_keep_master;
  o.admission = cfg.policy_admission;
  // The delay model: every figure finite and > 0 (latencies >= 0).
  struct {
    const char* what;
    const std::string& v;
    double scale;
    double* out;
    bool allow_zero;
  } delay[] = {
      {"policy dram_latency_us", cfg.policy_dram_latency_us, 1e-6, &o.delay.dram.latency_s, true},
      {"policy dram_gbps", cfg.policy_dram_gbps, 1e9, &o.delay.dram.bandwidth_Bps, false},
      {"policy ssd_latency_us", cfg.policy_ssd_latency_us, 1e-6, &o.delay.ssd.latency_s, true},
      {"policy ssd_gbps", cfg.policy_ssd_gbps, 1e9, &o.delay.ssd.bandwidth_Bps, false},
      {"policy recompute_us_per_token", cfg.policy_recompute_us_per_token, 1e-6,
       &o.delay.recompute_s_per_token, true},
  };
  for (const auto& d : delay) {
    auto v = ParseNumber(d.what, d.v);
    if (!v.ok()) return v.status();
    if (!std::isfinite(*v) || *v < 0 || (!d.allow_zero && *v == 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat(d.what, " must be finite and ", d.allow_zero ? ">= 0" : "> 0"));
    }
    *d.out = *v * d.scale;
  }
  if (!cfg.policy_decode_csv.empty()) {
    auto gbs = policy::ReadDecodeCsv(cfg.policy_decode_csv);
    if (!gbs.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("policy decode_csv: ", std::string(gbs.status().message())));
    }
    const auto fam = policy::FamilyDecodeBps(*gbs, o.configs);  // all when none configured
    for (size_t f = 1; f < fam.size(); ++f) {
      if (fam[f] > 0) o.delay.decode_Bps[f] = fam[f];
    }
  }
  return o;
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
  Counter* admissions[kMoveResults + 1] = {};  // by MoveResult, then "dropped"
  Gauge* admission_rules = nullptr;
};

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
    if (r->opts_.admission) r->admit_thread_ = std::thread([p = r.get()] { p->AdmissionLoop(); });
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
  if (auto d = policy::DelayModel::Create(opts_.delay); !d.ok()) return d.status();
  const policy::DelayModelOptions& dm = opts_.delay;
  spdlog::info(
      "policy {}: delay model DRAM {:.0f} us + {:.1f} GB/s, SSD {:.0f} us + {:.1f} GB/s, recompute "
      "{:.0f} us/token, GPU decode fp8/quant/drop/lowrank {:.0f}/{:.0f}/{:.0f}/{:.0f} GB/s",
      opts_.policy, dm.dram.latency_s * 1e6, dm.dram.bandwidth_Bps / 1e9, dm.ssd.latency_s * 1e6,
      dm.ssd.bandwidth_Bps / 1e9, dm.recompute_s_per_token * 1e6, dm.decode_Bps[1] / 1e9,
      dm.decode_Bps[2] / 1e9, dm.decode_Bps[3] / 1e9, dm.decode_Bps[4] / 1e9);

  // The config space: raw first, then the configured (or default) configs.
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
  mover_ = std::make_unique<Mover>(tm_, opts_.mover);
  admit_mover_ = std::make_unique<Mover>(tm_, opts_.mover);

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
      "Raw puts the runner tried to transcode into the plan's admission config, by result "
      "(done, stale, leased, no_space, budget, failed; dropped = queue full).",
      {"result"});
  if (!adm.ok()) return fail(adm.status());
  for (int x = 0; x < kMoveResults; ++x) {
    metrics_->admissions[x] = *(*adm)->WithLabels({MoveResultName(static_cast<MoveResult>(x))});
  }
  metrics_->admissions[kMoveResults] = *(*adm)->WithLabels({"dropped"});
  auto rules = registry->AddGauge("adaptcache_mover_admission_shapes",
                                  "KV shapes the last plan admits in a lossy config.");
  if (!rules.ok()) return fail(rules.status());
  metrics_->admission_rules = (*rules)->Get();
  return absl::OkStatus();
}

PolicyRunner::~PolicyRunner() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  admit_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (admit_thread_.joinable()) admit_thread_.join();
}

void PolicyRunner::OnAccess(const EntryKey& key) { stats_->Record(key, SteadyNowNs()); }

void PolicyRunner::OnPut(const EntryKey& key, const KvShape& shape, CodecId family) {
  if (family != CodecId::kRaw || !opts_.admission) return;
  EnqueueAdmission(key, shape);
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

void PolicyRunner::AdmissionLoop() {
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    admit_cv_.wait(l, [this] { return stop_.load() || !admit_queue_.empty(); });
    if (stop_) break;
    l.unlock();
    RunAdmissions();
    l.lock();
  }
}

PolicyRunner::AdmitKey PolicyRunner::AdmitKeyOf(uint64_t ns, const KvShape& s) const {
  auto it = ns_index_.find(ns);
  return AdmitKey{it == ns_index_.end() ? uint16_t{0} : it->second,
                  ShapeKey{s.layers, s.tokens, s.kv_heads, s.head_dim, static_cast<uint8_t>(s.dtype)}};
}

void PolicyRunner::EnqueueAdmission(const EntryKey& key, const KvShape& shape) {
  const AdmitKey ak = AdmitKeyOf(key.ns, shape);
  bool dropped = false;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!admit_rules_ || !admit_rules_->contains(ak)) return;
    if (admit_queue_.size() >= opts_.admission_queue) {
      dropped = true;
    } else {
      admit_queue_.push_back(key);
    }
  }
  if (dropped) {
    if (Counter* c = metrics_->admissions[kMoveResults]) c->Inc();
    return;
  }
  admit_cv_.notify_one();
}

void PolicyRunner::SetAdmission(const policy::PolicyInput& in, const policy::PlacementPlan& plan,
                                const std::map<ShapeKey, uint32_t>& class_of) {
  const policy::AdmissionTable table = policy_->Admission(in, plan);
  const std::vector<float> median = policy::MedianClassLoss(in);
  const size_t k = in.configs.size(), nc = in.classes.size();
  auto rules = std::make_shared<std::map<AdmitKey, AdmitRule>>();
  for (size_t n = 0; n < in.namespaces.size(); ++n) {
    for (const auto& [sk, cl] : class_of) {
      const size_t g = n * nc + cl;
      if (g >= table.size()) continue;
      const policy::ConfigIndex c = table[g];
      if (c == policy::kNoConfig || configs_[c].family == CodecId::kRaw) continue;
      const float q = median[g * k + c];
      if (!std::isfinite(q) || q >= kUnknownLoss) continue;  // no estimate to record
      (*rules)[AdmitKey{static_cast<uint16_t>(n), sk}] = AdmitRule{config_names_[c], q};
    }
  }
  if (metrics_->admission_rules) metrics_->admission_rules->Set(static_cast<double>(rules->size()));
  std::lock_guard<std::mutex> l(mu_);
  admit_rules_ = std::move(rules);
}

uint64_t PolicyRunner::RunAdmissions() {
  std::vector<EntryKey> queue;
  std::shared_ptr<const std::map<AdmitKey, AdmitRule>> rules_ptr;
  {
    std::lock_guard<std::mutex> l(mu_);
    queue.swap(admit_queue_);
    rules_ptr = admit_rules_;
  }
  if (!rules_ptr) rules_ptr = std::make_shared<const std::map<AdmitKey, AdmitRule>>();
  const auto& rules = *rules_ptr;
  uint64_t counts[kMoveResults] = {};
  MoverReport report;
  ByteBudget& cpu = admit_mover_->cpu_budget();
  cpu.Refill(std::chrono::steady_clock::now());
  for (const EntryKey& key : queue) {
    if (stop_.load(std::memory_order_relaxed)) break;
    MoveResult res = MoveResult::kDone;
    const Location loc = tm_->Locate(key);
    const KvShape& s = loc.meta.shape;
    auto rule = rules.find(AdmitKeyOf(key.ns, s));
    if (loc.tier != StorageTier::kDram || loc.meta.codec_family != CodecId::kRaw || rule == rules.end()) {
      res = MoveResult::kStale;  // gone, demoted, already transcoded, or no rule any more
    } else if (tm_->DramLeases(key) > 0) {
      res = MoveResult::kLeased;
    } else if (!cpu.Available()) {
      res = MoveResult::kBudget;
    } else {
      // No master for a new entry: it would double the entry's footprint (and SSD writes)
      // before anything is known of its popularity, and the plan, which leaves SSD room
      // for the masters that exist, cannot foresee these (measured: keeping them cost the
      // adaptive policy hits in the daemon replay, docs/evaluation.md).
      auto st = admit_mover_->Transcode(key, rule->second.config, StorageTier::kDram, rule->second.loss,
                                  loc.meta.crc32c, &report, nullptr, /*allow_master=*/false);
      if (st.ok()) {
        res = MoveResult::kDone;
      } else if (absl::IsAborted(st) || absl::IsNotFound(st) || IsLeased(st)) {
        res = MoveResult::kStale;
      } else {
        res = MoveResult::kFailed;
        spdlog::warn("admission of {}: {}", key.key.ToHex(), std::string(st.message()));
      }
    }
    ++counts[static_cast<int>(res)];
  }
  if (metrics_->admissions[0] != nullptr) {
    for (int x = 0; x < kMoveResults; ++x) metrics_->admissions[x]->Inc(counts[x]);
    metrics_->transcode_bytes->Inc(report.transcode_raw_bytes);
    metrics_->ssd_bytes->Inc(report.ssd_write_bytes);
  }
  return counts[static_cast<int>(MoveResult::kDone)];
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
  auto& v = sizes_[ShapeKey{s.layers, s.tokens, s.kv_heads, s.head_dim,
                            static_cast<uint8_t>(s.dtype)}];
  if (v.size() < configs_.size()) v.resize(configs_.size(), kUnknownSize);
  return v;
}

absl::Status PolicyRunner::EstimateEntry(const EntryKey& key, Estimate* out, uint64_t* cost) {
  auto best = tm_->ReadBest(key);
  if (!best.ok()) return best.status();
  const KvShape shape = best->meta.shape;
  if (auto st = ValidateShape(shape); !st.ok()) return st;
  std::vector<std::byte> raw(shape.Bytes());
  if (auto st = Decode(best->container, raw); !st.ok()) return st;
  *cost += shape.Bytes();
  auto ref = QualityReference::Build(shape, raw, SideData{});
  if (!ref.ok()) return ref.status();
  const bool lossless = best->master || best->meta.codec_family == CodecId::kRaw;
  out->base = lossless ? 0.f : std::max(0.f, best->meta.est_quality_loss);
  out->qloss.assign(configs_.size(), std::numeric_limits<float>::quiet_NaN());
  out->crcs = {Crc32c(best->container.data(), best->container.size())};
  std::vector<uint64_t>& sizes = SizesFor(shape);
  std::vector<std::byte> decoded(shape.Bytes());
  for (size_t c = 0; c < configs_.size(); ++c) {
    const CodecConfig& cfg = configs_[c];
    if (!CheckApplicable(cfg, shape).ok()) {
      sizes[c] = 0;
      continue;
    }
    if (config_names_[c] == best->meta.codec) {
      out->qloss[c] = out->base;
      if (sizes[c] == kUnknownSize) sizes[c] = best->container.size();
      continue;
    }
    if (cfg.family == CodecId::kRaw) {  // never reachable from a lossy copy; always 0
      out->qloss[c] = 0.f;
      if (sizes[c] == kUnknownSize) sizes[c] = MaxEncodedBytes(cfg, shape);
      continue;
    }
    auto enc = EncodeToVector(cfg, shape, raw);
    if (!enc.ok()) return enc.status();
    if (sizes[c] == kUnknownSize) sizes[c] = enc->size();
    if (auto st = Decode(*enc, decoded); !st.ok()) return st;
    std::vector<uint8_t> kept;
    if (cfg.family == CodecId::kDrop) {
      auto tokens = DecodeKeptTokens(*enc);
      if (!tokens.ok()) return tokens.status();
      kept.assign(shape.tokens, 0);
      for (uint32_t t : *tokens) kept[t] = 1;
    }
    auto rep = ref->Evaluate(decoded, kept);
    if (!rep.ok()) return rep.status();
    *cost += shape.Bytes();
    const double loss = quality_.ExpectedLoss(config_names_[c], cfg.family, rep->proxy);
    out->qloss[c] = static_cast<float>(
        std::min<double>(kUnknownLoss, out->base + (std::isfinite(loss) ? loss : kUnknownLoss)));
  }
  return absl::OkStatus();
}

absl::StatusOr<CycleReport> PolicyRunner::RunOnce() {
  CycleReport report;
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t now_ns = SteadyNowNs();

  // 1. Snapshot.
  struct Row {
    EntryKey key;
    Location loc;
    uint32_t leases = 0;
    int config = -1;
    float freq = 0;
    int64_t last_ns = 0;
  };
  std::vector<TierEntry> snap;
  tm_->ForEach([&](const TierEntry& e) { snap.push_back(e); });
  std::vector<Row> rows;
  rows.reserve(snap.size());
  uint64_t excluded_dram = 0, excluded_ssd = 0;
  absl::flat_hash_map<EntryKey, size_t> alive;
  for (const TierEntry& e : snap) {
    if (alive.contains(e.key)) continue;  // reported twice while changing
    Row r;
    r.key = e.key;
    r.loc = tm_->Locate(e.key);
    r.leases = e.leases;
    if (r.loc.tier == StorageTier::kNone) continue;
    // A DRAM entry's SSD twin or master takes SSD space the plan does not model.
    if (r.loc.tier == StorageTier::kDram && e.on_ssd) excluded_ssd += e.ssd_bytes;
    if (r.loc.meta_complete) r.config = ConfigIndex(r.loc.meta.codec);
    if (!r.loc.meta_complete || r.config < 0 || !ValidateShape(r.loc.meta.shape).ok()) {
      // Not read since a restart (no shape yet) or an unknown config: left alone.
      (r.loc.tier == StorageTier::kDram ? excluded_dram : excluded_ssd) += r.loc.meta.stored_bytes;
      continue;
    }
    if (auto a = stats_->Get(e.key, now_ns)) {
      r.freq = a->freq;
      r.last_ns = a->last_access_ns;
    }
    alive.emplace(e.key, rows.size());
    rows.push_back(std::move(r));
  }

  // 2. Quality estimates, hottest unestimated first, under the CPU budget.
  auto has_estimate = [&](const Row& r) {
    auto it = estimates_.find(r.key);
    return it != estimates_.end() && it->second.qloss.size() == configs_.size() &&
           std::find(it->second.crcs.begin(), it->second.crcs.end(), r.loc.meta.crc32c) !=
               it->second.crcs.end();
  };
  std::vector<size_t> need;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (!has_estimate(rows[i])) need.push_back(i);
  }
  std::sort(need.begin(), need.end(), [&](size_t a, size_t b) { return rows[a].freq > rows[b].freq; });
  ByteBudget& cpu = mover_->cpu_budget();
  cpu.Refill(std::chrono::steady_clock::now());
  for (size_t i : need) {
    if (report.estimated + report.estimate_errors >= opts_.estimates_per_plan || !cpu.Available()) {
      break;
    }
    Estimate est;
    uint64_t cost = 0;
    auto st = EstimateEntry(rows[i].key, &est, &cost);
    cpu.Charge(cost);
    if (!st.ok()) {
      ++report.estimate_errors;
      spdlog::debug("quality estimate failed: {}", std::string(st.message()));
      continue;
    }
    if (std::find(est.crcs.begin(), est.crcs.end(), rows[i].loc.meta.crc32c) == est.crcs.end()) {
      est.crcs.push_back(rows[i].loc.meta.crc32c);  // a lossy copy served beside a master
    }
    estimates_[rows[i].key] = std::move(est);
    ++report.estimated;
  }
  if (report.estimated > 0) ++quality_epoch_;
  // Forget what no longer exists.
  for (auto it = estimates_.begin(); it != estimates_.end();) {
    auto cur = it++;
    if (!alive.contains(cur->first)) estimates_.erase(cur);
  }
  std::vector<EntryKey> gone;
  stats_->ForEach(now_ns, [&](const EntryKey& k, const policy::AccessRecord& a) {
    if (!alive.contains(k) && a.last_access_ns < now_ns) gone.push_back(k);
  });
  for (const auto& k : gone) stats_->Erase(k);

  // 3. The optimizer's input.
  policy::PolicyInput in;
  const size_t nc = configs_.size();
  for (size_t c = 0; c < nc; ++c) in.configs.push_back({config_names_[c], configs_[c].family});
  in.namespaces.push_back(opts_.budget);  // index 0: namespaces without their own budget
  for (const auto& [id, b] : opts_.ns_budgets) in.namespaces.push_back(b);
  auto delay = policy::DelayModel::Create(opts_.delay);
  if (!delay.ok()) return delay.status();
  in.delay = *std::move(delay);
  std::map<ShapeKey, uint32_t> class_of;
  uint64_t pinned_dram = 0, pinned_ssd = 0;
  std::vector<MoveSubject> subjects;
  subjects.reserve(rows.size());
  in.entries.reserve(rows.size());
  in.qloss.reserve(rows.size() * nc);
  for (const Row& r : rows) {
    const KvShape& s = r.loc.meta.shape;
    std::vector<uint64_t>& sizes = SizesFor(s);
    if (sizes[r.config] == kUnknownSize || sizes[r.config] == 0) {
      sizes[r.config] = r.loc.meta.stored_bytes;
    }
    const ShapeKey sk{s.layers, s.tokens, s.kv_heads, s.head_dim, static_cast<uint8_t>(s.dtype)};
    auto [it, fresh] = class_of.emplace(sk, static_cast<uint32_t>(in.classes.size()));
    if (fresh) {
      policy::SizeClass sc;
      sc.tokens = s.tokens;
      sc.raw_bytes = s.Bytes();
      sc.bytes.resize(nc);
      for (size_t c = 0; c < nc; ++c) {
        if (sizes[c] == kUnknownSize) {
          sc.bytes[c] = CheckApplicable(configs_[c], s).ok() ? MaxEncodedBytes(configs_[c], s) : 0;
        } else {
          sc.bytes[c] = sizes[c];
        }
      }
      in.classes.push_back(std::move(sc));
    }
    policy::EntryInput e;
    e.freq = r.freq;
    e.size_class = it->second;
    e.last_access_ns = r.last_ns;
    e.config = static_cast<policy::ConfigIndex>(r.config);
    e.tier = ToPolicyTier(r.loc.tier);
    if (auto ni = ns_index_.find(r.key.ns); ni != ns_index_.end()) e.ns = ni->second;
    if (r.loc.ssd_master) e.flags |= policy::kHasMaster;
    const Estimate* est = nullptr;
    if (auto f = estimates_.find(r.key); f != estimates_.end() && has_estimate(r)) est = &f->second;
    // Leased entries stay put; so do entries not estimated yet (a static or LRU policy
    // would otherwise transcode them blind).
    if (r.leases > 0 || est == nullptr) {
      e.flags |= policy::kPinned;
      ++report.pinned;
      (e.tier == policy::Tier::kDram ? pinned_dram : pinned_ssd) += r.loc.meta.stored_bytes;
    }
    const float cur_loss = est ? est->qloss[r.config] : std::max(0.f, r.loc.meta.est_quality_loss);
    for (size_t c = 0; c < nc; ++c) {
      float q;
      if (configs_[c].family == CodecId::kRaw) {
        q = 0.f;
      } else if (static_cast<int>(c) == r.config) {
        q = std::isnan(cur_loss) ? 0.f : cur_loss;
      } else if (est != nullptr && !std::isnan(est->qloss[c])) {
        q = est->qloss[c];
      } else {
        q = kUnknownLoss;  // unknown quality: lossless options only
      }
      in.qloss.push_back(q);
    }
    in.entries.push_back(e);
    subjects.push_back({r.key, s, r.loc.meta.crc32c});
  }
  const DramTierStats ds = tm_->DramStats();
  const double dram_cap = opts_.dram_fraction * static_cast<double>(ds.capacity_bytes);
  // Never below what pinned entries already hold: an infeasible plan would push every
  // unpinned entry out of the tier.
  in.dram_capacity =
      std::max(pinned_dram, static_cast<uint64_t>(std::max(0.0, dram_cap - excluded_dram)));
  if (const auto ss = tm_->SsdStats()) {
    const double ssd_cap = opts_.ssd_fraction * static_cast<double>(ss->capacity_bytes);
    in.ssd_capacity =
        std::max(pinned_ssd, static_cast<uint64_t>(std::max(0.0, ssd_cap - excluded_ssd)));
  }
  in.quality_epoch = quality_epoch_;
  report.entries = in.entries.size();

  // 4. Plan.
  auto plan = policy_->Plan(in);
  report.plan_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!plan.ok()) {
    Publish(report, false);
    return plan.status();
  }
  report.totals = plan->totals;
  if (metrics_->budgets_met) metrics_->budgets_met->Set(plan->budgets_met ? 1 : 0);
  if (opts_.admission) SetAdmission(in, *plan, class_of);

  // 5. Moves.
  report.moves = mover_->Execute(in, *plan, subjects, stop_);
  for (const auto& [entry, crc] : report.moves.installed) {
    if (auto it = estimates_.find(subjects[entry].key); it != estimates_.end()) {
      it->second.crcs.push_back(crc);  // the estimate still describes the entry
    }
  }
  Publish(report, true);
  return report;
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
