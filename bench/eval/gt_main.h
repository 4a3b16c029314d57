// Ground-truth mode of eval_sim (bench/eval/gt_main.cc, docs/evaluation.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bench/eval/ground_truth.h"
#include "bench/eval/trace.h"

namespace adaptcache::eval {

struct GtArgs {
  std::string ground_truth;  // chunk_quality.csv
  std::string e2e_csv = "bench/results/e2e.csv";
  std::string cuda_csv = "bench/results/cuda_decode.csv";
  std::string out_dir = "bench/results";
  std::vector<Workload> workloads = {Workload::kChat, Workload::kDocQa, Workload::kCode};
  uint32_t requests = 3000;
  std::vector<uint64_t> seeds = {1, 2, 3, 4, 5};
  uint64_t val_seed = 1001;
  std::vector<double> dram_fracs = {0.02, 0.05, 0.1};
  double ssd_frac = 0.2;
  std::vector<double> alphas = {1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1, 3, 10, 30, 100};
  std::vector<Estimate> estimates = {Estimate::kPredicted, Estimate::kProbe};  // first: frontier.csv
  std::vector<std::string> ablations;  // per-entry-admission, no-admission, oracle-estimate
  uint32_t replan_every = 20;
  uint32_t jobs = 2;
};

int GroundTruthMain(const GtArgs& args);

}  // namespace adaptcache::eval
