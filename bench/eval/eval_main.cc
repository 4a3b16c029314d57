// eval_sim: simulation-mode evaluation (docs/evaluation.md). For each workload, DRAM size
// and policy (oracle, lru-raw, every static config, greedy-downgrade and adaptcache over
// an alpha sweep) replays the trace through bench/eval/sim.h and writes one CSV row.
// bench/eval/plot.py turns the CSV into curves and the headline figures.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/eval/gt_main.h"
#include "bench/eval/profile.h"
#include "bench/eval/sim.h"
#include "bench/eval/trace.h"
#include "policy/baselines.h"
#include "policy/optimizer.h"

namespace adaptcache::eval {
namespace {

struct Args {
  std::vector<Workload> workloads = {Workload::kChat, Workload::kDocQa, Workload::kCode};
  uint32_t requests = 3000;
  uint64_t seed = 1;
  uint32_t templates = 8;
  std::vector<double> dram_fracs = {0.02, 0.05, 0.1, 0.2};
  double ssd_frac = 0.5;
  std::vector<double> alphas = {1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1};
  std::string calibration;
  std::string decode = "gpu";
  std::string cuda_csv = "bench/results/cuda_decode.csv";
  std::string out_dir = "bench/results";
  std::string trace_dir;  // read <dir>/<workload>.trace when set, else generate
  uint32_t replan_every = 20;
  bool master = false;
  bool put_configs = true;  // --no-admission turns it off
  GtArgs gt;                // --ground-truth FILE: the ground-truth mode (gt_main.h)
  bool alphas_set = false, fracs_set = false, ssd_set = false;
};

int Usage() {
  std::fprintf(stderr,
               "usage: eval_sim [--workloads chat,docqa,code] [--requests N] [--seed S] [--templates K]\n"
               "  [--dram-fracs f,f] [--ssd-frac f] [--alphas a,a] [--calibration FILE] [--decode gpu|cpu]\n"
               "  [--cuda-csv FILE (measured GPU decode speeds; default bench/results/cuda_decode.csv)]\n"
               "  [--replan-every N] [--master] [--no-admission] [--trace-dir DIR] [--out-dir DIR]\n"
               "ground-truth mode (docs/evaluation.md): --ground-truth chunk_quality.csv [--e2e-csv FILE]\n"
               "  [--seeds 1,2,3,4,5] [--val-seed S] [--estimate predicted|probe|both]\n"
               "  [--ablations per-entry-admission,no-admission,oracle-estimate] [--jobs N]\n"
               "  (defaults there: DRAM 2%%,5%%,10%%, SSD 20%% of the distinct KV)\n"
               "--no-admission: new entries keep the put-time config (raw; static: theirs) until the\n"
               "  next plan instead of the last plan's put config (Policy::PutConfigs)\n");
  return 2;
}

int Main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--master") {
      a.master = true;
      continue;
    }
    if (k == "--no-admission") {
      a.put_configs = false;
      continue;
    }
    if (i + 1 >= argc) return Usage();
    const std::string v = argv[++i];
    bool ok = true;
    if (k == "--workloads") {
      a.workloads.clear();
      for (absl::string_view p : absl::StrSplit(v, ',')) {
        auto w = ParseWorkload(std::string(p));
        if (!(ok = w.ok())) break;
        a.workloads.push_back(*w);
      }
    } else if (k == "--requests") ok = absl::SimpleAtoi(v, &a.requests) && a.requests > 0;
    else if (k == "--seed") ok = absl::SimpleAtoi(v, &a.seed);
    else if (k == "--templates") ok = absl::SimpleAtoi(v, &a.templates);
    else if (k == "--dram-fracs") ok = ParsePositiveList(v, &a.dram_fracs);
    else if (k == "--ssd-frac") ok = absl::SimpleAtod(v, &a.ssd_frac) && a.ssd_frac >= 0;
    else if (k == "--alphas") ok = ParsePositiveList(v, &a.alphas);
    else if (k == "--calibration") a.calibration = v;
    else if (k == "--decode") ok = (a.decode = v) == "gpu" || v == "cpu";
    else if (k == "--cuda-csv") a.cuda_csv = v;
    else if (k == "--replan-every") ok = absl::SimpleAtoi(v, &a.replan_every);
    else if (k == "--trace-dir") a.trace_dir = v;
    else if (k == "--out-dir") a.out_dir = v;
    else if (k == "--ground-truth") a.gt.ground_truth = v;
    else if (k == "--e2e-csv") a.gt.e2e_csv = v;
    else if (k == "--val-seed") ok = absl::SimpleAtoi(v, &a.gt.val_seed);
    else if (k == "--jobs") ok = absl::SimpleAtoi(v, &a.gt.jobs) && a.gt.jobs > 0;
    else if (k == "--seeds") {
      a.gt.seeds.clear();
      for (absl::string_view p : absl::StrSplit(v, ',')) {
        uint64_t s;
        if (!(ok = absl::SimpleAtoi(p, &s))) break;
        a.gt.seeds.push_back(s);
      }
    } else if (k == "--estimate") {
      if (v == "both") a.gt.estimates = {Estimate::kPredicted, Estimate::kProbe};
      else if (auto e = ParseEstimate(v); (ok = e.ok())) a.gt.estimates = {*e};
    } else if (k == "--ablations") {
      a.gt.ablations = absl::StrSplit(v, ',', absl::SkipEmpty());
      for (const std::string& x : a.gt.ablations) {
        ok = ok && (x == "per-entry-admission" || x == "no-admission" || x == "oracle-estimate");
      }
    } else ok = false;
    if (!ok) return Usage();
    if (k == "--alphas") a.alphas_set = true;
    if (k == "--dram-fracs") a.fracs_set = true;
    if (k == "--ssd-frac") a.ssd_set = true;
  }
  if (!a.gt.ground_truth.empty()) {
    a.gt.workloads = a.workloads;
    a.gt.requests = a.requests;
    a.gt.cuda_csv = a.cuda_csv;
    a.gt.out_dir = a.out_dir;
    a.gt.replan_every = a.replan_every;
    if (a.alphas_set) a.gt.alphas = a.alphas;
    if (a.fracs_set) a.gt.dram_fracs = a.dram_fracs;
    if (a.ssd_set) a.gt.ssd_frac = a.ssd_frac;
    return GroundTruthMain(a.gt);
  }

  policy::QualityModel qm;
  if (!a.calibration.empty()) {
    auto m = policy::QualityModel::FromFile(a.calibration);
    if (!m.ok()) return std::fprintf(stderr, "%s\n", m.status().ToString().c_str()), 1;
    qm = *m;
  }
  ProfileOptions po;
  po.templates = a.templates;
  auto prof = BuildProfiles(po, qm);
  if (!prof.ok()) return std::fprintf(stderr, "profiles: %s\n", prof.status().ToString().c_str()), 1;
  {
    std::ofstream f(a.out_dir + "/eval_profile.csv", std::ios::trunc);
    f << "config,family,ratio,cpu_decode_GBps,proxy_mean,proxy_min,proxy_max,qloss_mean\n";
    for (const ConfigProfile& c : prof->configs) {
      double pm = 0, qmn = 0;
      for (double x : c.proxy) pm += x / c.proxy.size();
      for (double x : c.qloss) qmn += x / c.qloss.size();
      f << c.name << "," << std::string(CodecFamilyName(c.config.family)) << "," << c.ratio << "," << c.cpu_decode_GBps
        << "," << pm << "," << *std::min_element(c.proxy.begin(), c.proxy.end()) << ","
        << *std::max_element(c.proxy.begin(), c.proxy.end()) << "," << qmn << "\n";
    }
  }
  policy::DelayModelOptions dopt;
  if (a.decode == "cpu") {
    // Decode on the client's CPU at the measured single-thread speed (median per family).
    std::map<CodecId, std::vector<double>> by_family;
    for (const ConfigProfile& c : prof->configs) by_family[c.config.family].push_back(c.cpu_decode_GBps);
    for (auto& [fam, v] : by_family) {
      std::sort(v.begin(), v.end());
      if (fam != CodecId::kRaw) dopt.decode_Bps[static_cast<size_t>(fam)] = v[v.size() / 2] * 1e9;
    }
  }
  if (a.decode == "gpu") {
    // Measured H100 decode speeds per family where the CUDA benchmark has them.
    std::vector<std::string> names;
    for (const ConfigProfile& c : prof->configs) names.push_back(c.name);
    const auto fam = policy::FamilyDecodeBps(policy::ReadDecodeCsv(a.cuda_csv).value_or(
                                                 std::map<std::string, double>{}),
                                             names);
    for (size_t f = 1; f < fam.size(); ++f) {
      if (fam[f] > 0) dopt.decode_Bps[f] = fam[f];
    }
    std::fprintf(stderr, "GPU decode GB/s by family (fp8 quant drop lowrank): %.0f %.0f %.0f %.0f (%s)\n",
                 dopt.decode_Bps[1] / 1e9, dopt.decode_Bps[2] / 1e9, dopt.decode_Bps[3] / 1e9,
                 dopt.decode_Bps[4] / 1e9, fam[1] > 0 ? a.cuda_csv.c_str() : "DelayModel defaults");
  }
  auto delay = policy::DelayModel::Create(dopt);
  if (!delay.ok()) return std::fprintf(stderr, "%s\n", delay.status().ToString().c_str()), 1;

  std::ofstream csv(a.out_dir + "/eval_points.csv", std::ios::trunc);
  csv << "mode,workload,dram_frac,dram_gib,ssd_gib,policy,kind,alpha,mean_delay_ms,delay_x_oracle,mean_loss,"
         "dram_hit,ssd_hit,miss,cold_ms,plans,plan_ms_mean,evict,demote,promote,transcode,transcode_gib,"
         "ssd_write_gib\n";
  for (Workload w : a.workloads) {
    Trace trace;
    if (!a.trace_dir.empty()) {
      std::ifstream f(a.trace_dir + "/" + WorkloadName(w) + ".trace");
      std::stringstream ss;
      ss << f.rdbuf();
      auto t = ParseTrace(ss.str());
      if (!t.ok()) return std::fprintf(stderr, "%s\n", t.status().ToString().c_str()), 1;
      trace = std::move(*t);
    } else {
      TraceOptions to;
      to.workload = w;
      to.seed = a.seed;
      to.requests = a.requests;
      auto t = GenerateTrace(to);
      if (!t.ok()) return std::fprintf(stderr, "%s\n", t.status().ToString().c_str()), 1;
      trace = std::move(*t);
    }
    const TraceSummary sum = Summarize(trace);
    const uint64_t bpt = 131072;
    const uint64_t total = sum.distinct_tokens * bpt;
    std::fprintf(stderr, "%s: %lu requests, %lu distinct chunks, %.1f GiB raw\n", WorkloadName(w), sum.requests,
                 sum.distinct_chunks, total / 1073741824.0);
    SimOptions base;
    base.delay = *delay;
    base.replan_every = a.replan_every;
    base.master_copies = a.master;
    base.put_configs = a.put_configs;
    // The oracle: every entry raw in unlimited DRAM.
    SimOptions oo = base;
    oo.dram_bytes = total * 2;
    oo.ssd_bytes = 0;
    oo.replan_every = 0;
    policy::LruPolicy lru_oracle;
    auto oracle = Simulate(trace, *prof, &lru_oracle, oo);
    if (!oracle.ok()) return std::fprintf(stderr, "%s\n", oracle.status().ToString().c_str()), 1;
    auto row = [&](double frac, const SimOptions& so, const std::string& name, const std::string& kind,
                   double alpha, const SimResult& r) {
      csv << "sim," << WorkloadName(w) << "," << frac << "," << so.dram_bytes / 1073741824.0 << ","
          << so.ssd_bytes / 1073741824.0 << "," << name << "," << kind << "," << alpha << ","
          << r.mean_delay_s * 1e3 << "," << r.mean_delay_s / oracle->mean_delay_s << "," << r.mean_loss << ","
          << r.dram_hit << "," << r.ssd_hit << "," << r.miss << "," << r.mean_cold_s * 1e3 << "," << r.plans
          << "," << (r.plans ? r.plan_cpu_s * 1e3 / r.plans : 0) << "," << r.moves[0] << "," << r.moves[1] << ","
          << r.moves[2] << "," << r.moves[3] << "," << r.transcode_raw_bytes / 1073741824.0 << ","
          << r.ssd_write_bytes / 1073741824.0 << "\n";
      csv.flush();
    };
    row(0, oo, "oracle", "oracle", 0, *oracle);
    for (double frac : a.dram_fracs) {
      SimOptions so = base;
      so.dram_bytes = static_cast<uint64_t>(frac * total);
      so.ssd_bytes = static_cast<uint64_t>(a.ssd_frac * total);
      auto run = [&](policy::Policy* p, uint32_t put_cfg, double alpha, const std::string& kind) -> bool {
        SimOptions s2 = so;
        s2.put_config = put_cfg;
        s2.alpha = alpha;
        auto r = Simulate(trace, *prof, p, s2);
        if (!r.ok()) {
          std::fprintf(stderr, "%s %s: %s\n", WorkloadName(w), p->Name().c_str(), r.status().ToString().c_str());
          return false;
        }
        row(frac, s2, p->Name(), kind, alpha, *r);
        std::fprintf(stderr, "  dram %.3f %-28s a=%-7g delay %.3f ms (x%.2f) loss %.4f dram %.2f ssd %.2f miss %.2f\n",
                     frac, p->Name().c_str(), alpha, r->mean_delay_s * 1e3, r->mean_delay_s / oracle->mean_delay_s,
                     r->mean_loss, r->dram_hit, r->ssd_hit, r->miss);
        return true;
      };
      policy::LruPolicy lru;
      if (!run(&lru, 0, a.alphas[0], "lru")) return 1;
      for (uint32_t c = 0; c < prof->configs.size(); ++c) {
        policy::StaticPolicy sp(prof->configs[c].name);
        if (!run(&sp, c, a.alphas[0], "static")) return 1;
      }
      for (double alpha : a.alphas) {
        policy::GreedyDowngrader g;
        if (!run(&g, 0, alpha, "greedy")) return 1;
        policy::AdaptiveOptimizer opt;
        if (!run(&opt, 0, alpha, "adaptive")) return 1;
      }
    }
  }
  return 0;
}

}  // namespace
}  // namespace adaptcache::eval

int main(int argc, char** argv) { return adaptcache::eval::Main(argc, argv); }
