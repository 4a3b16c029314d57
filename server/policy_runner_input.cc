// The policy runner's plan input: the snapshot of the entries (tier manager and access
// statistics) and the PolicyInput built from it: size classes, per-entry losses, pins
// and the capacities the plan may fill.
#include <algorithm>
#include <cmath>

#include "server/policy_runner_internal.h"

namespace adaptcache::server {

PolicyRunner::Snapshot PolicyRunner::TakeSnapshot(int64_t now_ns) {
  Snapshot out;
  std::vector<TierEntry> entries;
  tm_->ForEach([&](const TierEntry& e) { entries.push_back(e); });
  out.rows.reserve(entries.size());
  for (const TierEntry& e : entries) {
    if (out.alive.contains(e.key)) continue;  // reported twice while changing
    Row r;
    r.key = e.key;
    r.loc = tm_->Locate(e.key);
    r.leases = e.leases;
    if (r.loc.tier == Tier::kNone) continue;
    // A DRAM entry's SSD twin or master takes SSD space the plan does not model.
    if (r.loc.tier == Tier::kDram && e.on_ssd) out.excluded_ssd += e.ssd_bytes;
    if (r.loc.meta_complete) r.config = ConfigIndex(r.loc.meta.codec);
    if (!r.loc.meta_complete || r.config < 0 || !ValidateShape(r.loc.meta.shape).ok()) {
      // Not read since a restart (no shape yet) or an unknown config: left alone.
      (r.loc.tier == Tier::kDram ? out.excluded_dram : out.excluded_ssd) += r.loc.meta.stored_bytes;
      continue;
    }
    if (auto a = stats_->Get(e.key, now_ns)) {
      r.freq = a->freq;
      r.last_ns = a->last_access_ns;
    }
    out.alive.emplace(e.key, out.rows.size());
    out.rows.push_back(std::move(r));
  }
  return out;
}

void PolicyRunner::ForgetGone(const Snapshot& snap, int64_t now_ns) {
  for (auto it = estimates_.begin(); it != estimates_.end();) {
    auto cur = it++;
    if (!snap.alive.contains(cur->first)) estimates_.erase(cur);
  }
  std::vector<EntryKey> gone;
  stats_->ForEach(now_ns, [&](const EntryKey& k, const policy::AccessRecord& a) {
    if (!snap.alive.contains(k) && a.last_access_ns < now_ns) gone.push_back(k);
  });
  for (const auto& k : gone) stats_->Erase(k);
}

uint32_t PolicyRunner::SizeClassOf(const KvShape& s, PlanInput* p) {
  auto [it, fresh] = p->class_of.emplace(ShapeKeyOf(s), static_cast<uint32_t>(p->in.classes.size()));
  if (!fresh) return it->second;
  const std::vector<uint64_t>& sizes = SizesFor(s);
  const size_t nc = configs_.size();
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
  p->in.classes.push_back(std::move(sc));
  return it->second;
}

void PolicyRunner::AppendLosses(const Row& r, const Estimate* est, std::vector<float>* qloss) const {
  const float cur_loss = est ? est->qloss[r.config] : std::max(0.f, r.loc.meta.est_quality_loss);
  for (size_t c = 0; c < configs_.size(); ++c) {
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
    qloss->push_back(q);
  }
}

absl::StatusOr<PolicyRunner::PlanInput> PolicyRunner::BuildInput(const Snapshot& snap,
                                                                 CycleReport* report) {
  PlanInput p;
  policy::PolicyInput& in = p.in;
  const size_t nc = configs_.size();
  for (size_t c = 0; c < nc; ++c) in.configs.push_back({config_names_[c], configs_[c].family});
  in.namespaces.push_back(opts_.budget);  // index 0: namespaces without their own budget
  for (const auto& [id, b] : opts_.ns_budgets) in.namespaces.push_back(b);
  auto delay = policy::DelayModel::Create(opts_.delay);
  if (!delay.ok()) return delay.status();
  in.delay = *std::move(delay);
  uint64_t pinned_dram = 0, pinned_ssd = 0;
  p.subjects.reserve(snap.rows.size());
  in.entries.reserve(snap.rows.size());
  in.qloss.reserve(snap.rows.size() * nc);
  for (const Row& r : snap.rows) {
    const KvShape& s = r.loc.meta.shape;
    std::vector<uint64_t>& sizes = SizesFor(s);
    if (sizes[r.config] == kUnknownSize || sizes[r.config] == 0) {
      sizes[r.config] = r.loc.meta.stored_bytes;
    }
    policy::EntryInput e;
    e.freq = r.freq;
    e.size_class = SizeClassOf(s, &p);
    e.last_access_ns = r.last_ns;
    e.config = static_cast<policy::ConfigIndex>(r.config);
    e.tier = r.loc.tier;
    if (auto ni = ns_index_.find(r.key.ns); ni != ns_index_.end()) e.ns = ni->second;
    if (r.loc.ssd_master) e.flags |= policy::kHasMaster;
    const Estimate* est = CurrentEstimate(r);
    // Leased entries stay put; so do entries not estimated yet (a static or LRU policy
    // would otherwise transcode them blind).
    if (r.leases > 0 || est == nullptr) {
      e.flags |= policy::kPinned;
      ++report->pinned;
      (e.tier == Tier::kDram ? pinned_dram : pinned_ssd) += r.loc.meta.stored_bytes;
    }
    AppendLosses(r, est, &in.qloss);
    in.entries.push_back(e);
    p.subjects.push_back({r.key, s, r.loc.meta.crc32c});
  }
  const DramTierStats ds = tm_->DramStats();
  const double dram_cap = opts_.dram_fraction * static_cast<double>(ds.capacity_bytes);
  // Never below what pinned entries already hold: an infeasible plan would push every
  // unpinned entry out of the tier.
  in.dram_capacity =
      std::max(pinned_dram, static_cast<uint64_t>(std::max(0.0, dram_cap - snap.excluded_dram)));
  if (const auto ss = tm_->SsdStats()) {
    const double ssd_cap = opts_.ssd_fraction * static_cast<double>(ss->capacity_bytes);
    in.ssd_capacity =
        std::max(pinned_ssd, static_cast<uint64_t>(std::max(0.0, ssd_cap - snap.excluded_ssd)));
  }
  in.quality_epoch = quality_epoch_;
  report->entries = in.entries.size();
  return p;
}

}  // namespace adaptcache::server
