// The optimizer's local search (optimizer_state.h): after the Lagrangian solve, the
// most marginal entries are improved by single and pairwise changes, then the most
// marginal few re-optimised exactly.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "policy/optimizer_state.h"

namespace adaptcache::policy::internal {
namespace {

class LocalSearcher {
 public:
  LocalSearcher(const PolicyInput& in, const AdaptiveOptimizer::State& st, double ld, double ls,
                double cap_d, double cap_s, uint64_t use_d, uint64_t use_s,
                std::vector<Placement>* target)
      : in_(in),
        st_(st),
        ld_(ld),
        ls_(ls),
        cd_(static_cast<int64_t>(cap_d)),
        cs_(static_cast<int64_t>(cap_s)),
        ud_(static_cast<int64_t>(use_d)),
        us_(static_cast<int64_t>(use_s)),
        target_(target) {
    const DelayModelOptions& d = in.delay.options();
    lat_[1] = d.dram.latency_s;
    lat_[2] = d.ssd.latency_s;
    ib_[1] = 1.0 / d.dram.bandwidth_Bps;
    ib_[2] = 1.0 / d.ssd.bandwidth_Bps;
  }

  // Keeps the `window` active entries of smallest regret: how much the Lagrangian cost
  // must move before another option wins, from the hull (cheap; every minimiser of a
  // price is a hull vertex).
  void PickMarginal(size_t window);
  // Every allowed option of each marginal entry, with its cost and bytes.
  void ListOptions();
  // Applies the best improving single or pairwise change until none is left.
  void ImprovePairwise();
  // Re-optimises the `exact_window` most marginal entries (the others fixed) by branch
  // and bound over their options, cheapest first, within `exact_nodes` nodes.
  void SolveExactly(size_t exact_window, uint64_t exact_nodes);

  uint64_t use_d() const { return static_cast<uint64_t>(ud_); }
  uint64_t use_s() const { return static_cast<uint64_t>(us_); }

 private:
  struct Opt {
    Placement p;
    double cost;
    int64_t bd, bs;
  };

  uint64_t BytesOf(uint32_t i, Placement p) const {
    return p.tier == Tier::kNone ? 0 : st_.bytes[in_.entries[i].size_class * st_.k + p.config];
  }
  double CostOf(uint32_t i, Placement p) const {  // f · cost
    const EntryInput& e = in_.entries[i];
    if (p.tier == Tier::kNone) return e.freq * st_.miss[e.size_class];
    const int t = static_cast<int>(p.tier);
    const size_t j = e.size_class * st_.k + p.config;
    return e.freq * (lat_[t] + ib_[t] * st_.bytes[j] + st_.dec[j] + st_.hull_alpha[e.ns] * in_.QLoss(i, p.config));
  }
  double Regret(uint32_t i, Placement cur, bool* on_hull) const;
  void Apply(size_t m, size_t o) {
    ud_ += opts_[m][o].bd - opts_[m][cur_[m]].bd;
    us_ += opts_[m][o].bs - opts_[m][cur_[m]].bs;
    cur_[m] = o;
    (*target_)[regret_[m].second] = opts_[m][o].p;
  }

  const PolicyInput& in_;
  const AdaptiveOptimizer::State& st_;
  const double ld_, ls_;
  double lat_[3] = {0, 0, 0};
  double ib_[3] = {0, 0, 0};
  const int64_t cd_, cs_;  // capacities
  int64_t ud_, us_;        // uses
  std::vector<Placement>* const target_;
  std::vector<std::pair<double, uint32_t>> regret_;  // (f · regret, entry) of the marginal
  std::vector<std::vector<Opt>> opts_;               // by marginal entry
  std::vector<size_t> cur_;                          // its current option
};

double LocalSearcher::Regret(uint32_t i, Placement cur, bool* on_hull) const {
  const double f = in_.entries[i].freq;
  const float* s = &st_.vs[st_.off[i]];
  const float* g = &st_.vg[st_.off[i]];
  const int len = st_.len[i];
  const double sd = ib_[1] + ld_ / f, ss = ib_[2] + ls_ / f;
  double lc = st_.miss[in_.entries[i].size_class];
  int cv = -1;
  *on_hull = true;
  if (cur.tier != Tier::kNone) {
    for (int v = 0; v < len; ++v) {
      if (st_.vc[st_.off[i] + v] == cur.config) cv = v;
    }
    if (cv < 0) {
      *on_hull = false;
      return 0;
    }
    lc = (cur.tier == Tier::kDram ? lat_[1] + sd * s[cv] : lat_[2] + ss * s[cv]) + g[cv];
  }
  double r = cur.tier == Tier::kNone ? HUGE_VAL : std::fabs(st_.miss[in_.entries[i].size_class] - lc);
  for (int v = 0; v < len; ++v) {
    const double cd = lat_[1] + sd * s[v] + g[v], cs = lat_[2] + ss * s[v] + g[v];
    if (!(v == cv && cur.tier == Tier::kDram)) r = std::min(r, std::fabs(cd - lc));
    if (!(v == cv && cur.tier == Tier::kSsd)) r = std::min(r, std::fabs(cs - lc));
  }
  return f * r;
}

void LocalSearcher::PickMarginal(size_t window) {
  regret_.reserve(st_.active.size());
  for (uint32_t i : st_.active) {
    bool on_hull;
    const double r = Regret(i, (*target_)[i], &on_hull);
    if (!on_hull) continue;  // not a hull point (retained as is): leave it alone
    regret_.emplace_back(r, i);
  }
  if (regret_.size() > window) {
    std::nth_element(regret_.begin(), regret_.begin() + window, regret_.end());
    regret_.resize(window);
  }
}

void LocalSearcher::ListOptions() {
  opts_.assign(regret_.size(), {});
  cur_.assign(regret_.size(), 0);
  for (size_t m = 0; m < regret_.size(); ++m) {
    const uint32_t i = regret_[m].second;
    const EntryInput& e = in_.entries[i];
    auto add = [&](Placement p) {
      const int64_t b = static_cast<int64_t>(BytesOf(i, p));
      opts_[m].push_back({p, CostOf(i, p), p.tier == Tier::kDram ? b : 0, p.tier == Tier::kSsd ? b : 0});
      if (p == (*target_)[i]) cur_[m] = opts_[m].size() - 1;
    };
    add(Placement{});
    for (size_t c = 0; c < st_.k; ++c) {
      const auto ci = static_cast<ConfigIndex>(c);
      if (in_.QLoss(i, c) > in_.namespaces[e.ns].max_loss || !Reachable(in_, i, ci)) continue;
      add({ci, Tier::kDram});
      add({ci, Tier::kSsd});
    }
  }
}

void LocalSearcher::ImprovePairwise() {
  for (int pass = 0; pass < 64; ++pass) {
    double best = 0;
    size_t ba = 0, bo = 0, bb = SIZE_MAX, bp = 0;
    for (size_t a = 0; a < opts_.size(); ++a) {
      const Opt& ca = opts_[a][cur_[a]];
      for (size_t oa = 0; oa < opts_[a].size(); ++oa) {
        const Opt& na = opts_[a][oa];
        const int64_t d1 = ud_ - ca.bd + na.bd, s1 = us_ - ca.bs + na.bs;
        const double g1 = na.cost - ca.cost;
        if (oa != cur_[a] && d1 <= cd_ && s1 <= cs_ && g1 < best) {
          best = g1, ba = a, bo = oa, bb = SIZE_MAX;
        }
        if (oa == cur_[a]) continue;
        for (size_t b = a + 1; b < opts_.size(); ++b) {
          const Opt& cb = opts_[b][cur_[b]];
          for (size_t ob = 0; ob < opts_[b].size(); ++ob) {
            if (ob == cur_[b]) continue;
            const Opt& nb = opts_[b][ob];
            const double g2 = g1 + nb.cost - cb.cost;
            if (g2 >= best) continue;
            if (d1 - cb.bd + nb.bd > cd_ || s1 - cb.bs + nb.bs > cs_) continue;
            best = g2, ba = a, bo = oa, bb = b, bp = ob;
          }
        }
      }
    }
    if (!(best < -1e-15)) break;
    Apply(ba, bo);
    if (bb != SIZE_MAX) Apply(bb, bp);
  }
}

void LocalSearcher::SolveExactly(size_t exact_window, uint64_t exact_nodes) {
  std::vector<size_t> sel(opts_.size());
  for (size_t m = 0; m < sel.size(); ++m) sel[m] = m;
  std::sort(sel.begin(), sel.end(), [&](size_t a, size_t b) { return regret_[a].first < regret_[b].first; });
  if (sel.size() > exact_window) sel.resize(exact_window);
  const size_t w = sel.size();
  if (w == 0) return;
  std::vector<std::vector<size_t>> order(w);
  std::vector<double> rest_min(w + 1, 0);
  int64_t base_d = ud_, base_s = us_;
  double incumbent = 0;
  for (size_t x = 0; x < w; ++x) {
    const size_t m = sel[x];
    base_d -= opts_[m][cur_[m]].bd;
    base_s -= opts_[m][cur_[m]].bs;
    incumbent += opts_[m][cur_[m]].cost;
    order[x].resize(opts_[m].size());
    for (size_t o = 0; o < order[x].size(); ++o) order[x][o] = o;
    std::sort(order[x].begin(), order[x].end(),
              [&](size_t a, size_t b) { return opts_[m][a].cost < opts_[m][b].cost; });
  }
  for (size_t x = w; x-- > 0;) rest_min[x] = rest_min[x + 1] + opts_[sel[x]][order[x][0]].cost;
  std::vector<size_t> pick(w), best_pick(w);
  double best_cost = incumbent * (1 - 1e-12);
  bool found = false;
  uint64_t nodes = 0;
  auto dfs = [&](auto&& self, size_t x, int64_t dd, int64_t ss, double c) -> void {
    if (++nodes > exact_nodes) return;
    if (x == w) {
      if (c < best_cost) best_cost = c, best_pick = pick, found = true;
      return;
    }
    const size_t m = sel[x];
    for (size_t o : order[x]) {
      const Opt& op = opts_[m][o];
      if (c + op.cost + rest_min[x + 1] >= best_cost) break;  // options sorted by cost
      if (dd + op.bd > cd_ || ss + op.bs > cs_) continue;
      pick[x] = o;
      self(self, x + 1, dd + op.bd, ss + op.bs, c + op.cost);
    }
  };
  dfs(dfs, 0, base_d, base_s, 0.0);
  if (!found) return;
  ud_ = base_d;
  us_ = base_s;
  for (size_t x = 0; x < w; ++x) {
    const size_t m = sel[x];
    cur_[m] = best_pick[x];
    ud_ += opts_[m][cur_[m]].bd;
    us_ += opts_[m][cur_[m]].bs;
    (*target_)[regret_[m].second] = opts_[m][cur_[m]].p;
  }
}

}  // namespace

void LocalSearch(const PolicyInput& in, const AdaptiveOptimizer::State& st, double ld, double ls,
                 double cap_d, double cap_s, size_t window, size_t exact_window,
                 uint64_t exact_nodes, uint64_t* use_d, uint64_t* use_s,
                 std::vector<Placement>* target) {
  LocalSearcher s(in, st, ld, ls, cap_d, cap_s, *use_d, *use_s, target);
  s.PickMarginal(window);
  s.ListOptions();
  s.ImprovePairwise();
  s.SolveExactly(exact_window, exact_nodes);
  *use_d = s.use_d();
  *use_s = s.use_s();
}

}  // namespace adaptcache::policy::internal
