#include "policy/optimizer.h"

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "policy/optimizer_state.h"

namespace adaptcache::policy {
namespace {

constexpr size_t kFillBatch = 4096;
constexpr int kHistShift = 15;  // float bits >> 15: 8 mantissa bits, 1/256 octave
constexpr size_t kHistBins = size_t{1} << (31 - kHistShift);

size_t PriceBin(double lambda) {
  if (!(lambda > 0)) return 0;
  const float x = static_cast<float>(lambda);
  return std::bit_cast<uint32_t>(x) >> kHistShift;  // monotone in x for x > 0
}

// Smallest price in bin b + 1: at it, every breakpoint of bins <= b has happened.
double BinUpperEdge(size_t b) {
  const uint32_t bits = static_cast<uint32_t>((b + 1) << kHistShift);
  if (bits >= 0x7f800000u) return DBL_MAX;
  return std::bit_cast<float>(bits);
}

// The vertex minimising g + sigma·s on a lower convex hull sorted by ascending s
// (descending g). Ties go to the smaller vertex.
inline int Query(const float* s, const float* g, int len, double sigma, double* best) {
  int v = 0;
  double c = g[0] + sigma * s[0];
  while (v + 1 < len) {
    const double c2 = g[v + 1] + sigma * s[v + 1];
    if (!(c2 < c)) break;
    c = c2;
    ++v;
  }
  *best = c;
  return v;
}

bool SameDelay(const DelayModelOptions& a, const DelayModelOptions& b) {
  return a.dram.latency_s == b.dram.latency_s && a.dram.bandwidth_Bps == b.dram.bandwidth_Bps &&
         a.ssd.latency_s == b.ssd.latency_s && a.ssd.bandwidth_Bps == b.ssd.bandwidth_Bps &&
         a.recompute_s_per_token == b.recompute_s_per_token && a.decode_Bps == b.decode_Bps &&
         a.decode_launch_s == b.decode_launch_s;
}

bool Close(double a, double b, double tol) {
  return std::fabs(a - b) <= tol * std::max(std::fabs(a), std::fabs(b));
}

enum : uint8_t { kTNone = 0, kTDram = 1, kTSsd = 2, kTFixed = 3 };

}  // namespace

AdaptiveOptimizer::AdaptiveOptimizer(OptimizerOptions options)
    : options_(options), state_(std::make_unique<State>()) {}
AdaptiveOptimizer::~AdaptiveOptimizer() = default;

double AdaptiveOptimizer::StateBytesPerEntry() const {
  const State& s = *state_;
  const size_t n = s.snap.size();
  if (n == 0) return 0;
  const double per_entry = sizeof(State::Snap) + sizeof(uint32_t) + 2 + 2 /*tt,tv*/ + 4 /*active*/;
  const double vertices = s.vs.capacity() * 4.0 + s.vg.capacity() * 4.0 + s.vc.capacity();
  return per_entry + vertices / n;
}

namespace {

// Per-solve context: constants and the state, so helpers stay small.
struct Solver {
  const PolicyInput& in;
  AdaptiveOptimizer::State& st;
  double lat_d, lat_s, ib_d, ib_s;

  double Miss(uint32_t i) const { return st.miss[in.entries[i].size_class]; }
  uint64_t VBytes(uint32_t i, int v) const {
    return st.bytes[in.entries[i].size_class * st.k + st.vc[st.off[i] + v]];
  }
  double CostAt(uint32_t i, int v, bool dram) const {  // per unit frequency, λ = 0
    const uint32_t o = st.off[i] + v;
    return (dram ? lat_d + ib_d * st.vs[o] : lat_s + ib_s * st.vs[o]) + st.vg[o];
  }
  double Cost(uint32_t i) const {
    switch (st.tt[i]) {
      case kTDram:
        return CostAt(i, st.tv[i], true);
      case kTSsd:
        return CostAt(i, st.tv[i], false);
      default:
        return Miss(i);
    }
  }

  // The smallest price (to histogram resolution) at which the tier's use fits `cap`,
  // with the other tier's price fixed.
  double SolvePrice(bool dram, double other_lambda, double cap) {
    const double lat_t = dram ? lat_d : lat_s, ib_t = dram ? ib_d : ib_s;
    const double lat_o = dram ? lat_s : lat_d, ib_o = dram ? ib_s : ib_d;
    // The histogram is all zero between calls; only the touched bin range is scanned
    // and cleared, so small instances do not pay for 64Ki bins.
    size_t lo = kHistBins, hi = 0;
    auto add = [&](double lambda, double bytes) {
      const size_t b = PriceBin(lambda);
      st.hist[b] += bytes;
      lo = std::min(lo, b);
      hi = std::max(hi, b);
    };
    double base = 0;
    for (uint32_t i : st.active) {
      const double f = in.entries[i].freq;
      const float* s = &st.vs[st.off[i]];
      const float* g = &st.vg[st.off[i]];
      const int len = st.len[i];
      double best_o, c0;
      Query(s, g, len, ib_o + other_lambda / f, &best_o);
      const double outside = std::min(Miss(i), lat_o + best_o);
      int v = Query(s, g, len, ib_t, &c0);
      if (!(lat_t + c0 < outside)) continue;
      base += VBytes(i, v);
      for (;;) {
        const double exit = f * ((outside - lat_t - g[v]) / s[v] - ib_t);
        double sw = DBL_MAX;
        if (v > 0) sw = f * ((g[v - 1] - g[v]) / (s[v] - s[v - 1]) - ib_t);
        if (v == 0 || exit <= sw) {
          add(exit, static_cast<double>(VBytes(i, v)));
          break;
        }
        add(sw, static_cast<double>(VBytes(i, v) - VBytes(i, v - 1)));
        --v;
      }
    }
    double price = 0;
    if (base > cap) {
      price = DBL_MAX;
      double cum = 0;
      for (size_t b = lo; b <= hi; ++b) {
        cum += st.hist[b];
        if (base - cum <= cap) {
          price = BinUpperEdge(b);
          break;
        }
      }
    }
    if (lo <= hi) std::fill(st.hist.begin() + lo, st.hist.begin() + hi + 1, 0.0);
    return price;
  }

  void Assign(double ld, double ls) {
    for (uint32_t i : st.active) {
      const double f = in.entries[i].freq;
      const float* s = &st.vs[st.off[i]];
      const float* g = &st.vg[st.off[i]];
      const int len = st.len[i];
      double cd, cs;
      const int vd = Query(s, g, len, ib_d + ld / f, &cd);
      const int vs = Query(s, g, len, ib_s + ls / f, &cs);
      cd += lat_d;
      cs += lat_s;
      const double cn = Miss(i);
      if (cd < cs && cd < cn) {
        st.tt[i] = kTDram;
        st.tv[i] = vd;
      } else if (cs < cn) {
        st.tt[i] = kTSsd;
        st.tv[i] = vs;
      } else {
        st.tt[i] = kTNone;
      }
    }
  }

  struct Cand {
    double score;
    uint32_t entry;
    uint8_t tier;    // tier after the move
    uint8_t vertex;  // vertex after the move
  };

  // Downgrades DRAM (dram = true) or SSD entries, cheapest cost per byte freed first,
  // until the tier's use fits. Returns false if it cannot.
  bool Repair(bool dram, double cap, double ls, uint64_t* use_d, uint64_t* use_s, double cap_s) {
    uint64_t* use = dram ? use_d : use_s;
    std::vector<Cand> cands;
    for (int pass = 0; pass < 256 && *use > cap; ++pass) {
      cands.clear();
      for (uint32_t i : st.active) {
        if (st.tt[i] != (dram ? kTDram : kTSsd)) continue;
        const double f = in.entries[i].freq;
        const int v = st.tv[i];
        const double cur = CostAt(i, v, dram);
        const double b = static_cast<double>(VBytes(i, v));
        Cand best{f * (Miss(i) - cur) / b, i, kTNone, 0};
        if (v > 0) {
          const double sc = f * (CostAt(i, v - 1, dram) - cur) / (b - VBytes(i, v - 1));
          if (sc < best.score) best = {sc, i, dram ? kTDram : kTSsd, static_cast<uint8_t>(v - 1)};
        }
        if (dram) {
          double cs;
          const int u = Query(&st.vs[st.off[i]], &st.vg[st.off[i]], st.len[i], ib_s + ls / f, &cs);
          const double sc = (f * (CostAt(i, u, false) - cur) + ls * VBytes(i, u)) / b;
          if (sc < best.score) best = {sc, i, kTSsd, static_cast<uint8_t>(u)};
        }
        cands.push_back(best);
      }
      if (cands.empty()) return false;
      std::sort(cands.begin(), cands.end(),
                [](const Cand& a, const Cand& b) { return a.score < b.score; });
      for (const Cand& c : cands) {
        if (*use <= cap) break;
        const uint32_t i = c.entry;
        const uint64_t before = VBytes(i, st.tv[i]);
        uint8_t tier = c.tier;
        if (dram && tier == kTSsd && *use_s + VBytes(i, c.vertex) > cap_s) tier = kTNone;
        *use -= before;
        if (tier == kTDram || (!dram && tier == kTSsd)) *use += VBytes(i, c.vertex);
        if (dram && tier == kTSsd) *use_s += VBytes(i, c.vertex);
        st.tt[i] = tier;
        st.tv[i] = c.vertex;
      }
    }
    return *use <= cap;
  }

  // Spends leftover capacity of one tier on the upgrades with the best benefit per byte.
  void Fill(bool dram, double cap, uint64_t* use_d, uint64_t* use_s, uint32_t passes) {
    uint64_t* use = dram ? use_d : use_s;
    const uint8_t mine = dram ? kTDram : kTSsd;
    std::vector<Cand> cands;
    for (uint32_t pass = 0; pass < passes && *use < cap; ++pass) {
      const double left = cap - *use;
      cands.clear();
      for (uint32_t i : st.active) {
        const double f = in.entries[i].freq;
        const uint8_t t = st.tt[i];
        if (t == mine) {
          const int v = st.tv[i];
          if (v + 1 >= st.len[i]) continue;
          const double extra = static_cast<double>(VBytes(i, v + 1) - VBytes(i, v));
          const double gain = f * (CostAt(i, v, dram) - CostAt(i, v + 1, dram));
          if (gain > 0 && extra <= left) cands.push_back({gain / extra, i, mine, uint8_t(v + 1)});
          continue;
        }
        if (!dram && t == kTDram) continue;
        const double cur = Cost(i);
        Cand best{0, i, mine, 0};
        for (int w = 0; w < st.len[i]; ++w) {
          const double b = static_cast<double>(VBytes(i, w));
          if (b > left) break;
          const double gain = f * (cur - CostAt(i, w, dram));
          if (gain > 0 && gain / b > best.score) best = {gain / b, i, mine, uint8_t(w)};
        }
        if (best.score > 0) cands.push_back(best);
      }
      if (cands.empty()) return;
      // Only the best few thousand can matter for what is left; later passes take more.
      auto better = [](const Cand& a, const Cand& b) { return a.score > b.score; };
      if (cands.size() > kFillBatch) {
        std::nth_element(cands.begin(), cands.begin() + kFillBatch, cands.end(), better);
        cands.resize(kFillBatch);
      }
      std::sort(cands.begin(), cands.end(), better);
      bool applied = false;
      for (const Cand& c : cands) {
        const uint32_t i = c.entry;
        const uint64_t before = st.tt[i] == mine ? VBytes(i, st.tv[i]) : 0;
        const uint64_t after = VBytes(i, c.vertex);
        if (*use - before + after > cap) continue;
        if (dram && st.tt[i] == kTSsd) *use_s -= VBytes(i, st.tv[i]);
        *use = *use - before + after;
        st.tt[i] = mine;
        st.tv[i] = c.vertex;
        applied = true;
      }
      if (!applied) return;
    }
  }
};

}  // namespace

// Builds (or reuses) every entry's hull for the given α per namespace; returns how many
// were rebuilt.
static uint64_t BuildHulls(const PolicyInput& in, AdaptiveOptimizer::State& st,
                           const std::vector<double>& alpha, bool reuse) {
  const size_t n = in.entries.size();
  const size_t k = st.k;
  if (!reuse || st.wasted > st.vs.size() / 2) {
    st.snap.assign(n, {});
    st.off.assign(n, 0);
    st.len.assign(n, 0);
    st.cap.assign(n, 0);
    st.vs.clear();
    st.vg.clear();
    st.vc.clear();
    st.wasted = 0;
    reuse = false;
  }
  float hs[kMaxConfigs], hg[kMaxConfigs];
  uint8_t hc[kMaxConfigs];
  uint64_t rebuilt = 0;
  for (size_t i = 0; i < n; ++i) {
    const EntryInput& e = in.entries[i];
    const AdaptiveOptimizer::State::Snap snap{e.size_class, e.config, static_cast<uint8_t>(e.tier),
                                              static_cast<uint8_t>(e.flags & kHasMaster), e.ns};
    if (reuse && st.snap[i] == snap && st.hull_alpha[e.ns] == alpha[e.ns]) continue;
    ++rebuilt;
    int len = 0;
    if (e.tier != Tier::kNone) {
      const double a = alpha[e.ns];
      const double floor = in.namespaces[e.ns].max_loss;
      const uint32_t cls = e.size_class;
      const float* q = &in.qloss[i * k];
      // With a master copy (or stored raw) every applicable config is reachable.
      const bool free_choice =
          (e.flags & kHasMaster) || in.configs[e.config].family == CodecId::kRaw;
      for (uint32_t j = 0; j < st.order_len[cls]; ++j) {
        const uint8_t c = st.order[st.order_begin[cls] + j];
        if (q[c] > floor || (!free_choice && !Reachable(in, i, c))) continue;
        const float s = static_cast<float>(st.bytes[cls * k + c]);
        const float g = static_cast<float>(st.dec[cls * k + c] + a * q[c]);
        if (len > 0 && !(g < hg[len - 1])) continue;  // dominated: bigger, not better
        if (len > 0 && s == hs[len - 1]) --len;       // same size, better: replace
        while (len >= 2 && (double(hg[len - 1]) - hg[len - 2]) * (double(s) - hs[len - 1]) >=
                               (double(g) - hg[len - 1]) * (double(hs[len - 1]) - hs[len - 2])) {
          --len;  // not on the lower hull
        }
        hs[len] = s;
        hg[len] = g;
        hc[len] = c;
        ++len;
      }
    }
    uint32_t o = st.off[i];
    if (!reuse || len > st.cap[i]) {
      st.wasted += st.cap[i];
      o = static_cast<uint32_t>(st.vs.size());
      st.vs.insert(st.vs.end(), hs, hs + len);
      st.vg.insert(st.vg.end(), hg, hg + len);
      st.vc.insert(st.vc.end(), hc, hc + len);
      st.cap[i] = static_cast<uint8_t>(len);
    } else {
      std::copy(hs, hs + len, st.vs.begin() + o);
      std::copy(hg, hg + len, st.vg.begin() + o);
      std::copy(hc, hc + len, st.vc.begin() + o);
    }
    st.off[i] = o;
    st.len[i] = static_cast<uint8_t>(len);
    st.snap[i] = snap;
  }
  st.hull_alpha = alpha;
  return rebuilt;
}

static void PrepareClasses(const PolicyInput& in, AdaptiveOptimizer::State& st) {
  const size_t k = in.configs.size();
  st.k = k;
  st.order.clear();
  st.order_begin.clear();
  st.order_len.clear();
  st.dec.assign(in.classes.size() * k, 0);
  st.bytes.assign(in.classes.size() * k, 0);
  st.miss.assign(in.classes.size(), 0);
  for (size_t c = 0; c < in.classes.size(); ++c) {
    const SizeClass& sc = in.classes[c];
    std::vector<uint8_t> ord;
    for (size_t j = 0; j < k; ++j) {
      st.bytes[c * k + j] = sc.bytes[j];
      st.dec[c * k + j] = in.delay.DecodeDelay(in.configs[j].family, sc.raw_bytes);
      if (sc.bytes[j] > 0) ord.push_back(static_cast<uint8_t>(j));
    }
    std::stable_sort(ord.begin(), ord.end(),
                     [&](uint8_t a, uint8_t b) { return sc.bytes[a] < sc.bytes[b]; });
    st.order_begin.push_back(static_cast<uint32_t>(st.order.size()));
    st.order_len.push_back(static_cast<uint32_t>(ord.size()));
    st.order.insert(st.order.end(), ord.begin(), ord.end());
    st.miss[c] = in.delay.MissCost(sc.tokens, sc.raw_bytes);
  }
}

// One full solve for fixed α: prices, assignment, repair, fill, retention.
static void SolveOnce(const PolicyInput& in, AdaptiveOptimizer::State& st,
                      const OptimizerOptions& opt, PlacementPlan* plan) {
  const size_t n = in.entries.size();
  const DelayModelOptions& d = in.delay.options();
  Solver sv{in, st, d.dram.latency_s, d.ssd.latency_s, 1.0 / d.dram.bandwidth_Bps,
            1.0 / d.ssd.bandwidth_Bps};
  st.hist.resize(kHistBins, 0.0);  // zero between solves (SolvePrice clears what it uses)
  st.active.clear();
  st.tt.assign(n, kTNone);
  st.tv.assign(n, 0);
  uint64_t pinned_d = 0, pinned_s = 0;
  for (size_t i = 0; i < n; ++i) {
    const EntryInput& e = in.entries[i];
    if (e.flags & kPinned) {
      st.tt[i] = kTFixed;
      if (e.tier == Tier::kDram) pinned_d += st.bytes[e.size_class * st.k + e.config];
      if (e.tier == Tier::kSsd) pinned_s += st.bytes[e.size_class * st.k + e.config];
    } else if (e.freq > 0 && st.len[i] > 0) {
      st.active.push_back(static_cast<uint32_t>(i));
    }
  }
  const double cap_d = in.dram_capacity > pinned_d ? double(in.dram_capacity - pinned_d) : 0;
  const double cap_s = in.ssd_capacity > pinned_s ? double(in.ssd_capacity - pinned_s) : 0;

  double ld = st.lambda_d, ls = st.lambda_s;
  uint32_t rounds = 0;
  while (rounds < opt.max_rounds) {
    ++rounds;
    const double nd = sv.SolvePrice(true, ls, cap_d);
    const double ns = sv.SolvePrice(false, nd, cap_s);
    const bool done = Close(nd, ld, opt.price_tolerance) && Close(ns, ls, opt.price_tolerance);
    ld = nd;
    ls = ns;
    if (done) break;
  }
  st.lambda_d = ld;
  st.lambda_s = ls;
  sv.Assign(ld, ls);

  uint64_t use_d = 0, use_s = 0;
  for (uint32_t i : st.active) {
    if (st.tt[i] == kTDram) use_d += sv.VBytes(i, st.tv[i]);
    if (st.tt[i] == kTSsd) use_s += sv.VBytes(i, st.tv[i]);
  }
  plan->totals.lagrangian_optimal = use_d <= cap_d && use_s <= cap_s &&
                                    (ld == 0 || use_d == cap_d) && (ls == 0 || use_s == cap_s);
  sv.Repair(true, cap_d, ls, &use_d, &use_s, cap_s);
  sv.Repair(false, cap_s, ls, &use_d, &use_s, cap_s);
  sv.Fill(true, cap_d, &use_d, &use_s, opt.max_fill_passes);
  sv.Fill(false, cap_s, &use_d, &use_s, opt.max_fill_passes);

  plan->target.assign(n, Placement{});
  std::vector<uint32_t> retain;
  for (size_t i = 0; i < n; ++i) {
    const EntryInput& e = in.entries[i];
    switch (st.tt[i]) {
      case kTFixed:
        if (e.tier != Tier::kNone) plan->target[i] = {e.config, e.tier};
        break;
      case kTDram:
      case kTSsd:
        plan->target[i] = {static_cast<ConfigIndex>(st.vc[st.off[i] + st.tv[i]]),
                           st.tt[i] == kTDram ? Tier::kDram : Tier::kSsd};
        break;
      default:
        break;
    }
  }
  internal::LocalSearch(in, st, ld, ls, cap_d, cap_s, opt.local_search_window, opt.exact_window,
                        opt.exact_nodes, &use_d, &use_s, &plan->target);
  for (size_t i = 0; i < n; ++i) {
    const EntryInput& e = in.entries[i];
    // Not worth a place: keep it where it is if that is allowed and fits (no churn).
    if (st.tt[i] != kTFixed && plan->target[i].tier == Tier::kNone && e.tier != Tier::kNone &&
        in.QLoss(i, e.config) <= in.namespaces[e.ns].max_loss) {
      retain.push_back(static_cast<uint32_t>(i));
    }
  }
  std::sort(retain.begin(), retain.end(), [&](uint32_t a, uint32_t b) {
    return in.entries[a].freq > in.entries[b].freq;
  });
  for (uint32_t i : retain) {
    const EntryInput& e = in.entries[i];
    const uint64_t b = st.bytes[e.size_class * st.k + e.config];
    const double f = e.freq;
    // Only if staying does not cost more than the recompute it saves.
    if (f > 0 && PlacementCost(in, i, {e.config, e.tier}) > st.miss[e.size_class]) continue;
    uint64_t& use = e.tier == Tier::kDram ? use_d : use_s;
    const double cap = e.tier == Tier::kDram ? cap_d : cap_s;
    if (use + b > cap) continue;
    use += b;
    plan->target[i] = {e.config, e.tier};
  }
  plan->totals.lambda_dram = ld;
  plan->totals.lambda_ssd = ls;
  plan->totals.rounds = rounds;
}

absl::StatusOr<PlacementPlan> AdaptiveOptimizer::Plan(const PolicyInput& in) {
  if (auto s = ValidateInput(in); !s.ok()) return s;
  State& st = *state_;
  const size_t nns = in.namespaces.size();
  std::vector<double> max_loss(nns);
  for (size_t n = 0; n < nns; ++n) max_loss[n] = in.namespaces[n].max_loss;
  bool same = st.valid && st.epoch == in.quality_epoch && st.snap.size() == in.entries.size() &&
              st.max_loss == max_loss && SameDelay(st.delay, in.delay.options()) &&
              st.configs.size() == in.configs.size() && st.classes.size() == in.classes.size();
  for (size_t c = 0; same && c < in.configs.size(); ++c) {
    same = st.configs[c].name == in.configs[c].name && st.configs[c].family == in.configs[c].family;
  }
  for (size_t c = 0; same && c < in.classes.size(); ++c) {
    same = st.classes[c].tokens == in.classes[c].tokens &&
           st.classes[c].raw_bytes == in.classes[c].raw_bytes &&
           st.classes[c].bytes == in.classes[c].bytes;
  }
  if (!same) {
    PrepareClasses(in, st);
    st.valid = false;
    st.epoch = in.quality_epoch;
    st.configs = in.configs;
    st.classes = in.classes;
    st.max_loss = max_loss;
    st.delay = in.delay.options();
  }
  // α per namespace: the input's, or the last search result for average budgets.
  bool search = false;
  if (alpha_.size() != nns) alpha_.assign(nns, 0);
  for (size_t n = 0; n < nns; ++n) {
    if (in.namespaces[n].avg_loss >= 0) {
      search = true;
      if (!st.valid || alpha_[n] <= 0) alpha_[n] = std::max(in.namespaces[n].alpha, 1e-6);
    } else {
      alpha_[n] = in.namespaces[n].alpha;
    }
  }
  PlacementPlan plan;
  last_hulls_rebuilt_ = BuildHulls(in, st, alpha_, st.valid);
  st.valid = true;
  SolveOnce(in, st, options_, &plan);
  FinalizePlan(in, &plan);
  if (!search) return plan;

  // Average budgets: bisection on log α per namespace; the feasible side is kept.
  std::vector<double> lo(nns, 0), hi(nns, HUGE_VAL);
  std::vector<double> a = alpha_;
  for (uint32_t it = 1; it < options_.max_alpha_solves; ++it) {
    bool all_done = true;
    for (size_t n = 0; n < nns; ++n) {
      const double budget = in.namespaces[n].avg_loss;
      if (budget < 0) continue;
      if (plan.ns_avg_loss[n] <= budget) {
        hi[n] = a[n];
      } else {
        lo[n] = a[n];
      }
      const bool done = hi[n] < HUGE_VAL && (hi[n] <= 1e-9 || (lo[n] > 0 && hi[n] / lo[n] < 1.1));
      if (done) {
        a[n] = hi[n];
        continue;
      }
      all_done = false;
      if (hi[n] == HUGE_VAL) {
        a[n] = a[n] * 4;
      } else if (lo[n] == 0) {
        a[n] = a[n] / 8;
      } else {
        a[n] = std::sqrt(lo[n] * hi[n]);
      }
    }
    if (all_done) break;
    if (a == alpha_) break;
    alpha_ = a;
    last_hulls_rebuilt_ += BuildHulls(in, st, alpha_, true);
    SolveOnce(in, st, options_, &plan);
    FinalizePlan(in, &plan);
  }
  // End on the feasible side of every bracket.
  std::vector<double> final_a = alpha_;
  for (size_t n = 0; n < nns; ++n) {
    if (in.namespaces[n].avg_loss >= 0 && hi[n] < HUGE_VAL) final_a[n] = hi[n];
  }
  if (final_a != alpha_) {
    alpha_ = final_a;
    last_hulls_rebuilt_ += BuildHulls(in, st, alpha_, true);
    SolveOnce(in, st, options_, &plan);
    FinalizePlan(in, &plan);
  }
  return plan;
}

PutConfigTable AdaptiveOptimizer::PutConfigs(const PolicyInput& in, const PlacementPlan& plan) const {
  return PricedPutConfigs(in, plan.totals.lambda_dram, alpha_);
}

}  // namespace adaptcache::policy
