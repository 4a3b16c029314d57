// The codecs and the quality proxies on real KV caches: tests/data/kv_*.npy, exported by
// the quality profiler (bench/quality/profile.py --export-kv) from SmolLM2-135M-Instruct
// on real text (provenance in tests/data/PROVENANCE.md). Shapes [2, L, T, H, D], fp16.
// Asserts the documented per-element error bounds (docs/format.md) for raw, fp8 and
// quant, exact kept tokens for drop, and the proxy ordering of nested configs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "common/kv_shape.h"
#include "kernels/codec.h"
#include "kernels/drop.h"
#include "kernels/quality_proxy.h"

namespace adaptcache {
namespace {

struct Sample {
  std::string name;
  KvShape shape;
  std::vector<std::byte> raw;
  std::vector<float> f;  // the same values as float
};

float HalfToFloat(uint16_t h) {
  const uint32_t sign = (h >> 15) & 1, exp = (h >> 10) & 0x1F, man = h & 0x3FF;
  float v;
  if (exp == 0) {
    v = std::ldexp(static_cast<float>(man), -24);
  } else if (exp == 31) {
    v = man ? NAN : INFINITY;
  } else {
    v = std::ldexp(static_cast<float>(man | 0x400), static_cast<int>(exp) - 25);
  }
  return sign ? -v : v;
}

std::vector<float> ToFloat(const std::vector<std::byte>& b) {
  std::vector<float> out(b.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    uint16_t h;
    std::memcpy(&h, b.data() + 2 * i, 2);
    out[i] = HalfToFloat(h);
  }
  return out;
}

// C-order little-endian <f2 .npy of shape (2, L, T, H, D), nothing else.
bool ReadNpy(const std::filesystem::path& path, Sample& s) {
  std::ifstream f(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0 || bytes[6] != 1) return false;
  const size_t hlen = uint8_t(bytes[8]) | (uint8_t(bytes[9]) << 8);
  if (10 + hlen > bytes.size()) return false;
  const std::string header = bytes.substr(10, hlen);
  if (header.find("'<f2'") == std::string::npos ||
      header.find("'fortran_order': False") == std::string::npos) {
    return false;
  }
  unsigned two, l, t, h, d;
  const size_t sp = header.find("'shape': (");
  if (sp == std::string::npos ||
      std::sscanf(header.c_str() + sp + 10, "%u, %u, %u, %u, %u", &two, &l, &t, &h, &d) != 5 ||
      two != 2) {
    return false;
  }
  s.shape = KvShape{l, t, h, d, DType::kFP16};
  if (!ValidateShape(s.shape).ok() || bytes.size() - 10 - hlen != s.shape.Bytes()) return false;
  s.raw.resize(s.shape.Bytes());
  std::memcpy(s.raw.data(), bytes.data() + 10 + hlen, s.raw.size());
  s.f = ToFloat(s.raw);
  s.name = path.filename().string();
  return true;
}

std::vector<Sample> LoadSamples() {
  const char* src = std::getenv("ADAPTCACHE_SOURCE_DIR");
  const auto dir = std::filesystem::path(src ? src : ".") / "tests" / "data";
  std::vector<Sample> out;
  if (!std::filesystem::is_directory(dir)) return out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("kv_", 0) != 0 || e.path().extension() != ".npy") continue;
    Sample s;
    EXPECT_TRUE(ReadNpy(e.path(), s)) << n << " is not a [2,L,T,H,D] fp16 .npy";
    if (!s.raw.empty()) out.push_back(std::move(s));
  }
  std::sort(out.begin(), out.end(), [](const Sample& a, const Sample& b) { return a.name < b.name; });
  return out;
}

std::vector<float> RoundTrip(const Sample& s, const std::string& cfg_name) {
  auto cfg = ParseCodecConfig(cfg_name);
  EXPECT_TRUE(cfg.ok()) << cfg_name;
  auto blob = EncodeToVector(*cfg, s.shape, s.raw);
  EXPECT_TRUE(blob.ok()) << cfg_name << ": " << blob.status();
  std::vector<std::byte> out(s.shape.Bytes());
  EXPECT_TRUE(Decode(*blob, out).ok()) << cfg_name;
  return ToFloat(out);
}

double RelError(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += double(a[i] - b[i]) * (a[i] - b[i]);
    den += double(a[i]) * a[i];
  }
  return std::sqrt(num / den);
}

class RealSamples : public ::testing::Test {
 protected:
  void SetUp() override {
    samples_ = LoadSamples();
    // The samples are committed: their absence is a packaging error, not a skip.
    ASSERT_FALSE(samples_.empty()) << "no tests/data/kv_*.npy";
  }
  std::vector<Sample> samples_;
};

TEST_F(RealSamples, RawIsExact) {
  for (const Sample& s : samples_) {
    EXPECT_EQ(RoundTrip(s, "raw"), s.f) << s.name;
  }
}

TEST_F(RealSamples, Fp8WithinFormatBound) {
  for (const Sample& s : samples_) {
    const auto y = RoundTrip(s, "fp8");
    const size_t row = size_t{s.shape.kv_heads} * s.shape.head_dim;
    for (size_t r = 0; r < y.size() / row; ++r) {
      float amax = 0;
      for (size_t c = 0; c < row; ++c) amax = std::max(amax, std::fabs(s.f[r * row + c]));
      const double scale = amax / 448.0;
      for (size_t c = 0; c < row; ++c) {
        const double x = s.f[r * row + c];
        // E4M3 rounding (2^-4 relative, 2^-10 of scale below normals), then fp16 output.
        const double bound = std::fabs(x) * (0.0625 + 0.001) + scale * 0.001 + 1e-7;
        ASSERT_LE(std::fabs(y[r * row + c] - x), bound) << s.name << " row " << r << " col " << c;
      }
    }
  }
}

TEST_F(RealSamples, QuantWithinStepBound) {
  for (const Sample& s : samples_) {
    const size_t slab = s.shape.SlabElements();
    for (const auto& [name, kb, vb] : {std::tuple{"quant-k8v8-g128", 8, 8},
                                       std::tuple{"quant-k4v4-g64", 4, 4},
                                       std::tuple{"quant-k2v2-g32", 2, 2}}) {
      const auto y = RoundTrip(s, name);
      for (size_t sl = 0; sl < 2 * s.shape.layers; ++sl) {
        const bool is_k = sl < s.shape.layers;
        const double levels = (1 << (is_k ? kb : vb)) - 1;
        float mn = INFINITY, mx = -INFINITY;
        for (size_t i = 0; i < slab; ++i) {
          mn = std::min(mn, s.f[sl * slab + i]);
          mx = std::max(mx, s.f[sl * slab + i]);
        }
        // A group's range is within the slab's; fp16 step/min rounding adds a little.
        const double half_step = 0.5 * (mx - mn + std::max(std::fabs(mn), std::fabs(mx)) * 2e-3) /
                                 levels * 1.002;
        for (size_t i = 0; i < slab; ++i) {
          const double x = s.f[sl * slab + i];
          ASSERT_LE(std::fabs(y[sl * slab + i] - x), half_step + std::fabs(x) * 1e-3 + 1e-6)
              << s.name << " " << name << " slab " << sl << " element " << i;
        }
      }
    }
    const double e8 = RelError(s.f, RoundTrip(s, "quant-k8v8-g128"));
    const double e4 = RelError(s.f, RoundTrip(s, "quant-k4v4-g64"));
    const double e2 = RelError(s.f, RoundTrip(s, "quant-k2v2-g64"));
    EXPECT_LT(e8, e4) << s.name;
    EXPECT_LT(e4, e2) << s.name;
    EXPECT_LT(e8, 0.02) << s.name;  // 8 bits on real KV: well under 2% relative error
  }
}

TEST_F(RealSamples, DropKeepsExactTokensAndZerosTheRest) {
  for (const Sample& s : samples_) {
    for (const char* name : {"drop-75", "drop-25"}) {
      auto cfg = ParseCodecConfig(name);
      ASSERT_TRUE(cfg.ok());
      auto blob = EncodeToVector(*cfg, s.shape, s.raw);
      ASSERT_TRUE(blob.ok());
      auto kept = DecodeKeptTokens(*blob);
      ASSERT_TRUE(kept.ok());
      EXPECT_EQ(kept->size(), DropKeepCount(s.shape.tokens, cfg->keep_permille, kDropSinks, kDropWindow));
      std::vector<uint8_t> is_kept(s.shape.tokens, 0);
      for (uint32_t t : *kept) is_kept[t] = 1;
      for (uint32_t t = 0; t < kDropSinks; ++t) EXPECT_TRUE(is_kept[t]) << "sink " << t;
      for (uint32_t t = s.shape.tokens - kDropWindow; t < s.shape.tokens; ++t) EXPECT_TRUE(is_kept[t]);
      const auto y = RoundTrip(s, name);
      const size_t row = size_t{s.shape.kv_heads} * s.shape.head_dim;
      for (size_t r = 0; r < y.size() / row; ++r) {
        const uint32_t t = static_cast<uint32_t>(r % s.shape.tokens);
        for (size_t c = 0; c < row; ++c) {
          ASSERT_EQ(y[r * row + c], is_kept[t] ? s.f[r * row + c] : 0.0f) << s.name << " " << name;
        }
      }
    }
  }
}

TEST_F(RealSamples, ProxyOrdersNestedConfigs) {
  const std::vector<std::vector<const char*>> chains = {
      {"raw", "quant-k8v8-g128", "quant-k4v4-g64", "quant-k2v2-g64"},
      {"quant-k4v4-g32", "quant-k4v2-g32", "quant-k2v2-g32"},
      {"raw", "drop-75", "drop-50", "drop-33", "drop-25", "drop-10"},
      {"drop-50", "drop-50+quant-k4v4-g64", "drop-50+quant-k4v2-g64"},
      {"lowrank-r8", "lowrank-r20"},
  };
  for (const Sample& s : samples_) {
    auto ref = QualityReference::Build(s.shape, s.raw, {});
    ASSERT_TRUE(ref.ok()) << ref.status();
    for (const auto& chain : chains) {
      double prev = -1;
      for (const char* name : chain) {
        auto cfg = ParseCodecConfig(name);
        ASSERT_TRUE(cfg.ok()) << name;
        if (!CheckApplicable(*cfg, s.shape).ok()) continue;
        auto rep = ref->EvaluateConfig(*cfg);
        ASSERT_TRUE(rep.ok()) << name << ": " << rep.status();
        ASSERT_TRUE(std::isfinite(rep->proxy)) << name;
        if (std::string(name) == "raw") {
          EXPECT_EQ(rep->proxy, 0.0);
        }
        EXPECT_GE(rep->proxy, prev) << s.name << ": " << name << " has a smaller proxy than its predecessor";
        prev = rep->proxy;
      }
    }
  }
}

}  // namespace
}  // namespace adaptcache
