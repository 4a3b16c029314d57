// The policy runner's put transcoding: raw Puts queued by OnPut are transcoded, in DRAM,
// into the put config the last plan gave their (namespace, shape), by a thread of their
// own with a CPU budget of their own (see RunPutTranscodes in policy_runner.h).
#include <cmath>

#include "common/status_kinds.h"
#include "server/policy_runner_internal.h"
#include "spdlog/spdlog.h"

namespace adaptcache::server {

void PolicyRunner::PutTranscodeLoop() {
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    put_cv_.wait(l, [this] { return stop_.load() || !put_queue_.empty(); });
    if (stop_) break;
    l.unlock();
    RunPutTranscodes();
    l.lock();
  }
}

PolicyRunner::PutRuleKey PolicyRunner::PutRuleKeyOf(uint64_t ns, const KvShape& s) const {
  auto it = ns_index_.find(ns);
  return PutRuleKey{it == ns_index_.end() ? uint16_t{0} : it->second, ShapeKeyOf(s)};
}

void PolicyRunner::EnqueuePutTranscode(const EntryKey& key, const KvShape& shape) {
  const PutRuleKey rk = PutRuleKeyOf(key.ns, shape);
  bool dropped = false;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!put_rules_ || !put_rules_->contains(rk)) return;
    if (put_queue_.size() >= opts_.put_queue) {
      dropped = true;
    } else {
      put_queue_.push_back(key);
    }
  }
  if (dropped) {
    if (Counter* c = metrics_->put_transcodes[kMoveResults]) c->Inc();
    return;
  }
  put_cv_.notify_one();
}

void PolicyRunner::SetPutRules(const PlanInput& p, const policy::PlacementPlan& plan) {
  const policy::PolicyInput& in = p.in;
  const policy::PutConfigTable table = policy_->PutConfigs(in, plan);
  const std::vector<float> median = policy::MedianClassLoss(in);
  const size_t k = in.configs.size(), nc = in.classes.size();
  auto rules = std::make_shared<std::map<PutRuleKey, PutRule>>();
  for (size_t n = 0; n < in.namespaces.size(); ++n) {
    for (const auto& [sk, cl] : p.class_of) {
      const size_t g = n * nc + cl;
      if (g >= table.size()) continue;
      const policy::ConfigIndex c = table[g];
      if (c == policy::kNoConfig || configs_[c].family == CodecId::kRaw) continue;
      const float q = median[g * k + c];
      if (!std::isfinite(q) || q >= kUnknownLoss) continue;  // no estimate to record
      (*rules)[PutRuleKey{static_cast<uint16_t>(n), sk}] = PutRule{config_names_[c], q};
    }
  }
  if (metrics_->put_rules) metrics_->put_rules->Set(static_cast<double>(rules->size()));
  std::lock_guard<std::mutex> l(mu_);
  put_rules_ = std::move(rules);
}

MoveResult PolicyRunner::TranscodePut(const EntryKey& key, const std::map<PutRuleKey, PutRule>& rules,
                                      ByteBudget& cpu, MoverReport* report) {
  const Location loc = tm_->Locate(key);
  auto rule = rules.find(PutRuleKeyOf(key.ns, loc.meta.shape));
  if (loc.tier != Tier::kDram || loc.meta.codec_family != CodecId::kRaw || rule == rules.end()) {
    return MoveResult::kStale;  // gone, demoted, already transcoded, or no rule any more
  }
  if (tm_->DramLeases(key) > 0) return MoveResult::kLeased;
  if (!cpu.Available()) return MoveResult::kBudget;
  // No master for a new entry: it would double the entry's footprint (and SSD writes)
  // before anything is known of its popularity, and the plan, which leaves SSD room
  // for the masters that exist, cannot foresee these (measured: keeping them cost the
  // adaptive policy hits in the daemon replay, docs/evaluation.md).
  auto st = put_mover_->Transcode(key, rule->second.config, Tier::kDram, rule->second.loss,
                                  loc.meta.crc32c, report, nullptr, /*allow_master=*/false);
  if (st.ok()) return MoveResult::kDone;
  if (absl::IsAborted(st) || absl::IsNotFound(st) || IsLeased(st)) return MoveResult::kStale;
  spdlog::warn("put transcode of {}: {}", key.key.ToHex(), std::string(st.message()));
  return MoveResult::kFailed;
}

uint64_t PolicyRunner::RunPutTranscodes() {
  std::vector<EntryKey> queue;
  std::shared_ptr<const std::map<PutRuleKey, PutRule>> rules_ptr;
  {
    std::lock_guard<std::mutex> l(mu_);
    queue.swap(put_queue_);
    rules_ptr = put_rules_;
  }
  if (!rules_ptr) rules_ptr = std::make_shared<const std::map<PutRuleKey, PutRule>>();
  uint64_t counts[kMoveResults] = {};
  MoverReport report;
  ByteBudget& cpu = put_mover_->cpu_budget();
  cpu.Refill(std::chrono::steady_clock::now());
  for (const EntryKey& key : queue) {
    if (stop_.load(std::memory_order_relaxed)) break;
    ++counts[static_cast<int>(TranscodePut(key, *rules_ptr, cpu, &report))];
  }
  if (metrics_->put_transcodes[0] != nullptr) {
    for (int x = 0; x < kMoveResults; ++x) metrics_->put_transcodes[x]->Inc(counts[x]);
    metrics_->transcode_bytes->Inc(report.transcode_raw_bytes);
    metrics_->ssd_bytes->Inc(report.ssd_write_bytes);
  }
  return counts[static_cast<int>(MoveResult::kDone)];
}

}  // namespace adaptcache::server
