// Ground-truth mode of eval_sim (docs/evaluation.md, "Ground-truth simulation"; issue 18).
//
//  1. Contexts of bench/results/chunk_quality.csv are split into validation (20) and test
//     (30). The probe calibration is fitted on validation chunks only.
//  2. Validation phase: per workload, a trace of seed --val-seed whose chunks map onto
//     validation chunks; every static config, and greedy / adaptive over the alpha sweep
//     per estimate source and variant. Alpha is chosen there (the largest delay saving
//     against the cheapest single static config at least as good).
//  3. Test phase: per workload and each of --seeds, traces whose chunks map onto test
//     chunks; every static, LRU, greedy over the sweep (its curve), greedy and adaptive at
//     their validation alphas. Every run is scored with the measured loss (1 - top-1) of
//     the chunk at the served config, and the scorer's measured delays (ScoreDelay).
//  4. Per seed: the headline metrics (bench/eval/metrics.h); over seeds: mean and 95%
//     t-interval. Writes eval_points.csv, eval_headline.csv, frontier.csv, eval_delays.csv,
//     eval_gt_calibration.csv into --out-dir.
#include "bench/eval/gt_main.h"

#include <atomic>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/eval/ground_truth.h"
#include "bench/eval/metrics.h"
#include "bench/eval/sim.h"
#include "policy/baselines.h"
#include "policy/optimizer.h"

namespace adaptcache::eval {
namespace {

constexpr uint64_t kBytesPerToken = 131072;  // Llama-3.1-8B bf16: 32 MiB per 256-token chunk

struct Job {
  Job(size_t w_, bool val_, uint64_t seed_, double f_, std::string kind_, std::string policy_ = "",
      Estimate est_ = Estimate::kPredicted, std::string variant_ = "base", double alpha_ = 0)
      : w(w_), val(val_), seed(seed_), dram_frac(f_), kind(std::move(kind_)), policy(std::move(policy_)),
        est(est_), variant(std::move(variant_)), alpha(alpha_) {}
  size_t w = 0;         // workload index
  bool val = false;     // validation phase
  uint64_t seed = 0;
  double dram_frac = 0;
  std::string kind;     // static, lru, greedy, adaptive
  std::string policy;   // static config name for static
  Estimate est = Estimate::kPredicted;
  std::string variant = "base";  // base, per-entry-admission, no-admission
  double alpha = 0;
  bool chosen = false;  // the validation-chosen alpha (test phase)
  SimResult res;
  bool ok = false;
  std::string error;
};

struct TraceSet {
  Trace trace;
  uint64_t total_bytes = 0;
  double oracle_s = 0;
};

std::string Fmt(double x) {
  if (!std::isfinite(x)) return "nan";
  return absl::StrFormat("%.6g", x);
}

}  // namespace

int GroundTruthMain(const GtArgs& a) {
  auto gt = LoadGroundTruth(a.ground_truth);
  if (!gt.ok()) return std::fprintf(stderr, "%s\n", gt.status().ToString().c_str()), 1;
  const ContextSplit split = SplitContexts(*gt);
  const ProbeCalibration cal = ProbeCalibration::Fit(*gt, split.validation_chunks);
  std::fprintf(stderr, "ground truth: %zu configs, %zu contexts, %zu chunks (%zu validation, %zu test)\n",
               gt->configs.size(), gt->contexts.size(), gt->chunks.size(), split.validation_chunks.size(),
               split.test_chunks.size());
  {
    // How well each estimate ranks and sizes the truth on the TEST chunks (never fitted on).
    std::ofstream f(a.out_dir + "/eval_gt_calibration.csv", std::ios::trunc);
    f << "config,truth_loss_mean,predicted_mean,probe_cal_mean,predicted_mae,probe_cal_mae\n";
    for (size_t c = 1; c < gt->configs.size(); ++c) {
      double t = 0, p = 0, q = 0, pe = 0, qe = 0;
      for (uint32_t i : split.test_chunks) {
        const GtChunk& ch = gt->chunks[i];
        const double pv = EstimateOf(*gt, ch, c, Estimate::kPredicted, &cal);
        const double qv = EstimateOf(*gt, ch, c, Estimate::kProbe, &cal);
        t += ch.loss[c], p += pv, q += qv, pe += std::fabs(pv - ch.loss[c]), qe += std::fabs(qv - ch.loss[c]);
      }
      const double n = split.test_chunks.size();
      f << gt->configs[c].name << "," << Fmt(t / n) << "," << Fmt(p / n) << "," << Fmt(q / n) << "," << Fmt(pe / n)
        << "," << Fmt(qe / n) << "\n";
    }
  }
  std::string e2e_text;
  {
    std::ifstream f(a.e2e_csv);
    if (!f) return std::fprintf(stderr, "cannot read %s\n", a.e2e_csv.c_str()), 1;
    std::stringstream ss;
    ss << f.rdbuf();
    e2e_text = ss.str();
  }
  auto md = ParseE2eCsv(e2e_text);
  if (!md.ok()) return std::fprintf(stderr, "%s\n", md.status().ToString().c_str()), 1;
  auto dec = policy::ReadDecodeCsv(a.cuda_csv);
  if (!dec.ok()) return std::fprintf(stderr, "%s\n", dec.status().ToString().c_str()), 1;
  md->decode_gbs = *dec;
  std::string notes;
  const ScoreDelay score = BuildScoreDelay(*md, gt->configs, gt->size_frac, 256 * kBytesPerToken, 256, &notes);
  {
    std::ofstream f(a.out_dir + "/eval_delays.csv", std::ios::trunc);
    const size_t nl = notes.find('\n');
    f << "# scorer delays per 256-token Llama-3.1-8B chunk (32 MiB raw): " << notes.substr(0, nl) << "\n";
    f << "config,dram_ms_per_chunk,ssd_ms_per_chunk,source\n" << notes.substr(nl + 1);
  }
  std::vector<std::string> names;
  for (const auto& c : gt->configs) names.push_back(c.name);
  auto planner = policy::DelayModel::Create(MeasuredPlannerOptions(*md, names));
  if (!planner.ok()) return std::fprintf(stderr, "%s\n", planner.status().ToString().c_str()), 1;
  {
    const auto& o = planner->options();
    std::fprintf(stderr,
                 "planner DelayModel: DRAM %.0f us + %.2f GB/s, SSD %.0f us + %.2f GB/s, recompute %.2f us/token, "
                 "decode GB/s fp8 %.0f quant %.0f drop %.0f lowrank %.0f\n",
                 o.dram.latency_s * 1e6, o.dram.bandwidth_Bps / 1e9, o.ssd.latency_s * 1e6, o.ssd.bandwidth_Bps / 1e9,
                 o.recompute_s_per_token * 1e6, o.decode_Bps[1] / 1e9, o.decode_Bps[2] / 1e9, o.decode_Bps[3] / 1e9,
                 o.decode_Bps[4] / 1e9);
  }

  // Traces: per workload, the validation trace and the test traces.
  std::vector<TraceSet> val(a.workloads.size());
  std::vector<std::vector<TraceSet>> test(a.workloads.size(), std::vector<TraceSet>(a.seeds.size()));
  // Models: validation chunks / test chunks, per estimate and seed. Built lazily below.
  auto make_trace = [&](Workload w, uint64_t seed, TraceSet* ts) -> bool {
    TraceOptions to;
    to.workload = w;
    to.seed = seed;
    to.requests = a.requests;
    auto t = GenerateTrace(to);
    if (!t.ok()) return std::fprintf(stderr, "%s\n", t.status().ToString().c_str()), false;
    ts->trace = std::move(*t);
    ts->total_bytes = Summarize(ts->trace).distinct_tokens * kBytesPerToken;
    return true;
  };
  for (size_t w = 0; w < a.workloads.size(); ++w) {
    if (!make_trace(a.workloads[w], a.val_seed, &val[w])) return 1;
    for (size_t s = 0; s < a.seeds.size(); ++s) {
      if (!make_trace(a.workloads[w], a.seeds[s], &test[w][s])) return 1;
    }
  }
  const std::vector<Estimate> ests = a.estimates;
  auto model_for = [&](bool is_val, uint64_t seed, Estimate e) {
    return MakeGroundTruthModel(*gt, is_val ? split.validation_chunks : split.test_chunks, e, &cal, seed, &score);
  };
  auto trace_for = [&](const Job& j) -> TraceSet& {
    if (j.val) return val[j.w];
    for (size_t s = 0; s < a.seeds.size(); ++s) {
      if (a.seeds[s] == j.seed) return test[j.w][s];
    }
    return test[j.w][0];
  };
  auto run_jobs = [&](std::vector<Job>& jobs) {
    std::atomic<size_t> next{0};
    std::mutex mu;
    size_t done = 0;
    auto worker = [&] {
      for (size_t i; (i = next++) < jobs.size();) {
        Job& j = jobs[i];
        TraceSet& ts = trace_for(j);
        const SimModel m = model_for(j.val, j.seed, j.est);
        SimOptions so;
        so.delay = *planner;
        so.bytes_per_token = kBytesPerToken;
        so.replan_every = a.replan_every;
        so.dram_bytes = static_cast<uint64_t>(j.dram_frac * ts.total_bytes);
        so.ssd_bytes = static_cast<uint64_t>(a.ssd_frac * ts.total_bytes);
        so.alpha = j.alpha;
        if (j.variant == "dram-only") so.ssd_bytes = 0;
        so.put_configs = j.variant != "no-admission";
        so.per_entry_admission = j.variant == "per-entry-admission";
        std::unique_ptr<policy::Policy> p;
        if (j.kind == "static") {
          p = std::make_unique<policy::StaticPolicy>(j.policy);
          for (size_t c = 0; c < m.configs.size(); ++c) {
            if (m.configs[c].name == j.policy) so.put_config = static_cast<uint32_t>(c);
          }
        } else if (j.kind == "lru") {
          p = std::make_unique<policy::LruPolicy>();
        } else if (j.kind == "greedy") {
          p = std::make_unique<policy::GreedyDowngrader>();
        } else if (j.kind == "oracle") {
          p = std::make_unique<policy::LruPolicy>();
          so.dram_bytes = 2 * ts.total_bytes;
          so.ssd_bytes = 0;
          so.replan_every = 0;
        } else {
          p = std::make_unique<policy::AdaptiveOptimizer>();
        }
        if (j.kind != "static" && j.kind != "oracle") j.policy = p->Name();
        auto r = Simulate(ts.trace, m, p.get(), so);
        std::lock_guard<std::mutex> l(mu);
        if (r.ok()) {
          j.res = *r;
          j.ok = true;
        } else {
          j.error = r.status().ToString();
        }
        if (++done % 100 == 0 || done == jobs.size()) {
          std::fprintf(stderr, "  %zu / %zu runs\n", done, jobs.size());
        }
      }
    };
    std::vector<std::thread> th;
    for (uint32_t t = 0; t < std::max<uint32_t>(a.jobs, 1); ++t) th.emplace_back(worker);
    for (auto& t : th) t.join();
    for (const Job& j : jobs) {
      if (!j.ok) return std::fprintf(stderr, "run failed: %s %s: %s\n", j.kind.c_str(), j.policy.c_str(), j.error.c_str()), false;
    }
    return true;
  };

  struct Variant {
    std::string kind;
    Estimate est;
    std::string variant;
  };
  std::vector<Variant> variants;  // policies whose alpha is chosen on validation
  for (Estimate e : ests) {
    variants.push_back({"adaptive", e, "base"});
    variants.push_back({"greedy", e, "base"});
  }
  for (const std::string& v : a.ablations) {
    if (v == "oracle-estimate") variants.push_back({"adaptive", Estimate::kTruth, "base"});
    else variants.push_back({"adaptive", ests.front(), v});
  }

  // ---- validation phase ----
  std::vector<Job> vjobs;
  for (size_t w = 0; w < a.workloads.size(); ++w) {
    for (double f : a.dram_fracs) {
      for (const auto& c : gt->configs) {
        vjobs.push_back({w, true, a.val_seed, f, "static", c.name});
        vjobs.push_back({w, true, a.val_seed, f, "static", c.name, Estimate::kPredicted, "dram-only"});
      }
      for (const Variant& v : variants) {
        for (double al : a.alphas) {
          vjobs.push_back({w, true, a.val_seed, f, v.kind, "", v.est, v.variant, al});
          if (v.kind == "greedy") vjobs.push_back({w, true, a.val_seed, f, v.kind, "", v.est, "dram-only", al});
        }
      }
    }
  }
  std::fprintf(stderr, "validation phase: %zu runs\n", vjobs.size());
  if (!run_jobs(vjobs)) return 1;
  // Chosen alpha per (workload, dram, kind, est, variant): the largest delay saving against
  // the cheapest single static config at least as good (ties: the smaller alpha).
  std::map<std::tuple<size_t, double, std::string, Estimate, std::string>, double> chosen;
  std::map<std::tuple<size_t, double, Estimate>, std::string> greedy_variant;  // base or dram-only
  for (size_t w = 0; w < a.workloads.size(); ++w) {
    for (double f : a.dram_fracs) {
      std::vector<QD> st;
      for (const Job& j : vjobs) {
        if (j.w == w && j.dram_frac == f && j.kind == "static") st.push_back({j.res.mean_loss, j.res.mean_delay_s});
      }
      for (const Variant& v : variants) {
        double best = -1, best_a = a.alphas.front();
        std::string best_v = v.variant;
        for (const Job& j : vjobs) {
          const bool variant_ok = j.variant == v.variant || (v.kind == "greedy" && j.variant == "dram-only");
          if (j.w != w || j.dram_frac != f || j.kind != v.kind || j.est != v.est || !variant_ok) continue;
          auto s = CheapestAtLeastAsGood(st, j.res.mean_loss);
          const double sv = s ? s->d / j.res.mean_delay_s : 0;
          if (sv > best + 1e-9) best = sv, best_a = j.alpha, best_v = j.variant;
        }
        chosen[{w, f, v.kind, v.est, v.variant}] = best_a;
        if (v.kind == "greedy") greedy_variant[{w, f, v.est}] = best_v;
        std::fprintf(stderr, "  %s dram %.2f %s/%s/%s: alpha %g (validation x%.3f)\n", WorkloadName(a.workloads[w]), f,
                     v.kind.c_str(), EstimateName(v.est), best_v.c_str(), best_a, best);
      }
    }
  }

  // ---- test phase ----
  std::vector<Job> tjobs;
  for (size_t w = 0; w < a.workloads.size(); ++w) {
    for (uint64_t seed : a.seeds) {
      tjobs.push_back({w, false, seed, 0, "oracle", "oracle"});
      for (double f : a.dram_fracs) {
        for (const auto& c : gt->configs) {
          tjobs.push_back({w, false, seed, f, "static", c.name});
          tjobs.push_back({w, false, seed, f, "static", c.name, Estimate::kPredicted, "dram-only"});
        }
        tjobs.push_back({w, false, seed, f, "lru", ""});
        for (Estimate e : ests) {
          for (double al : a.alphas) {
            tjobs.push_back({w, false, seed, f, "greedy", "", e, "base", al});
            tjobs.push_back({w, false, seed, f, "greedy", "", e, "dram-only", al});
          }
        }
        for (const Variant& v : variants) {
          const double al = chosen[{w, f, v.kind, v.est, v.variant}];
          if (v.kind == "greedy") {
            // Already in the sweep: mark it.
            for (Job& j : tjobs) {
              if (j.w == w && j.seed == seed && j.dram_frac == f && j.kind == "greedy" && j.est == v.est &&
                  j.alpha == al && j.variant == greedy_variant[{w, f, v.est}])
                j.chosen = true;
            }
            continue;
          }
          Job j{w, false, seed, f, v.kind, "", v.est, v.variant, al};
          j.chosen = true;
          tjobs.push_back(j);
        }
      }
    }
  }
  std::fprintf(stderr, "test phase: %zu runs\n", tjobs.size());
  if (!run_jobs(tjobs)) return 1;

  // ---- points CSV ----
  std::ofstream pts(a.out_dir + "/eval_points.csv", std::ios::trunc);
  pts << "mode,phase,workload,seed,dram_frac,ssd_frac,dram_gib,ssd_gib,policy,kind,estimate,variant,alpha,chosen,"
         "mean_delay_ms,delay_x_oracle,mean_loss,mean_top1,mean_kl,mean_est_loss,dram_hit,ssd_hit,miss,cold_ms,plans,"
         "plan_ms_mean,evict,demote,promote,transcode\n";
  auto oracle_of = [&](const Job& j) {
    if (j.val) return 0.0;
    for (const Job& o : tjobs) {
      if (o.kind == "oracle" && o.w == j.w && o.seed == j.seed) return o.res.mean_delay_s;
    }
    return 0.0;
  };
  for (const std::vector<Job>* js : {&vjobs, &tjobs}) {
    for (const Job& j : *js) {
      const TraceSet& ts = trace_for(j);
      const SimResult& r = j.res;
      const double o = oracle_of(j);
      pts << "sim," << (j.val ? "validation" : "test") << "," << WorkloadName(a.workloads[j.w]) << "," << j.seed << ","
          << j.dram_frac << "," << (j.kind == "oracle" ? 0 : a.ssd_frac) << ","
          << Fmt(j.dram_frac * ts.total_bytes / 1073741824.0) << "," << Fmt(a.ssd_frac * ts.total_bytes / 1073741824.0)
          << "," << (j.kind == "static" ? "static-" + j.policy : j.policy) << "," << j.kind << ","
          << (j.kind == "static" || j.kind == "lru" || j.kind == "oracle" ? "-" : EstimateName(j.est)) << ","
          << j.variant << "," << j.alpha << "," << (j.chosen ? 1 : 0) << "," << Fmt(r.mean_delay_s * 1e3) << ","
          << (o > 0 ? Fmt(r.mean_delay_s / o) : "nan") << "," << Fmt(r.mean_loss) << "," << Fmt(1 - r.mean_loss) << ","
          << Fmt(r.mean_kl) << "," << Fmt(r.mean_est_loss) << "," << Fmt(r.dram_hit) << "," << Fmt(r.ssd_hit) << ","
          << Fmt(r.miss) << "," << Fmt(r.mean_cold_s * 1e3) << "," << r.plans << ","
          << Fmt(r.plans ? r.plan_cpu_s * 1e3 / r.plans : 0) << "," << r.moves[0] << "," << r.moves[1] << ","
          << r.moves[2] << "," << r.moves[3] << "\n";
    }
  }

  // ---- headline metrics ----
  std::ofstream head(a.out_dir + "/eval_headline.csv", std::ios::trunc);
  std::ofstream front(a.out_dir + "/frontier.csv", std::ios::trunc);
  head << "mode,workload,dram_frac,ssd_frac,estimate,variant,seeds,alpha,greedy_alpha,"
          "vs_single_static,vs_single_static_ci_lo,vs_single_static_ci_hi,"
          "vs_hull,vs_hull_ci_lo,vs_hull_ci_hi,"
          "vs_greedy,vs_greedy_ci_lo,vs_greedy_ci_hi,vs_greedy_seeds,"
          "vs_greedy_chosen_delay,greedy_chosen_loss,"
          "quality_gain_vs_single_static,quality_gain_ci_lo,quality_gain_ci_hi,quality_gain_seeds,"
          "quality_gain_vs_hull,top1_gain_vs_single_static_pts,kl_gain_vs_single_static,"
          "adaptive_loss,adaptive_top1,adaptive_kl,adaptive_delay_ms,adaptive_x_oracle,"
          "static_at_equal_quality,static_at_equal_delay,lru_x_oracle,scored_with\n";
  front << "mode,workload,dram_frac,seeds,vs_single_static,vs_single_static_ci_lo,vs_hull,vs_greedy,"
           "quality_gain_vs_single_static,scored_with\n";
  for (size_t w = 0; w < a.workloads.size(); ++w) {
    for (double f : a.dram_fracs) {
      for (const Variant& v : variants) {
        if (v.kind != "adaptive") continue;
        std::vector<double> ss, hu, gr, grc, grl, qg, qh, tg, kg, al, at, ak, ad, ax, lx;
        std::map<std::string, int> eq_q, eq_d;
        for (uint64_t seed : a.seeds) {
          std::vector<QD> st, gs;
          std::vector<std::string> st_names;
          const Job* ap = nullptr;
          const Job* gc = nullptr;
          const Job* lru = nullptr;
          for (const Job& j : tjobs) {
            if (j.w != w || j.seed != seed || j.dram_frac != f) continue;
            const QD p{j.res.mean_loss, j.res.mean_delay_s};
            if (j.kind == "static") {
              st.push_back(p);
              st_names.push_back(j.variant == "dram-only" ? j.policy + "(dram-only)" : j.policy);
            }
            if (j.kind == "lru") lru = &j;
            if (j.kind == "greedy" && j.est == (v.est == Estimate::kTruth ? ests.front() : v.est)) {
              gs.push_back(p);
              if (j.chosen) gc = &j;
            }
            if (j.kind == "adaptive" && j.chosen && j.est == v.est && j.variant == v.variant) ap = &j;
          }
          if (!ap) continue;
          const double q = ap->res.mean_loss, d = ap->res.mean_delay_s;
          const std::vector<QD> hull = LowerHull(st);
          if (auto s = CheapestAtLeastAsGood(st, q)) {
            ss.push_back(s->d / d);
            for (size_t i = 0; i < st.size(); ++i) {
              if (st[i].q == s->q && st[i].d == s->d) ++eq_q[st_names[i]];
            }
          }
          if (auto h = HullDelayAt(hull, q)) hu.push_back(*h / d);
          if (auto g = HullDelayAt(LowerHull(gs), q)) gr.push_back(*g / d);
          if (gc) grc.push_back(gc->res.mean_delay_s / d), grl.push_back(gc->res.mean_loss);
          if (auto s = BestWithinDelay(st, d)) {
            for (size_t i = 0; i < st.size(); ++i) {
              if (st[i].q == s->q && st[i].d == s->d) ++eq_d[st_names[i]];
            }
            if (s->q > 0) qg.push_back(1 - q / s->q);
            tg.push_back(100 * (s->q - q));  // top-1 agreement points (loss = 1 - top-1)
            for (const Job& j : tjobs) {
              if (j.w == w && j.seed == seed && j.dram_frac == f && j.kind == "static" && j.res.mean_loss == s->q &&
                  j.res.mean_delay_s == s->d && j.res.mean_kl > 0) {
                kg.push_back(1 - ap->res.mean_kl / j.res.mean_kl);
                break;
              }
            }
          }
          if (auto h = HullLossAt(hull, d); h && *h > 0) qh.push_back(1 - q / *h);
          al.push_back(q), at.push_back(1 - q), ak.push_back(ap->res.mean_kl), ad.push_back(d * 1e3);
          const double o = oracle_of(*ap);
          ax.push_back(o > 0 ? d / o : NAN);
          if (lru && o > 0) lx.push_back(lru->res.mean_delay_s / o);
        }
        auto top = [](const std::map<std::string, int>& m) {
          std::string s;
          for (const auto& [k, n] : m) absl::StrAppend(&s, s.empty() ? "" : " ", k, ":", n);
          return s.empty() ? std::string("none") : s;
        };
        const Interval iss = TInterval95(ss), ihu = TInterval95(hu), igr = TInterval95(gr), iqg = TInterval95(qg);
        const double alpha = chosen[{w, f, v.kind, v.est, v.variant}];
        const Estimate gest = v.est == Estimate::kTruth ? ests.front() : v.est;
        const double galpha = chosen[{w, f, std::string("greedy"), gest, std::string("base")}];
        const std::string gvar = greedy_variant[{w, f, gest}];
        const char* wn = WorkloadName(a.workloads[w]);
        head << "sim," << wn << "," << f << "," << a.ssd_frac << "," << EstimateName(v.est) << "," << v.variant << ","
             << ss.size() << "," << alpha << "," << galpha << (gvar == "dram-only" ? " (dram-only)" : "") << "," << Fmt(iss.mean) << "," << Fmt(iss.lo) << ","
             << Fmt(iss.hi) << "," << Fmt(ihu.mean) << "," << Fmt(ihu.lo) << "," << Fmt(ihu.hi) << ","
             << Fmt(igr.mean) << "," << Fmt(igr.lo) << "," << Fmt(igr.hi) << "," << gr.size() << ","
             << Fmt(TInterval95(grc).mean) << "," << Fmt(TInterval95(grl).mean) << "," << Fmt(iqg.mean) << ","
             << Fmt(iqg.lo) << "," << Fmt(iqg.hi) << "," << qg.size() << "," << Fmt(TInterval95(qh).mean) << ","
             << Fmt(TInterval95(tg).mean) << "," << Fmt(TInterval95(kg).mean) << "," << Fmt(TInterval95(al).mean)
             << "," << Fmt(TInterval95(at).mean) << "," << Fmt(TInterval95(ak).mean) << ","
             << Fmt(TInterval95(ad).mean) << "," << Fmt(TInterval95(ax).mean) << "," << top(eq_q) << ","
             << top(eq_d) << "," << Fmt(TInterval95(lx).mean) << ",ground-truth\n";
        if (v.est == ests.front() && v.variant == "base") {
          front << "sim," << wn << "," << f << "," << ss.size() << "," << Fmt(iss.mean) << "," << Fmt(iss.lo) << ","
                << Fmt(ihu.mean) << "," << Fmt(igr.mean) << "," << Fmt(iqg.mean) << ",ground-truth\n";
        }
        std::fprintf(stderr,
                     "%s dram %.2f %s/%s: vs single static %.2fx [%.2f, %.2f], vs hull %.2fx [%.2f, %.2f], vs greedy "
                     "%.2fx (%zu seeds), quality gain %+.0f%% [%+.0f, %+.0f] (%zu seeds)\n",
                     wn, f, EstimateName(v.est), v.variant.c_str(), iss.mean, iss.lo, iss.hi, ihu.mean, ihu.lo,
                     ihu.hi, igr.mean, gr.size(), 100 * iqg.mean, 100 * iqg.lo, 100 * iqg.hi, qg.size());
      }
    }
  }
  return 0;
}

}  // namespace adaptcache::eval
