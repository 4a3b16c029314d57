#include <algorithm>
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "policy/types.h"

namespace adaptcache::policy {
namespace {

uint64_t StoredBytes(const PolicyInput& in, size_t i, Placement p) {
  if (p.tier == Tier::kNone) return 0;
  return in.classes[in.entries[i].size_class].bytes[p.config];
}

Placement Current(const EntryInput& e) {
  if (e.tier == Tier::kNone) return {kNoConfig, Tier::kNone};
  return {e.config, e.tier};
}

// Execution group of a move (see PlacementPlan).
int Group(const Move& m) {
  if (m.kind == MoveKind::kEvict) return 0;
  if (m.dram_delta <= 0 && m.ssd_delta <= 0) return 1;
  if (m.dram_delta < 0) return 2;
  return 3;
}

}  // namespace

std::string MoveKindName(MoveKind k) {
  switch (k) {
    case MoveKind::kEvict:
      return "evict";
    case MoveKind::kDemote:
      return "demote";
    case MoveKind::kPromote:
      return "promote";
    case MoveKind::kTranscode:
      return "transcode";
  }
  return "?";
}

absl::Status ValidateInput(const PolicyInput& in) {
  const size_t k = in.configs.size();
  if (k == 0) return absl::InvalidArgumentError("configs is empty");
  if (k > kMaxConfigs) {
    return absl::InvalidArgumentError(absl::StrCat("configs has ", k, " items; at most ", kMaxConfigs));
  }
  for (size_t c = 0; c < k; ++c) {
    if (static_cast<uint8_t>(in.configs[c].family) > kMaxCodecId) {
      return absl::InvalidArgumentError(absl::StrCat("configs[", c, "] has an unknown family"));
    }
  }
  if (in.namespaces.empty()) return absl::InvalidArgumentError("namespaces is empty");
  for (size_t n = 0; n < in.namespaces.size(); ++n) {
    const QualityBudget& b = in.namespaces[n];
    if (!std::isfinite(b.alpha) || b.alpha < 0) {
      return absl::InvalidArgumentError(absl::StrCat("namespaces[", n, "].alpha must be finite and >= 0"));
    }
    if (std::isnan(b.max_loss) || b.max_loss < 0) {
      return absl::InvalidArgumentError(absl::StrCat("namespaces[", n, "].max_loss must be >= 0"));
    }
    if (std::isnan(b.avg_loss) || std::isinf(b.avg_loss)) {
      return absl::InvalidArgumentError(absl::StrCat("namespaces[", n, "].avg_loss must be finite"));
    }
  }
  for (size_t s = 0; s < in.classes.size(); ++s) {
    const SizeClass& sc = in.classes[s];
    if (sc.bytes.size() != k) {
      return absl::InvalidArgumentError(
          absl::StrCat("classes[", s, "].bytes has ", sc.bytes.size(), " sizes; configs has ", k));
    }
    if (std::none_of(sc.bytes.begin(), sc.bytes.end(), [](uint64_t b) { return b > 0; })) {
      return absl::InvalidArgumentError(absl::StrCat("classes[", s, "] has no applicable config"));
    }
  }
  const size_t n = in.entries.size();
  if (n > UINT32_MAX) return absl::InvalidArgumentError("too many entries");
  if (in.qloss.size() != n * k) {
    return absl::InvalidArgumentError(
        absl::StrCat("qloss has ", in.qloss.size(), " values; entries x configs = ", n * k));
  }
  for (size_t i = 0; i < n; ++i) {
    const EntryInput& e = in.entries[i];
    if (!std::isfinite(e.freq) || e.freq < 0) {
      return absl::InvalidArgumentError(absl::StrCat("entries[", i, "].freq must be finite and >= 0"));
    }
    if (e.size_class >= in.classes.size()) {
      return absl::InvalidArgumentError(absl::StrCat("entries[", i, "].size_class out of range"));
    }
    if (e.ns >= in.namespaces.size()) {
      return absl::InvalidArgumentError(absl::StrCat("entries[", i, "].ns out of range"));
    }
    if (e.tier != Tier::kNone && e.tier != Tier::kDram && e.tier != Tier::kSsd) {
      return absl::InvalidArgumentError(absl::StrCat("entries[", i, "].tier is invalid"));
    }
    if (e.tier == Tier::kNone) {
      if (e.config != kNoConfig) {
        return absl::InvalidArgumentError(absl::StrCat("entries[", i, "] is not stored but has a config"));
      }
    } else if (e.config < 0 || static_cast<size_t>(e.config) >= k ||
               in.classes[e.size_class].bytes[e.config] == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("entries[", i, "].config is not a config of its size class"));
    }
  }
  for (size_t j = 0; j < in.qloss.size(); ++j) {
    const float q = in.qloss[j];
    if (!std::isfinite(q) || q < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("qloss of entry ", j / k, " config ", j % k, " must be finite and >= 0"));
    }
  }
  return absl::OkStatus();
}

bool Reachable(const PolicyInput& in, size_t i, ConfigIndex to) {
  if (to == kNoConfig) return true;
  const EntryInput& e = in.entries[i];
  if (e.tier == Tier::kNone) return false;
  const SizeClass& sc = in.classes[e.size_class];
  if (sc.bytes[to] == 0) return false;
  if (to == e.config) return true;
  if ((e.flags & kHasMaster) || in.configs[e.config].family == CodecId::kRaw) return true;
  return sc.bytes[to] <= sc.bytes[e.config] && in.QLoss(i, to) >= in.QLoss(i, e.config);
}

double PlacementCost(const PolicyInput& in, size_t i, Placement p) {
  const EntryInput& e = in.entries[i];
  const SizeClass& sc = in.classes[e.size_class];
  if (p.tier == Tier::kNone) return in.delay.MissCost(sc.tokens, sc.raw_bytes);
  return in.delay.Delay(p.tier, in.configs[p.config].family, sc.bytes[p.config], sc.raw_bytes) +
         in.namespaces[e.ns].alpha * in.QLoss(i, p.config);
}

void FinalizePlan(const PolicyInput& in, PlacementPlan* plan) {
  PlanTotals& t = plan->totals;
  const double lambda_d = t.lambda_dram, lambda_s = t.lambda_ssd;
  const uint32_t rounds = t.rounds;
  const bool certified = t.lagrangian_optimal;
  t = PlanTotals{};
  t.lambda_dram = lambda_d;
  t.lambda_ssd = lambda_s;
  t.rounds = rounds;
  t.lagrangian_optimal = certified;
  plan->moves.clear();
  std::vector<double> fq(in.namespaces.size(), 0), fsum(in.namespaces.size(), 0);
  for (size_t i = 0; i < in.entries.size(); ++i) {
    const EntryInput& e = in.entries[i];
    const Placement to = plan->target[i];
    const Placement from = Current(e);
    const double f = e.freq;
    const double cost_to = PlacementCost(in, i, to);
    const uint64_t bytes_to = StoredBytes(in, i, to);
    fsum[e.ns] += f;
    if (to.tier == Tier::kNone) {
      ++t.entries_none;
      t.delay_term += f * cost_to;
    } else {
      const double q = in.QLoss(i, to.config);
      const double qterm = f * in.namespaces[e.ns].alpha * q;
      t.quality_term += qterm;
      t.delay_term += f * cost_to - qterm;
      fq[e.ns] += f * q;
      if (to.tier == Tier::kDram) {
        ++t.entries_dram;
        t.dram_bytes += bytes_to;
      } else {
        ++t.entries_ssd;
        t.ssd_bytes += bytes_to;
      }
    }
    if (from == to) continue;
    Move m;
    m.entry = static_cast<uint32_t>(i);
    m.from = from;
    m.to = to;
    if (to.tier == Tier::kNone) {
      m.kind = MoveKind::kEvict;
    } else if (to.config == from.config) {
      m.kind = to.tier == Tier::kSsd ? MoveKind::kDemote : MoveKind::kPromote;
    } else {
      m.kind = MoveKind::kTranscode;
      t.transcode_raw_bytes += in.classes[e.size_class].raw_bytes;
    }
    const uint64_t bytes_from = StoredBytes(in, i, from);
    m.dram_delta = (to.tier == Tier::kDram ? static_cast<int64_t>(bytes_to) : 0) -
                   (from.tier == Tier::kDram ? static_cast<int64_t>(bytes_from) : 0);
    m.ssd_delta = (to.tier == Tier::kSsd ? static_cast<int64_t>(bytes_to) : 0) -
                  (from.tier == Tier::kSsd ? static_cast<int64_t>(bytes_from) : 0);
    if (to.tier == Tier::kSsd) t.ssd_write_bytes += bytes_to;
    m.benefit = f * (PlacementCost(in, i, from) - cost_to);
    ++t.moves_by_kind[static_cast<int>(m.kind)];
    plan->moves.push_back(m);
  }
  t.objective = t.delay_term + t.quality_term;
  t.feasible = t.dram_bytes <= in.dram_capacity && t.ssd_bytes <= in.ssd_capacity;
  std::stable_sort(plan->moves.begin(), plan->moves.end(), [](const Move& a, const Move& b) {
    const int ga = Group(a), gb = Group(b);
    if (ga != gb) return ga < gb;
    return a.benefit > b.benefit;
  });
  plan->ns_avg_loss.assign(in.namespaces.size(), 0);
  plan->budgets_met = true;
  for (size_t n = 0; n < fq.size(); ++n) {
    plan->ns_avg_loss[n] = fsum[n] > 0 ? fq[n] / fsum[n] : 0;
    const double budget = in.namespaces[n].avg_loss;
    if (budget >= 0 && plan->ns_avg_loss[n] > budget * (1 + 1e-9) + 1e-12) plan->budgets_met = false;
  }
}

absl::Status CheckPlan(const PolicyInput& in, const PlacementPlan& plan) {
  if (plan.target.size() != in.entries.size()) {
    return absl::InternalError(absl::StrCat("plan has ", plan.target.size(), " targets for ",
                                            in.entries.size(), " entries"));
  }
  uint64_t dram = 0, ssd = 0;
  for (size_t i = 0; i < in.entries.size(); ++i) {
    const EntryInput& e = in.entries[i];
    const Placement p = plan.target[i];
    if ((p.tier == Tier::kNone) != (p.config == kNoConfig)) {
      return absl::InternalError(absl::StrCat("entry ", i, ": tier and config disagree"));
    }
    if (p.config != kNoConfig &&
        (p.config < 0 || static_cast<size_t>(p.config) >= in.configs.size() ||
         in.classes[e.size_class].bytes[p.config] == 0)) {
      return absl::InternalError(absl::StrCat("entry ", i, ": invalid target config"));
    }
    if (e.flags & kPinned) {
      if (!(p == Current(e))) return absl::InternalError(absl::StrCat("entry ", i, ": pinned but moved"));
    } else if (p.tier != Tier::kNone) {
      if (in.QLoss(i, p.config) > in.namespaces[e.ns].max_loss) {
        return absl::InternalError(absl::StrCat("entry ", i, ": quality floor violated"));
      }
      if (!Reachable(in, i, p.config)) {
        return absl::InternalError(absl::StrCat("entry ", i, ": target config not reachable"));
      }
    }
    const uint64_t b = StoredBytes(in, i, p);
    (p.tier == Tier::kDram ? dram : ssd) += p.tier == Tier::kNone ? 0 : b;
  }
  if (dram > in.dram_capacity) {
    return absl::InternalError(absl::StrCat("DRAM over capacity: ", dram, " > ", in.dram_capacity));
  }
  if (ssd > in.ssd_capacity) {
    return absl::InternalError(absl::StrCat("SSD over capacity: ", ssd, " > ", in.ssd_capacity));
  }
  return absl::OkStatus();
}

std::vector<float> MedianClassLoss(const PolicyInput& in) {
  const size_t k = in.configs.size(), nc = in.classes.size(), nn = in.namespaces.size();
  constexpr size_t kSample = 255;  // a median needs no more; keeps 1M-entry plans cheap
  std::vector<std::vector<uint32_t>> members(nn * nc);
  for (size_t i = 0; i < in.entries.size(); ++i) {
    const EntryInput& e = in.entries[i];
    if (e.flags & kPinned) continue;
    std::vector<uint32_t>& m = members[size_t{e.ns} * nc + e.size_class];
    if (m.size() < kSample) m.push_back(static_cast<uint32_t>(i));
  }
  std::vector<float> out(nn * nc * k, std::nanf(""));
  std::vector<float> v;
  for (size_t g = 0; g < members.size(); ++g) {
    if (members[g].empty()) continue;
    for (size_t c = 0; c < k; ++c) {
      v.clear();
      for (uint32_t i : members[g]) v.push_back(in.QLoss(i, c));
      std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
      out[g * k + c] = v[v.size() / 2];
    }
  }
  return out;
}

PutConfigTable PricedPutConfigs(const PolicyInput& in, double lambda_dram, const std::vector<double>& alpha,
                                double fresh_freq) {
  const size_t k = in.configs.size(), nc = in.classes.size(), nn = in.namespaces.size();
  const std::vector<float> q = MedianClassLoss(in);
  // fresh_freq <= 0: a new entry is expected to be as popular as the class's median entry.
  std::vector<double> fq(nn * nc, fresh_freq);
  if (fresh_freq <= 0) {
    std::vector<std::vector<float>> fs(nn * nc);
    for (const EntryInput& e : in.entries) {
      auto& v = fs[size_t{e.ns} * nc + e.size_class];
      if (!(e.flags & kPinned) && v.size() < 255) v.push_back(e.freq);
    }
    for (size_t g = 0; g < fs.size(); ++g) {
      fq[g] = 1.0;
      if (fs[g].empty()) continue;
      std::nth_element(fs[g].begin(), fs[g].begin() + fs[g].size() / 2, fs[g].end());
      fq[g] = std::max(1.0, static_cast<double>(fs[g][fs[g].size() / 2]));
    }
  }
  PutConfigTable out(nn * nc, kNoConfig);
  for (size_t n = 0; n < nn; ++n) {
    const double a = n < alpha.size() ? alpha[n] : in.namespaces[n].alpha;
    for (size_t cl = 0; cl < nc; ++cl) {
      const SizeClass& sc = in.classes[cl];
      double best = HUGE_VAL;
      for (size_t c = 0; c < k; ++c) {
        const float qc = q[(n * nc + cl) * k + c];
        if (sc.bytes[c] == 0 || !std::isfinite(qc) || qc > in.namespaces[n].max_loss) continue;
        const double cost = fq[n * nc + cl] * (in.delay.Delay(Tier::kDram, in.configs[c].family, sc.bytes[c],
                                                         sc.raw_bytes) + a * qc) +
                            lambda_dram * static_cast<double>(sc.bytes[c]);
        if (cost < best) {
          best = cost;
          out[n * nc + cl] = static_cast<ConfigIndex>(c);
        }
      }
    }
  }
  return out;
}

PutConfigTable ModalPutConfigs(const PolicyInput& in, const PlacementPlan& plan) {
  const size_t k = in.configs.size(), nc = in.classes.size(), nn = in.namespaces.size();
  std::vector<uint32_t> count(nn * nc * k, 0);
  for (size_t i = 0; i < in.entries.size() && i < plan.target.size(); ++i) {
    const EntryInput& e = in.entries[i];
    const Placement& t = plan.target[i];
    if ((e.flags & kPinned) || t.tier != Tier::kDram || t.config == kNoConfig) continue;
    ++count[(size_t{e.ns} * nc + e.size_class) * k + static_cast<size_t>(t.config)];
  }
  PutConfigTable out(nn * nc, kNoConfig);
  for (size_t g = 0; g < out.size(); ++g) {
    uint32_t best = 0;
    for (size_t c = 0; c < k; ++c) {
      if (count[g * k + c] > best) {
        best = count[g * k + c];
        out[g] = static_cast<ConfigIndex>(c);
      }
    }
  }
  return out;
}

PutConfigTable Policy::PutConfigs(const PolicyInput& in, const PlacementPlan&) const {
  return PutConfigTable(in.namespaces.size() * in.classes.size(), kNoConfig);
}

}  // namespace adaptcache::policy
