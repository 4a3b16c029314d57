#include "bench/eval/sim.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <set>

#include <time.h>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "policy/access_stats.h"

namespace adaptcache::eval {
namespace {

using policy::ConfigIndex;

double ThreadCpu() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

struct Entry {
  uint32_t tokens = 0;
  uint32_t cls = 0;
  uint32_t src = 0;
  float freq = 0;
  int64_t last_ns = 0;
  ConfigIndex config = policy::kNoConfig;
  Tier tier = Tier::kNone;
};

class Sim {
 public:
  Sim(const SimModel& p, const SimOptions& o) : p_(p), o_(o), k_(p.configs.size()) {
    base_.configs = p.configs;
    base_.namespaces.push_back(policy::QualityBudget{o.alpha});
    base_.dram_capacity = o.dram_bytes;
    base_.ssd_capacity = o.ssd_bytes;
    base_.delay = o.delay;
    cap_[1] = o.dram_bytes;
    cap_[2] = o.ssd_bytes;
  }

  absl::StatusOr<SimResult> Run(const Trace& trace, policy::Policy* pol) {
    SimResult res;
    uint64_t reuse_reads = 0, dram_hits = 0, ssd_hits = 0, misses = 0;
    double delay_sum = 0, loss_sum = 0, cold_sum = 0, kl_sum = 0, est_sum = 0;
    uint32_t since_plan = 0;
    for (const TraceRequest& r : trace.requests) {
      const int64_t now = static_cast<int64_t>(r.time_s * 1e9);
      double delay = 0, loss_tok = 0, cold = 0, kl_tok = 0, est_tok = 0;
      uint64_t tok = 0;
      bool prefix = true;
      std::vector<uint32_t> recomputed;
      for (const TraceChunk& c : r.context) {
        const double pos = static_cast<double>(tok);
        tok += c.tokens;
        const double miss_cost =
            p_.score ? p_.score->Recompute(pos, pos + c.tokens) : o_.delay.MissCost(c.tokens, 0);
        auto it = idx_.find(c.id);
        const bool seen = it != idx_.end();
        const uint32_t e = seen ? it->second : NewEntry(c);
        Entry& en = ents_[e];
        if (!seen) {
          cold += miss_cost;
          prefix = false;
        } else {
          ++reuse_reads;
          if (prefix && en.tier != Tier::kNone) {
            const uint64_t b = Bytes(en, en.config);
            if (p_.score) {
              const auto& per_tok = en.tier == Tier::kDram ? p_.score->dram_s_per_token : p_.score->ssd_s_per_token;
              delay += per_tok[en.config] * c.tokens;
            } else {
              delay += o_.delay.Delay(en.tier, p_.configs[en.config].family, b,
                                      uint64_t{en.tokens} * o_.bytes_per_token);
            }
            const size_t row = size_t{en.src} * k_ + en.config;
            loss_tok += p_.truth[row] * c.tokens;
            est_tok += p_.est[row] * c.tokens;
            if (!p_.truth_kl.empty()) kl_tok += p_.truth_kl[row] * c.tokens;
            ++(en.tier == Tier::kDram ? dram_hits : ssd_hits);
          } else {
            prefix = false;
            ++misses;
            delay += miss_cost;
          }
        }
        Touch(e, now);
        if (en.tier == Tier::kNone) recomputed.push_back(e);
      }
      for (uint32_t e : recomputed) Put(e);
      for (const TraceChunk& c : r.puts) {
        auto it = idx_.find(c.id);
        const uint32_t e = it != idx_.end() ? it->second : NewEntry(c);
        if (ents_[e].tier == Tier::kNone) {
          Touch(e, now);
          Put(e);
        }
      }
      delay_sum += delay;
      cold_sum += cold;
      loss_sum += tok ? loss_tok / tok : 0;
      kl_sum += tok ? kl_tok / tok : 0;
      est_sum += tok ? est_tok / tok : 0;
      if (o_.replan_every && ++since_plan >= o_.replan_every) {
        since_plan = 0;
        if (auto st = Replan(pol, now, &res); !st.ok()) return st;
      }
    }
    const double n = std::max<size_t>(trace.requests.size(), 1);
    res.mean_delay_s = delay_sum / n;
    res.mean_loss = loss_sum / n;
    res.mean_kl = kl_sum / n;
    res.mean_est_loss = est_sum / n;
    res.mean_cold_s = cold_sum / n;
    const double rr = std::max<uint64_t>(reuse_reads, 1);
    res.dram_hit = dram_hits / rr;
    res.ssd_hit = ssd_hits / rr;
    res.miss = misses / rr;
    res.transcode_raw_bytes = transcode_;
    res.ssd_write_bytes = ssd_writes_;
    return res;
  }

 private:
  uint32_t NewEntry(const TraceChunk& c) {
    Entry en;
    en.tokens = c.tokens;
    en.src = p_.SourceOf(c.id);
    auto [it, inserted] = cls_of_.try_emplace(c.tokens, static_cast<uint32_t>(base_.classes.size()));
    if (inserted) {
      policy::SizeClass sc;
      sc.tokens = c.tokens;
      sc.raw_bytes = uint64_t{c.tokens} * o_.bytes_per_token;
      for (double frac : p_.size_frac) {
        sc.bytes.push_back(std::max<uint64_t>(1, static_cast<uint64_t>(frac * sc.raw_bytes)));
      }
      base_.classes.push_back(std::move(sc));
    }
    en.cls = it->second;
    ents_.push_back(en);
    idx_.emplace(c.id, static_cast<uint32_t>(ents_.size() - 1));
    return static_cast<uint32_t>(ents_.size() - 1);
  }

  uint64_t Bytes(const Entry& en, ConfigIndex c) const { return base_.classes[en.cls].bytes[c]; }

  void Touch(uint32_t e, int64_t now) {
    Entry& en = ents_[e];
    if (en.tier != Tier::kNone) lru_[static_cast<int>(en.tier)].erase({en.last_ns, e});
    en.freq = policy::AccessStats::Decay(en.freq, en.last_ns, now, static_cast<int64_t>(o_.half_life_s * 1e9)) + 1;
    en.last_ns = std::max(en.last_ns, now);
    if (en.tier != Tier::kNone) lru_[static_cast<int>(en.tier)].insert({en.last_ns, e});
  }

  void Place(uint32_t e, ConfigIndex c, Tier t) {
    Entry& en = ents_[e];
    if (en.tier != Tier::kNone) {
      used_[static_cast<int>(en.tier)] -= Bytes(en, en.config);
      lru_[static_cast<int>(en.tier)].erase({en.last_ns, e});
    }
    en.config = t == Tier::kNone ? policy::kNoConfig : c;
    en.tier = t;
    if (t != Tier::kNone) {
      used_[static_cast<int>(t)] += Bytes(en, c);
      lru_[static_cast<int>(t)].insert({en.last_ns, e});
    }
  }

  // Frees room for `bytes` in `t` by LRU: DRAM demotes to SSD, SSD evicts.
  bool MakeRoom(Tier t, uint64_t bytes) {
    const int ti = static_cast<int>(t);
    if (bytes > cap_[ti]) return false;
    while (used_[ti] + bytes > cap_[ti] && !lru_[ti].empty()) {
      const uint32_t v = lru_[ti].begin()->second;
      const uint64_t vb = Bytes(ents_[v], ents_[v].config);
      if (t == Tier::kDram && MakeRoom(Tier::kSsd, vb)) {
        Place(v, ents_[v].config, Tier::kSsd);
        ssd_writes_ += vb;
      } else {
        Place(v, ents_[v].config, Tier::kNone);
      }
    }
    return used_[ti] + bytes <= cap_[ti];
  }

  void Put(uint32_t e) {
    // The last plan's put config for the class, else the put-time default.
    const uint32_t cl = ents_[e].cls;
    ConfigIndex c = cl < put_configs_.size() ? put_configs_[cl] : policy::kNoConfig;
    if (c == policy::kNoConfig) c = static_cast<ConfigIndex>(o_.put_config);
    if (o_.per_entry_admission && lambda_dram_ > 0 && cl < fresh_freq_.size()) c = OwnPutConfig(e);
    const uint64_t b = Bytes(ents_[e], c);
    if (MakeRoom(Tier::kDram, b)) {
      Place(e, c, Tier::kDram);
    } else if (MakeRoom(Tier::kSsd, b)) {
      Place(e, c, Tier::kSsd);
      ssd_writes_ += b;
    }
  }

  // The per-entry admission candidate (SimOptions::per_entry_admission).
  ConfigIndex OwnPutConfig(uint32_t e) const {
    const Entry& en = ents_[e];
    const policy::SizeClass& sc = base_.classes[en.cls];
    const double fq = fresh_freq_[en.cls];
    ConfigIndex best_c = 0;
    double best = HUGE_VAL;
    for (size_t c = 0; c < k_; ++c) {
      if (sc.bytes[c] == 0) continue;
      const double cost =
          fq * (o_.delay.Delay(Tier::kDram, p_.configs[c].family, sc.bytes[c], sc.raw_bytes) +
                o_.alpha * p_.est[size_t{en.src} * k_ + c]) +
          lambda_dram_ * static_cast<double>(sc.bytes[c]);
      if (cost < best) {
        best = cost;
        best_c = static_cast<ConfigIndex>(c);
      }
    }
    return best_c;
  }

  absl::Status Replan(policy::Policy* pol, int64_t now, SimResult* res) {
    policy::PolicyInput in = base_;
    in.quality_epoch = ++epoch_;
    std::vector<uint32_t> map;
    for (uint32_t e = 0; e < ents_.size(); ++e) {
      const Entry& en = ents_[e];
      if (en.tier == Tier::kNone) continue;
      policy::EntryInput ei;
      ei.freq = policy::AccessStats::Decay(en.freq, en.last_ns, now, static_cast<int64_t>(o_.half_life_s * 1e9));
      ei.size_class = en.cls;
      ei.last_access_ns = en.last_ns;
      ei.config = en.config;
      ei.tier = en.tier;
      ei.flags = o_.master_copies ? policy::kHasMaster : 0;
      in.entries.push_back(ei);
      for (size_t c = 0; c < k_; ++c) in.qloss.push_back(p_.est[size_t{en.src} * k_ + c]);
      map.push_back(e);
    }
    if (map.empty()) return absl::OkStatus();
    const double c0 = ThreadCpu();
    auto plan = pol->Plan(in);
    res->plan_cpu_s += ThreadCpu() - c0;
    ++res->plans;
    if (!plan.ok()) return plan.status();
    for (const policy::Move& m : plan->moves) {
      ++res->moves[static_cast<int>(m.kind)];
      const Entry& en = ents_[map[m.entry]];
      if (m.kind == policy::MoveKind::kTranscode) transcode_ += uint64_t{en.tokens} * o_.bytes_per_token;
      if (m.to.tier == Tier::kSsd && m.kind != policy::MoveKind::kPromote) {
        ssd_writes_ += Bytes(en, m.to.config);
      }
    }
    // Evictions and shrinking first, so the tier totals never pass the capacities.
    for (const policy::Move& m : plan->moves) Place(map[m.entry], m.to.config, m.to.tier);
    if (o_.put_configs) put_configs_ = pol->PutConfigs(in, *plan);  // one namespace: [class]
    if (o_.per_entry_admission) {
      lambda_dram_ = plan->totals.lambda_dram;
      std::vector<std::vector<float>> fs(base_.classes.size());
      for (const policy::EntryInput& ei : in.entries) fs[ei.size_class].push_back(ei.freq);
      fresh_freq_.assign(base_.classes.size(), 1.0);
      for (size_t g = 0; g < fs.size(); ++g) {
        if (fs[g].empty()) continue;
        std::nth_element(fs[g].begin(), fs[g].begin() + fs[g].size() / 2, fs[g].end());
        fresh_freq_[g] = std::max(1.0, static_cast<double>(fs[g][fs[g].size() / 2]));
      }
    }
    return absl::OkStatus();
  }

  const SimModel& p_;
  const SimOptions o_;
  const size_t k_;
  double lambda_dram_ = 0;
  std::vector<double> fresh_freq_;
  policy::PolicyInput base_;  // configs, classes, budgets, capacities, delay
  absl::flat_hash_map<uint32_t, uint32_t> cls_of_;
  absl::flat_hash_map<uint64_t, uint32_t> idx_;
  std::vector<Entry> ents_;
  std::set<std::pair<int64_t, uint32_t>> lru_[3];
  uint64_t used_[3] = {0, 0, 0};
  uint64_t cap_[3] = {0, 0, 0};
  policy::PutConfigTable put_configs_;
  uint64_t epoch_ = 0;
  uint64_t transcode_ = 0;
  uint64_t ssd_writes_ = 0;
};

}  // namespace

uint32_t TemplateOf(uint64_t id, uint32_t templates) {
  uint64_t z = id * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 31)) * 0xBF58476D1CE4E5B9ull;
  return static_cast<uint32_t>((z ^ (z >> 29)) % std::max<uint32_t>(templates, 1));
}

double ScoreDelay::R(double tokens) const {
  double px = 0, py = 0, slope = 0;
  for (const auto& [x, y] : recompute) {
    if (x <= px) continue;
    slope = (y - py) / (x - px);
    if (tokens <= x) return py + slope * (tokens - px);
    px = x;
    py = y;
  }
  return py + slope * (tokens - px);
}

uint32_t SimModel::SourceOf(uint64_t id) const { return TemplateOf(id ^ source_salt, sources); }

SimModel ModelFromProfiles(const ProfileSet& p) {
  SimModel m;
  m.sources = p.templates;
  for (const ConfigProfile& c : p.configs) {
    m.configs.push_back({c.name, c.config.family});
    m.size_frac.push_back(c.ratio);
  }
  m.est.assign(size_t{p.templates} * p.configs.size(), 0.f);
  for (uint32_t t = 0; t < p.templates; ++t) {
    for (size_t c = 0; c < p.configs.size(); ++c) {
      m.est[t * p.configs.size() + c] = static_cast<float>(p.configs[c].qloss[t]);
    }
  }
  m.truth = m.est;
  return m;
}

absl::StatusOr<SimResult> Simulate(const Trace& trace, const SimModel& model, policy::Policy* policy,
                                   const SimOptions& options) {
  const size_t k = model.configs.size();
  if (k == 0 || model.configs[0].family != CodecId::kRaw) {
    return absl::InvalidArgumentError("profiles must start with raw");
  }
  if (options.put_config >= k) return absl::InvalidArgumentError("put_config out of range");
  if (k > policy::kMaxConfigs) return absl::InvalidArgumentError("too many configs");
  if (model.sources == 0 || model.size_frac.size() != k || model.est.size() != size_t{model.sources} * k ||
      model.truth.size() != model.est.size() || (!model.truth_kl.empty() && model.truth_kl.size() != model.est.size())) {
    return absl::InvalidArgumentError("model tables do not match sources x configs");
  }
  if (model.score && (model.score->dram_s_per_token.size() != k || model.score->ssd_s_per_token.size() != k)) {
    return absl::InvalidArgumentError("score delays do not match the configs");
  }
  Sim sim(model, options);
  return sim.Run(trace, policy);
}

absl::StatusOr<SimResult> Simulate(const Trace& trace, const ProfileSet& profiles, policy::Policy* policy,
                                   const SimOptions& options) {
  if (profiles.configs.empty() || profiles.configs[0].config.family != CodecId::kRaw) {
    return absl::InvalidArgumentError("profiles must start with raw");
  }
  const SimModel m = ModelFromProfiles(profiles);
  return Simulate(trace, m, policy, options);
}

}  // namespace adaptcache::eval
