// Ground-truth mode of the simulation (docs/evaluation.md, issue 18): per-chunk quality
// measured on a real model (bench/results/chunk_quality.csv: SmolLM2-135M real weights on
// an H100, one 256-token chunk compressed at a time, the rest raw), per-config delays
// derived from the measured end-to-end figures (bench/results/e2e.csv, cuda_decode.csv),
// and the estimates the daemon could know (the calibrated pseudo-query proxy, or the
// client's probe-query proxy through a calibration fitted on validation contexts only).
//
// Loss unit: 1 - top1_agreement of the chunk's row (the calibration's unit,
// policy/quality_model.cc), i.e. the share of continuation positions whose argmax changed
// when that one chunk of an 8-chunk context is served in the config. A request's loss is
// the token-weighted mean over its context chunks (recomputed chunks: 0).
//
// Thread safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "bench/eval/sim.h"
#include "policy/delay_model.h"
#include "policy/types.h"

namespace adaptcache::eval {

struct GtChunk {
  uint32_t context = 0;  // index into GroundTruth::contexts
  int32_t chunk = 0;     // chunk index inside the context
  // Per config (GroundTruth::configs order):
  std::vector<float> loss;       // 1 - top1_agreement (ground truth)
  std::vector<float> kl;         // KL(raw || config), nats (ground truth)
  std::vector<float> predicted;  // calibrated pseudo-query proxy (the daemon's estimate)
  std::vector<float> probe;      // probe-query proxy (uncalibrated)
};

struct GroundTruth {
  std::vector<policy::ConfigSpec> configs;  // raw first, then the CSV's order
  std::vector<double> size_frac;            // stored / raw bytes: 1 / median measured ratio
  std::vector<std::string> contexts;        // sorted names
  std::vector<GtChunk> chunks;              // rows with chunk >= 0 that have every config
  uint32_t chunks_per_context = 8;          // entries a measured context is cut into
};

// Parses chunk_quality.csv (header context,chunk,config,ratio,kl,top1_agreement,nll_delta,
// proxy,predicted_loss,proxy_probe; whole-context rows, chunk = -1, are skipped). A chunk
// that lacks a config is dropped. Errors name the line.
absl::StatusOr<GroundTruth> ParseGroundTruth(absl::string_view csv);
absl::StatusOr<GroundTruth> LoadGroundTruth(const std::string& path);

// Deterministic split of the contexts: every `stride`-th context in sorted order (offset 0)
// and the next one are validation (2 of every 5 by default: 20 of 50), the rest are test.
struct ContextSplit {
  std::vector<uint32_t> validation_chunks;  // indices into GroundTruth::chunks
  std::vector<uint32_t> test_chunks;
};
ContextSplit SplitContexts(const GroundTruth& gt, uint32_t stride = 5, uint32_t validation_per_stride = 2);

// Monotone (isotonic, pool-adjacent-violators) map proxy_probe -> loss per config, fitted
// on the given chunks only; evaluated by linear interpolation between the pooled blocks'
// (mean x, mean y), flat outside them. raw maps to 0.
class ProbeCalibration {
 public:
  static ProbeCalibration Fit(const GroundTruth& gt, const std::vector<uint32_t>& chunks);
  double operator()(size_t config, double probe) const;
  const std::vector<std::vector<std::pair<double, double>>>& knots() const { return knots_; }

 private:
  std::vector<std::vector<std::pair<double, double>>> knots_;  // per config
};

enum class Estimate { kPredicted, kProbe, kTruth };
const char* EstimateName(Estimate e);
absl::StatusOr<Estimate> ParseEstimate(absl::string_view s);

// The planner's view of one chunk and config in the loss unit above:
//  - predicted: predicted_loss / chunks_per_context (the calibration maps a whole
//    context's proxy to that context's 1 - top1; one chunk of `chunks_per_context`
//    carries that share, the reading bench/results/chunk_quality.md uses);
//  - probe: ProbeCalibration(proxy_probe);
//  - truth: the measured loss itself (an oracle estimate, for ablations only).
double EstimateOf(const GroundTruth& gt, const GtChunk& c, size_t config, Estimate e, const ProbeCalibration* cal);

// A SimModel whose sources are `chunks` (trace chunk ids map onto them by a hash salted
// with `seed`), truth = measured loss / KL, est = the chosen estimate.
SimModel MakeGroundTruthModel(const GroundTruth& gt, const std::vector<uint32_t>& chunks, Estimate est,
                              const ProbeCalibration* cal, uint64_t seed, const ScoreDelay* score);

// Measured delay figures (docs/evaluation.md, "Delays"), all for the Llama-3.1-8B shape.
struct MeasuredDelays {
  // From e2e.csv (model llama-3.1-8b-random): least-squares slope of prefix_load_ms over
  // the number of 256-token chunks, per case "<config>-dram" and "raw-ssd", seconds/chunk.
  std::vector<std::pair<std::string, double>> dram_s_per_chunk;
  double raw_ssd_s_per_chunk = 0;
  std::vector<std::pair<double, double>> recompute;  // (prefix tokens, seconds), from (0, 0)
  std::map<std::string, double> decode_gbs;          // cuda_decode.csv, decoded GB/s per config
};
absl::StatusOr<MeasuredDelays> ParseE2eCsv(absl::string_view csv);

// The scorer's per-config delays. A config measured end to end uses its slope; another
// one: stored bytes / B + raw bytes / its measured GPU decode speed + the median residual
// (measured slope - that formula) of the measured configs of its family, where B is raw's
// end-to-end DRAM bandwidth (32 MiB / raw's slope). SSD: the DRAM figure + stored bytes x
// (raw-ssd slope - raw-dram slope) / raw bytes. `notes` gets one line per config.
ScoreDelay BuildScoreDelay(const MeasuredDelays& m, const std::vector<policy::ConfigSpec>& configs,
                           const std::vector<double>& size_frac, uint64_t chunk_raw_bytes, uint32_t chunk_tokens,
                           std::string* notes);

// The planner's DelayModel options with the measured figures: DRAM 47.504 GB/s, SSD
// 1.84 GB/s, recompute 31.336 us/token (the flags e2e.md's adaptive run used), GPU decode
// speeds per family from cuda_decode.csv (median over `configs`); latencies and the decode
// launch keep the DelayModel defaults (not measured per entry).
policy::DelayModelOptions MeasuredPlannerOptions(const MeasuredDelays& m, const std::vector<std::string>& configs);

}  // namespace adaptcache::eval
