#include "kernels/quality_proxy.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "common/half.h"
#include "kernels/codec.h"
#include "tests/testing/kv_data.h"

namespace adaptcache {
namespace {

using testing::SyntheticKv;

// Probe queries that look like real ones: a key of the same head plus noise.
std::vector<float> MakeProbes(const KvShape& s, const std::vector<std::byte>& raw, uint32_t count,
                              uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g;
  std::vector<float> p(uint64_t{s.layers} * count * s.kv_heads * s.head_dim);
  for (uint32_t l = 0; l < s.layers; ++l)
    for (uint32_t c = 0; c < count; ++c)
      for (uint32_t h = 0; h < s.kv_heads; ++h) {
        const uint32_t t = rng() % s.tokens;
        for (uint32_t d = 0; d < s.head_dim; ++d) {
          const uint64_t src = ((uint64_t{l} * s.tokens + t) * s.kv_heads + h) * s.head_dim + d;
          p[((uint64_t{l} * count + c) * s.kv_heads + h) * s.head_dim + d] =
              LoadAsFloat(raw.data(), s.dtype, src) + 0.5f * g(rng);
        }
      }
  return p;
}

// True when `a` keeps at least the fidelity of `b` in every parameter of the same family
// (more bits, more kept tokens, lower lowrank ratio, no extra stage) and differs.
bool Dominates(const CodecConfig& a, const CodecConfig& b) {
  if (a == b) return false;
  if (a.family == CodecId::kRaw) return true;
  if (a.family != b.family) return false;
  switch (a.family) {
    case CodecId::kQuant:
      return a.group == b.group && a.sink_tokens == b.sink_tokens && a.hadamard == b.hadamard &&
             a.k_bits >= b.k_bits && a.v_bits >= b.v_bits;
    case CodecId::kDrop: {
      const bool same_inner = a.k_bits == b.k_bits && a.v_bits == b.v_bits && a.group == b.group &&
                              a.sink_tokens == b.sink_tokens && a.hadamard == b.hadamard;
      if (same_inner) return a.keep_permille >= b.keep_permille;
      // Unquantised drop vs the same drop with a quant stage on top.
      return a.k_bits == 0 && b.k_bits != 0 && a.keep_permille >= b.keep_permille;
    }
    case CodecId::kLowrank:
      return a.lowrank_ratio <= b.lowrank_ratio;
    default:
      return false;
  }
}

// Evaluates every applicable config of the default space and checks the dominance
// order; returns proxies by name for further assertions.
std::map<std::string, double> CheckMonotone(const KvShape& s, const std::vector<std::byte>& raw,
                                            const SideData& side) {
  auto ref = QualityReference::Build(s, raw, side);
  EXPECT_TRUE(ref.ok()) << ref.status();
  if (!ref.ok()) return {};
  std::vector<CodecConfig> cfgs;
  std::vector<QualityReport> reps;
  std::map<std::string, double> by_name;
  for (const CodecConfig& c : DefaultConfigSpace()) {
    if (!CheckApplicable(c, s).ok()) continue;
    auto r = ref->EvaluateConfig(c);
    EXPECT_TRUE(r.ok()) << c.Name() << ": " << r.status();
    if (!r.ok()) continue;
    EXPECT_EQ(r->layers.size(), s.layers);
    EXPECT_EQ(r->used_probes, side.probe_count > 0);
    EXPECT_TRUE(std::isfinite(r->proxy)) << c.Name();
    cfgs.push_back(c);
    reps.push_back(*r);
    by_name[c.Name()] = r->proxy;
  }
  EXPECT_GE(cfgs.size(), 2u);
  int pairs = 0;
  for (size_t i = 0; i < cfgs.size(); ++i) {
    for (size_t j = 0; j < cfgs.size(); ++j) {
      if (!Dominates(cfgs[i], cfgs[j])) continue;
      ++pairs;
      EXPECT_LE(reps[i].proxy, reps[j].proxy + 1e-9)
          << cfgs[i].Name() << " (" << reps[i].proxy << ") looks worse than " << cfgs[j].Name()
          << " (" << reps[j].proxy << ")";
      // Reconstruction error orders the same way (the token-dropping families lose whole
      // tokens, so compare K and V error sums).
      EXPECT_LE(reps[i].k_rel_error + reps[i].v_rel_error,
                reps[j].k_rel_error + reps[j].v_rel_error + 1e-9)
          << cfgs[i].Name() << " vs " << cfgs[j].Name();
    }
  }
  EXPECT_GT(pairs, 0);
  return by_name;
}

// Assertions on named configs that start biting as soon as their family exists.
void ExpectBetter(const std::map<std::string, double>& p, const std::string& better,
                  const std::string& worse) {
  auto b = p.find(better), w = p.find(worse);
  ASSERT_NE(b, p.end()) << better << " was not evaluated";
  ASSERT_NE(w, p.end()) << worse << " was not evaluated";
  EXPECT_LT(b->second, w->second) << better << " should beat " << worse;
}

void ExpectNamedOrder(const std::map<std::string, double>& p) {
  ExpectBetter(p, "raw", "fp8");
  ExpectBetter(p, "quant-k4v4-g64", "quant-k2v2-g64");
  ExpectBetter(p, "quant-k8v8-g128", "quant-k4v4-g128");
  ExpectBetter(p, "fp8", "quant-k2v2-g64");
  ExpectBetter(p, "drop-75", "drop-25");
  ExpectBetter(p, "drop-50", "drop-10");
  ExpectBetter(p, "lowrank-r8", "lowrank-r20");
  ExpectBetter(p, "lowrank-r12", "lowrank-r16");
}

const KvShape kShape{2, 128, 2, 64, DType::kBF16};

TEST(QualityProxy, RawIsLossless) {
  const auto raw = SyntheticKv(kShape, 1);
  auto r = EstimateQuality(CodecConfig{}, kShape, raw);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->proxy, 0.0);
  EXPECT_EQ(r->k_rel_error, 0.0);
  EXPECT_EQ(r->v_rel_error, 0.0);
  for (const auto& l : r->layers) EXPECT_EQ(l.logit_rms_error, 0.0);
}

TEST(QualityProxy, MonotoneOverConfigSpaceWithoutProbes) {
  const auto raw = SyntheticKv(kShape, 2);
  ExpectNamedOrder(CheckMonotone(kShape, raw, {}));
}

TEST(QualityProxy, MonotoneOverConfigSpaceWithProbes) {
  const auto raw = SyntheticKv(kShape, 3);
  const auto probes = MakeProbes(kShape, raw, 4, 5);
  SideData side;
  side.probe_count = 4;
  side.probe_queries = probes;
  ExpectNamedOrder(CheckMonotone(kShape, raw, side));
}

TEST(QualityProxy, MatchesDirectComputation) {
  // V scaled by 1.25 and K untouched: attention weights are unchanged, so every output is
  // scaled by 1.25 and the relative attention error is exactly 0.25.
  const KvShape s{2, 32, 2, 16, DType::kFP32};
  const auto raw = SyntheticKv(s, 4);
  auto decoded = raw;
  for (uint64_t i = s.Elements() / 2; i < s.Elements(); ++i) {
    StoreFromFloat(decoded.data(), s.dtype, i, 1.25f * LoadAsFloat(raw.data(), s.dtype, i));
  }
  for (bool probes : {false, true}) {
    const auto p = MakeProbes(s, raw, 3, 6);
    SideData side;
    if (probes) side.probe_count = 3, side.probe_queries = p;
    auto ref = QualityReference::Build(s, raw, side);
    ASSERT_TRUE(ref.ok());
    EXPECT_EQ(ref->queries_per_head(), probes ? 3u : kPseudoQueriesPerHead);
    auto r = ref->Evaluate(decoded);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->k_rel_error, 0.0);
    EXPECT_NEAR(r->v_rel_error, 0.25, 1e-6);
    for (const auto& l : r->layers) {
      EXPECT_NEAR(l.attention_error, 0.25, 1e-4);
      EXPECT_EQ(l.logit_rms_error, 0.0);
    }
    EXPECT_NEAR(r->proxy, 0.25, 1e-4);
  }
}

TEST(QualityProxy, DroppedTokensCountTheirAttentionMass) {
  // Identical tokens get uniform attention: dropping 2 of 8 loses mass 0.25, and the kept
  // tokens' output is exact (rel = 0). Treating the zeros as real keys instead would
  // dilute the output (a different, nonzero error).
  const KvShape s{1, 8, 1, 4, DType::kFP32};
  std::vector<std::byte> raw(s.Bytes());
  for (uint64_t i = 0; i < s.Elements(); ++i) StoreFromFloat(raw.data(), s.dtype, i, 1.0f);
  auto decoded = raw;
  std::vector<uint8_t> kept(8, 1);
  for (uint32_t t : {2u, 5u}) {
    kept[t] = 0;
    for (uint32_t kv = 0; kv < 2; ++kv)
      for (uint32_t d = 0; d < 4; ++d) StoreFromFloat(decoded.data(), s.dtype, (kv * 8 + t) * 4 + d, 0.f);
  }
  auto ref = QualityReference::Build(s, raw, {});
  ASSERT_TRUE(ref.ok());
  auto r = ref->Evaluate(decoded, kept);
  ASSERT_TRUE(r.ok());
  EXPECT_NEAR(r->proxy, 0.25, 1e-6);
  EXPECT_NEAR(r->layers[0].attention_mass_lost, 0.25, 1e-9);
  EXPECT_NEAR(r->k_rel_error, 0.5, 1e-9);  // 2 of 8 tokens lost: sqrt(2/8)
  auto unmasked = ref->Evaluate(decoded);
  ASSERT_TRUE(unmasked.ok());
  EXPECT_EQ(unmasked->layers[0].attention_mass_lost, 0.0);
  EXPECT_GT(unmasked->proxy, 0.01);
}

TEST(QualityProxy, RejectsBadInput) {
  const auto raw = SyntheticKv(kShape, 7);
  SideData side;
  std::vector<float> probes(10);
  side.probe_count = 1;
  side.probe_queries = probes;  // wrong size
  EXPECT_FALSE(QualityReference::Build(kShape, raw, side).ok());
  auto good = MakeProbes(kShape, raw, 1, 1);
  good[3] = NAN;
  side.probe_queries = good;
  EXPECT_FALSE(QualityReference::Build(kShape, raw, side).ok());
  side = {};
  side.probe_queries = probes;  // probes without a count
  EXPECT_FALSE(QualityReference::Build(kShape, raw, side).ok());
  EXPECT_FALSE(QualityReference::Build(kShape, std::span(raw).first(10), {}).ok());
  auto ref = QualityReference::Build(kShape, raw, {});
  ASSERT_TRUE(ref.ok());
  EXPECT_FALSE(ref->Evaluate(std::span(raw).first(10)).ok());
  std::vector<uint8_t> kept(3, 1);
  EXPECT_FALSE(ref->Evaluate(raw, kept).ok());
  CodecConfig bad;
  bad.family = CodecId::kLowrank;
  bad.lowrank_ratio = 99;
  EXPECT_FALSE(ref->EvaluateConfig(bad).ok());
}

// A minimal .npy reader for the optional real samples: C order, little-endian f2/f4,
// shape [2, layers, tokens, kv_heads, head_dim].
bool ReadKvNpy(const std::string& path, KvShape& s, std::vector<std::byte>& data) {
  std::ifstream f(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) return false;
  const size_t hlen = uint8_t(bytes[8]) | (uint8_t(bytes[9]) << 8);
  if (bytes[6] != 1 || 10 + hlen > bytes.size()) return false;
  const std::string header = bytes.substr(10, hlen);
  if (header.find("'fortran_order': False") == std::string::npos) return false;
  if (header.find("'<f2'") != std::string::npos) {
    s.dtype = DType::kFP16;
  } else if (header.find("'<f4'") != std::string::npos) {
    s.dtype = DType::kFP32;
  } else {
    return false;
  }
  unsigned two, l, t, h, d;
  const size_t sp = header.find("'shape': (");
  if (sp == std::string::npos ||
      std::sscanf(header.c_str() + sp + 10, "%u, %u, %u, %u, %u", &two, &l, &t, &h, &d) != 5 || two != 2) {
    return false;
  }
  s.layers = l, s.tokens = t, s.kv_heads = h, s.head_dim = d;
  if (!ValidateShape(s).ok() || bytes.size() - 10 - hlen != s.Bytes()) return false;
  data.resize(s.Bytes());
  std::memcpy(data.data(), bytes.data() + 10 + hlen, s.Bytes());
  return true;
}

TEST(QualityProxy, MonotoneOnRealSamples) {
  const char* src = std::getenv("ADAPTCACHE_SOURCE_DIR");
  const std::filesystem::path dir = std::filesystem::path(src ? src : ".") / "tests" / "data";
  int samples = 0;
  if (std::filesystem::is_directory(dir)) {
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      const std::string name = e.path().filename().string();
      if (name.rfind("kv_", 0) != 0 || e.path().extension() != ".npy") continue;
      KvShape s;
      std::vector<std::byte> data;
      ASSERT_TRUE(ReadKvNpy(e.path().string(), s, data)) << name << " is not a [2,L,T,H,D] f2/f4 .npy";
      SCOPED_TRACE(name);
      ExpectNamedOrder(CheckMonotone(s, data, {}));
      ++samples;
    }
  }
  if (samples == 0) GTEST_SKIP() << "no tests/data/kv_*.npy sample";
}

}  // namespace
}  // namespace adaptcache
