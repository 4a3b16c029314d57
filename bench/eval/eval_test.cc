// Tests of the evaluation harness: traces (determinism, format round trip, strict
// parsing, workload invariants), the simulation's accounting, and the ground-truth mode
// (scoring with the measured table, not the estimates; hull; confidence intervals).
#include <gtest/gtest.h>

#include "absl/container/flat_hash_set.h"
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "bench/eval/ground_truth.h"
#include "bench/eval/metrics.h"
#include "bench/eval/profile.h"
#include "bench/eval/sim.h"
#include "bench/eval/trace.h"
#include "policy/baselines.h"
#include "policy/optimizer.h"

namespace adaptcache::eval {
namespace {

Trace Gen(Workload w, uint64_t seed, uint32_t n = 400) {
  TraceOptions o;
  o.workload = w;
  o.seed = seed;
  o.requests = n;
  o.scale = 0.3;
  auto t = GenerateTrace(o);
  EXPECT_TRUE(t.ok()) << t.status();
  return *t;
}

TEST(Trace, DeterministicAndSeeded) {
  for (Workload w : {Workload::kChat, Workload::kDocQa, Workload::kCode}) {
    const Trace a = Gen(w, 5), b = Gen(w, 5), c = Gen(w, 6);
    EXPECT_EQ(a.requests, b.requests) << WorkloadName(w);
    EXPECT_NE(a.requests, c.requests) << WorkloadName(w);
  }
}

TEST(Trace, RoundTrip) {
  for (Workload w : {Workload::kChat, Workload::kDocQa, Workload::kCode}) {
    const Trace a = Gen(w, 3);
    auto b = ParseTrace(FormatTrace(a));
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_EQ(b->workload, a.workload);
    EXPECT_EQ(b->seed, a.seed);
    ASSERT_EQ(b->requests.size(), a.requests.size());
    for (size_t i = 0; i < a.requests.size(); ++i) {
      EXPECT_EQ(b->requests[i].context, a.requests[i].context);
      EXPECT_EQ(b->requests[i].puts, a.requests[i].puts);
      EXPECT_EQ(b->requests[i].new_tokens, a.requests[i].new_tokens);
    }
  }
}

TEST(Trace, ParseRejectsBadInput) {
  const std::string head = "adaptcache-trace 1\nworkload chat\nseed 1\nchunk_tokens 256\n";
  EXPECT_FALSE(ParseTrace("nonsense\n").ok());
  EXPECT_FALSE(ParseTrace("adaptcache-trace 1\nseed 1\n").ok());  // no workload
  EXPECT_FALSE(ParseTrace(head + "request 1 10 ctx 1:256\n").ok());  // no put marker
  EXPECT_FALSE(ParseTrace(head + "request 1 10 ctx 1:300 put\n").ok());  // tokens > chunk
  EXPECT_FALSE(ParseTrace(head + "request 1 10 ctx 1:0 put\n").ok());
  EXPECT_FALSE(ParseTrace(head + "request 1 10 ctx 1:256 put 1:128\n").ok());  // size changed
  EXPECT_FALSE(ParseTrace(head + "request 2 1 ctx put\nrequest 1 1 ctx put\n").ok());  // time
  EXPECT_FALSE(ParseTrace(head + "request x 10 ctx put\n").ok());
  EXPECT_FALSE(ParseTrace(head + "bogus 1\n").ok());
  auto ok = ParseTrace(head + "# comment\n\nrequest 1 10 ctx 1:256 2:64 put 3:256\n");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->requests[0].context.size(), 2u);
}

// Chat and code put every chunk before (or in) the request that first reads it, except
// the very first context; doc QA's first read of a document is cold and puts it.
TEST(Trace, ContextIsPutBeforeReuse) {
  for (Workload w : {Workload::kChat, Workload::kDocQa, Workload::kCode}) {
    const Trace t = Gen(w, 9);
    absl::flat_hash_set<uint64_t> put;
    uint64_t cold = 0, reads = 0;
    for (const TraceRequest& r : t.requests) {
      for (const TraceChunk& c : r.context) {
        ++reads;
        if (!put.contains(c.id)) {
          ++cold;
          // A cold chunk is put by the same request.
          bool self = false;
          for (const TraceChunk& p : r.puts) self |= p.id == c.id;
          EXPECT_TRUE(self) << WorkloadName(w);
        }
      }
      for (const TraceChunk& p : r.puts) put.insert(p.id);
    }
    EXPECT_LT(cold * 5, reads) << WorkloadName(w) << ": most reads must be reuse";
  }
}

ProfileSet TinyProfiles() {
  ProfileOptions po;
  po.shape = KvShape{1, 64, 2, 32, DType::kBF16};
  po.templates = 2;
  po.decode_reps = 1;
  for (const char* n : {"raw", "fp8", "quant-k4v4-g32", "quant-k2v2-g32"}) po.configs.push_back(*ParseCodecConfig(n));
  auto p = BuildProfiles(po, {});
  EXPECT_TRUE(p.ok()) << p.status();
  return *p;
}

TEST(Profile, RealCodecFigures) {
  const ProfileSet p = TinyProfiles();
  ASSERT_EQ(p.configs.size(), 4u);
  EXPECT_NEAR(p.configs[0].ratio, 1.0, 0.05);
  EXPECT_EQ(p.configs[0].qloss[0], 0.0);
  // Fewer bits: smaller and lossier, for every template.
  EXPECT_LT(p.configs[3].ratio, p.configs[2].ratio);
  EXPECT_LT(p.configs[2].ratio, p.configs[1].ratio);
  for (uint32_t t = 0; t < p.templates; ++t) {
    EXPECT_GT(p.configs[1].qloss[t], 0.0);
    EXPECT_LT(p.configs[2].qloss[t], p.configs[3].qloss[t]);
  }
}

TEST(Sim, OracleAndCapacityAccounting) {
  const ProfileSet p = TinyProfiles();
  const Trace t = Gen(Workload::kDocQa, 2, 300);
  const TraceSummary s = Summarize(t);
  SimOptions o;
  o.dram_bytes = s.distinct_tokens * o.bytes_per_token * 2;
  o.ssd_bytes = 0;
  o.replan_every = 0;
  policy::LruPolicy lru;
  auto oracle = Simulate(t, p, &lru, o);
  ASSERT_TRUE(oracle.ok()) << oracle.status();
  EXPECT_EQ(oracle->mean_loss, 0.0);
  EXPECT_DOUBLE_EQ(oracle->dram_hit, 1.0);
  EXPECT_GT(oracle->mean_delay_s, 0.0);

  // Small DRAM, no SSD: raw LRU must miss; a 4x smaller static config misses less.
  o.dram_bytes = s.distinct_tokens * o.bytes_per_token / 20;
  o.replan_every = 10;
  auto small = Simulate(t, p, &lru, o);
  ASSERT_TRUE(small.ok());
  EXPECT_GT(small->miss, 0.0);
  EXPECT_GT(small->mean_delay_s, oracle->mean_delay_s);
  policy::StaticPolicy st("quant-k2v2-g32");
  o.put_config = 3;
  auto comp = Simulate(t, p, &st, o);
  ASSERT_TRUE(comp.ok());
  EXPECT_LT(comp->miss, small->miss);
  EXPECT_GT(comp->mean_loss, 0.0);
  // The optimizer with a huge quality weight stays lossless.
  o.put_config = 0;
  o.alpha = 1e6;
  policy::AdaptiveOptimizer opt;
  auto ad = Simulate(t, p, &opt, o);
  ASSERT_TRUE(ad.ok()) << ad.status();
  EXPECT_EQ(ad->mean_loss, 0.0);
  EXPECT_GT(ad->plans, 0u);
  // Bad options are refused.
  o.put_config = 99;
  EXPECT_FALSE(Simulate(t, p, &opt, o).ok());
}


std::string SourcePath(const std::string& rel) {
  const char* d = std::getenv("ADAPTCACHE_SOURCE_DIR");
  return (d ? std::string(d) : std::string(".")) + "/" + rel;
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(GroundTruth, LoadsTheMeasuredTableAndSplitsContexts) {
  auto gt = LoadGroundTruth(SourcePath("bench/results/chunk_quality.csv"));
  ASSERT_TRUE(gt.ok()) << gt.status();
  ASSERT_EQ(gt->configs.size(), 31u);
  EXPECT_EQ(gt->configs[0].name, "raw");
  EXPECT_EQ(gt->contexts.size(), 50u);
  EXPECT_EQ(gt->chunks.size(), 300u);
  EXPECT_DOUBLE_EQ(gt->size_frac[0], 1.0);
  for (size_t c = 0; c < gt->configs.size(); ++c) {
    if (gt->configs[c].name == "fp8") {
      EXPECT_NEAR(gt->size_frac[c], 1 / 1.959, 1e-3);
    }
  }
  for (const GtChunk& ch : gt->chunks) {
    EXPECT_EQ(ch.loss[0], 0.f);
    for (float l : ch.loss) EXPECT_TRUE(l >= 0.f && l <= 1.f);
  }
  const ContextSplit sp = SplitContexts(*gt);
  EXPECT_EQ(sp.validation_chunks.size(), 120u);
  EXPECT_EQ(sp.test_chunks.size(), 180u);
  for (uint32_t v : sp.validation_chunks) {
    for (uint32_t t : sp.test_chunks) ASSERT_NE(gt->chunks[v].context, gt->chunks[t].context);
  }
}

constexpr char kTinyCsv[] =
    "context,chunk,config,ratio,kl,top1_agreement,nll_delta,proxy,predicted_loss,proxy_probe\r\n"
    "a,0,raw,1,0,1,0,0,0,0\r\n"
    "a,0,fp8,2,0.01,0.9,0,0.1,0.08,0.1\r\n"
    "a,1,raw,1,0,1,0,0,0,0\r\n"
    "a,1,fp8,2,0.02,0.8,0,0.1,0.08,0.3\r\n"
    "b,0,raw,1,0,1,0,0,0,0\r\n"
    "b,0,fp8,2,0.03,0.5,0,0.1,0.08,0.2\r\n"
    "b,-1,fp8,2,0.03,0.5,0,0.1,0.08,0.2\r\n";

TEST(GroundTruth, ProbeCalibrationIsMonotoneAndUsesOnlyItsChunks) {
  auto gt = ParseGroundTruth(kTinyCsv);
  ASSERT_TRUE(gt.ok()) << gt.status();
  ASSERT_EQ(gt->chunks.size(), 3u);  // the whole-context row is skipped
  EXPECT_FLOAT_EQ(gt->chunks[1].loss[1], 0.2f);
  // Fit on context a only: probe 0.1 -> loss 0.1, 0.3 -> 0.2; b (loss 0.5) is ignored.
  const ProbeCalibration cal = ProbeCalibration::Fit(*gt, {0, 1});
  EXPECT_NEAR(cal(1, 0.1), 0.1, 1e-6);
  EXPECT_NEAR(cal(1, 0.2), 0.15, 1e-6);
  EXPECT_NEAR(cal(1, 1.0), 0.2, 1e-6);  // flat outside
  EXPECT_EQ(cal(0, 0.5), 0.0);          // raw
  // With b in the fit the map changes (it must be fitted on what it is given).
  const ProbeCalibration all = ProbeCalibration::Fit(*gt, {0, 1, 2});
  EXPECT_GT(all(1, 0.2), cal(1, 0.2));
  // Predicted estimate: predicted_loss / chunks_per_context.
  EXPECT_NEAR(EstimateOf(*gt, gt->chunks[0], 1, Estimate::kPredicted, &cal), 0.01, 1e-7);
  EXPECT_NEAR(EstimateOf(*gt, gt->chunks[2], 1, Estimate::kTruth, &cal), 0.5, 1e-7);
}

// A two-config model: raw and fp8, one source whose true fp8 loss is 0.5.
SimModel TwoConfigModel(float est_fp8, const ScoreDelay* score) {
  SimModel m;
  m.configs = {{"raw", CodecId::kRaw}, {"fp8", CodecId::kFp8}};
  m.size_frac = {1.0, 0.5};
  m.sources = 1;
  m.est = {0.f, est_fp8};
  m.truth = {0.f, 0.5f};
  m.truth_kl = {0.f, 0.25f};
  m.score = score;
  return m;
}

TEST(GroundTruthSim, PoliciesAreScoredWithTruthNotTheirEstimates) {
  const Trace t = Gen(Workload::kDocQa, 3, 300);
  const TraceSummary s = Summarize(t);
  SimOptions o;
  o.dram_bytes = s.distinct_tokens * o.bytes_per_token / 4;
  o.ssd_bytes = 0;
  o.replan_every = 10;
  o.alpha = 1.0;
  // The optimizer is told fp8 is lossless (wrong): it compresses, and the truth is charged.
  const SimModel wrong = TwoConfigModel(0.f, nullptr);
  policy::AdaptiveOptimizer opt;
  auto ad = Simulate(t, wrong, &opt, o);
  ASSERT_TRUE(ad.ok()) << ad.status();
  EXPECT_EQ(ad->mean_est_loss, 0.0);
  EXPECT_GT(ad->mean_loss, 0.05);
  EXPECT_NEAR(ad->mean_kl, ad->mean_loss / 2, 1e-9);
  // Told the truth with a huge quality weight it stays raw: loss 0.
  const SimModel right = TwoConfigModel(0.5f, nullptr);
  o.alpha = 1e6;
  policy::AdaptiveOptimizer opt2;
  auto ad2 = Simulate(t, right, &opt2, o);
  ASSERT_TRUE(ad2.ok());
  EXPECT_EQ(ad2->mean_loss, 0.0);
  // A static policy decides the same whatever the estimate, and is scored the same.
  o.put_config = 1;
  policy::StaticPolicy st1("fp8"), st2("fp8");
  auto a = Simulate(t, wrong, &st1, o);
  auto b = Simulate(t, TwoConfigModel(3.f, nullptr), &st2, o);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_GT(a->mean_loss, 0.0);
  EXPECT_DOUBLE_EQ(a->mean_loss, b->mean_loss);
  EXPECT_NE(a->mean_est_loss, b->mean_est_loss);
}

TEST(GroundTruthSim, ScorerDelaysAreIndependentOfThePlannersModel) {
  const Trace t = Gen(Workload::kDocQa, 4, 200);
  const TraceSummary s = Summarize(t);
  ScoreDelay fast, slow;
  fast.dram_s_per_token = {1e-6, 1e-6};
  fast.ssd_s_per_token = {1e-5, 1e-5};
  fast.recompute = {{0, 0}, {1000, 0.01}, {2000, 0.03}};
  slow = fast;
  slow.dram_s_per_token = {1e-3, 1e-3};
  EXPECT_DOUBLE_EQ(fast.R(500), 0.005);
  EXPECT_DOUBLE_EQ(fast.Recompute(1000, 2000), 0.02);
  EXPECT_DOUBLE_EQ(fast.R(3000), 0.05);  // last slope continued
  SimOptions o;
  o.dram_bytes = s.distinct_tokens * o.bytes_per_token * 2;
  o.ssd_bytes = 0;
  o.replan_every = 0;
  policy::LruPolicy l1, l2;
  const SimModel mf = TwoConfigModel(0.f, &fast), ms = TwoConfigModel(0.f, &slow);
  auto a = Simulate(t, mf, &l1, o);
  auto b = Simulate(t, ms, &l2, o);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_DOUBLE_EQ(a->dram_hit, b->dram_hit);  // same decisions
  EXPECT_NEAR(b->mean_delay_s / a->mean_delay_s, 1000.0, 1e-6);
}

TEST(Metrics, LowerHullOnAHandMadeExample) {
  const std::vector<QD> pts = {{0, 10}, {1, 8}, {1, 9}, {2, 2}, {3, 1.5}, {4, 3}};
  const std::vector<QD> h = LowerHull(pts);
  ASSERT_EQ(h.size(), 3u);  // (1, 8) lies above the segment (0,10)-(2,2); (4, 3) is dominated
  EXPECT_EQ(h[0].q, 0);
  EXPECT_EQ(h[1].q, 2);
  EXPECT_EQ(h[2].q, 3);
  EXPECT_DOUBLE_EQ(*HullDelayAt(h, 1), 6);
  EXPECT_DOUBLE_EQ(*HullDelayAt(h, 2.5), 1.75);
  EXPECT_DOUBLE_EQ(*HullDelayAt(h, 9), 1.5);
  EXPECT_FALSE(HullDelayAt(h, -1).has_value());
  EXPECT_DOUBLE_EQ(*HullLossAt(h, 6), 1);
  EXPECT_DOUBLE_EQ(*HullLossAt(h, 50), 0);
  EXPECT_FALSE(HullLossAt(h, 1).has_value());
  // Single points: cheapest at least as good, best within a delay.
  EXPECT_DOUBLE_EQ(CheapestAtLeastAsGood(pts, 1.5)->d, 8);
  EXPECT_DOUBLE_EQ(CheapestAtLeastAsGood(pts, 0)->d, 10);
  EXPECT_FALSE(CheapestAtLeastAsGood(pts, -0.5).has_value());
  EXPECT_DOUBLE_EQ(BestWithinDelay(pts, 5)->q, 2);
  EXPECT_FALSE(BestWithinDelay(pts, 1).has_value());
}

TEST(Metrics, StudentTInterval) {
  const Interval i = TInterval95({1, 2, 3, 4, 5});
  EXPECT_DOUBLE_EQ(i.mean, 3);
  EXPECT_NEAR(i.hi - i.mean, 2.776 * std::sqrt(2.5) / std::sqrt(5.0), 1e-9);
  EXPECT_NEAR(i.lo, 3 - 1.9633, 1e-3);
  const Interval one = TInterval95({7});
  EXPECT_EQ(one.lo, 7);
  EXPECT_EQ(one.hi, 7);
  EXPECT_TRUE(std::isnan(TInterval95({}).mean));
  EXPECT_NEAR(StudentT975(1), 12.706, 1e-3);
}

TEST(GroundTruth, MeasuredDelaysFromE2eCsv) {
  auto m = ParseE2eCsv(ReadFile(SourcePath("bench/results/e2e.csv")));
  ASSERT_TRUE(m.ok()) << m.status();
  double raw = 0;
  for (const auto& [c, v] : m->dram_s_per_chunk) {
    if (c == "raw") raw = v;
  }
  EXPECT_NEAR(raw * 1e3, 0.68, 0.05);  // ~49 GB/s end to end for 32 MiB
  EXPECT_NEAR(m->raw_ssd_s_per_chunk * 1e3, 18.1, 0.5);
  ScoreDelay sd;
  sd.recompute = m->recompute;
  EXPECT_NEAR(sd.R(2048) * 1e3, 61.08, 0.01);
  auto gt = ParseGroundTruth(kTinyCsv);
  ASSERT_TRUE(gt.ok());
  const ScoreDelay b = BuildScoreDelay(*m, gt->configs, gt->size_frac, 32u << 20, 256, nullptr);
  EXPECT_NEAR(b.dram_s_per_token[0] * 256, raw, 1e-12);
  for (size_t c = 0; c < 2; ++c) EXPECT_GT(b.ssd_s_per_token[c], b.dram_s_per_token[c]);
}

}  // namespace
}  // namespace adaptcache::eval
