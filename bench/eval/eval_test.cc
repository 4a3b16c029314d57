// Tests of the evaluation harness: traces (determinism, format round trip, strict
// parsing, workload invariants) and the simulation's accounting.
#include <gtest/gtest.h>

#include "absl/container/flat_hash_set.h"
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

}  // namespace
}  // namespace adaptcache::eval
