// lowrank codec benchmark: encode/decode time, achieved ratio and reconstruction error
// per target ratio on synthetic KV with realistic structure (tests/kernels/kv_synth.h).
// With --quality: quality-proxy build/evaluate time and the proxy of every config.
// Usage: lowrank_bench [--csv FILE] [--reps N] [--shape L,T,H,D] [--quality]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/codec.h"
#include "kernels/container.h"
#include "kernels/lowrank.h"
#include "kernels/quality_proxy.h"
#include "kernels/simd.h"
#include "tests/testing/kv_data.h"

namespace adaptcache {
namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

// Fraction of slab records that share one basis across all heads.
double SharedFraction(const std::vector<std::byte>& blob, const KvShape& s) {
  auto view = ParseContainer(blob);
  if (!view.ok() || s.kv_heads == 1) return 0;
  auto index = view->Find(1);
  auto data = view->Find(2);
  int shared = 0;
  for (uint64_t i = 0; i < 2ull * s.layers; ++i) {
    uint32_t off;
    uint16_t g;
    std::memcpy(&off, index->data() + 8 * i, 4);
    std::memcpy(&g, data->data() + off, 2);
    shared += g == s.kv_heads;
  }
  return double(shared) / double(2 * s.layers);
}

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "lowrank_bench: FAILED: %s\n", what.c_str());
  std::exit(1);
}

double Ms(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// Proxy of every default config on one synthetic entry, with the time each evaluation
// takes (encode + decode + compare) and the reference build time.
int QualityTable(const KvShape& s, FILE* csv) {
  const auto raw = testing::SyntheticKv(s, 7);
  const auto t0 = std::chrono::steady_clock::now();
  auto ref = QualityReference::Build(s, raw, {});
  const auto t1 = std::chrono::steady_clock::now();
  if (!ref.ok()) Fail("quality reference: " + std::string(ref.status().message()));
  std::printf("\nquality proxy on %u,%u,%u,%u %s (pseudo-queries): reference build %.1f ms\n",
              s.layers, s.tokens, s.kv_heads, s.head_dim, std::string(DTypeName(s.dtype)).c_str(), Ms(t0, t1));
  std::printf("%-28s %8s %8s %8s %8s %8s\n", "config", "proxy", "K_err", "V_err", "lost", "eval_ms");
  if (csv) std::fprintf(csv, "\nconfig,proxy,k_rel_err,v_rel_err,attention_mass_lost,eval_ms\n");
  for (const CodecConfig& c : DefaultConfigSpace()) {
    if (!CheckApplicable(c, s).ok()) continue;
    const auto a = std::chrono::steady_clock::now();
    auto r = ref->EvaluateConfig(c);
    const auto b = std::chrono::steady_clock::now();
    if (!r.ok()) Fail(c.Name() + " quality proxy: " + std::string(r.status().message()));
    double lost = 0;
    for (const auto& l : r->layers) lost += l.attention_mass_lost / double(r->layers.size());
    // The proxies are errors: finite and >= 0, and exactly 0 for the lossless config.
    for (double v : {r->proxy, r->k_rel_error, r->v_rel_error, lost}) {
      if (!std::isfinite(v) || v < 0) Fail(c.Name() + " quality proxy: a value is negative or not finite");
    }
    if (c.family == CodecId::kRaw && (r->proxy != 0 || r->k_rel_error != 0 || r->v_rel_error != 0 || lost != 0)) {
      Fail("raw quality proxy is not 0");
    }
    std::printf("%-28s %8.4f %8.4f %8.4f %8.4f %8.1f\n", c.Name().c_str(), r->proxy, r->k_rel_error,
                r->v_rel_error, lost, Ms(a, b));
    if (csv) {
      std::fprintf(csv, "%s,%.5f,%.5f,%.5f,%.5f,%.2f\n", c.Name().c_str(), r->proxy, r->k_rel_error,
                   r->v_rel_error, lost, Ms(a, b));
    }
  }
  return 0;
}

int Main(int argc, char** argv) {
  int reps = 5;
  bool quality = false;
  const char* csv_path = nullptr;
  std::vector<KvShape> shapes = {KvShape{32, 256, 8, 128, DType::kBF16},   // Llama-3.1-8B chunk
                                 KvShape{28, 256, 4, 128, DType::kBF16},   // Qwen2.5-7B chunk
                                 KvShape{32, 256, 8, 128, DType::kFP16}};
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else if (!std::strcmp(argv[i], "--csv") && i + 1 < argc) {
      csv_path = argv[++i];
    } else if (!std::strcmp(argv[i], "--quality")) {
      quality = true;
    } else if (!std::strcmp(argv[i], "--shape") && i + 1 < argc) {
      KvShape s{};
      if (std::sscanf(argv[++i], "%u,%u,%u,%u", &s.layers, &s.tokens, &s.kv_heads, &s.head_dim) != 4) {
        std::fprintf(stderr, "bad --shape\n");
        return 2;
      }
      shapes = {s};
    } else {
      std::fprintf(stderr, "usage: %s [--reps N] [--csv FILE] [--shape L,T,H,D] [--quality]\n", argv[0]);
      return 2;
    }
  }
  FILE* csv = csv_path ? std::fopen(csv_path, "w") : nullptr;
  if (csv) std::fprintf(csv, "shape,dtype,ratio,achieved,encode_ms,decode_ms,k_rel_err,v_rel_err,shared_basis\n");
  std::printf("%-22s %-5s %5s %8s %10s %10s %8s %8s %7s\n", "shape(L,T,H,D)", "dtype", "ratio",
              "achieved", "encode_ms", "decode_ms", "K_err", "V_err", "shared");
  for (const KvShape& s : shapes) {
    const auto raw = testing::SyntheticKv(s, 42);
    char shape_name[64];
    std::snprintf(shape_name, sizeof shape_name, "%u,%u,%u,%u", s.layers, s.tokens, s.kv_heads, s.head_dim);
    for (int ratio : {8, 12, 16, 20}) {
      CodecConfig cfg;
      cfg.family = CodecId::kLowrank;
      cfg.lowrank_ratio = uint8_t(ratio);
      std::vector<std::byte> blob(LowrankMaxBytes(cfg, s)), out(s.Bytes());
      std::vector<double> enc, dec;
      uint64_t n = 0;
      for (int r = 0; r < reps; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        auto got = EncodeLowrank(cfg, s, raw, blob);
        const auto t1 = std::chrono::steady_clock::now();
        if (!got.ok()) {
          std::fprintf(stderr, "encode failed: %s\n", std::string(got.status().message()).c_str());
          return 1;
        }
        n = *got;
        auto view = ParseContainer(std::span(blob).first(n));
        const auto t2 = std::chrono::steady_clock::now();
        auto st = view.ok() ? DecodeLowrank(*view, out) : view.status();
        const auto t3 = std::chrono::steady_clock::now();
        if (!st.ok()) {
          std::fprintf(stderr, "decode failed: %s\n", std::string(st.message()).c_str());
          return 1;
        }
        enc.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        dec.push_back(std::chrono::duration<double, std::milli>(t3 - t2).count());
      }
      blob.resize(n);
      const double k_err = testing::RelativeError(raw, out, s.dtype, 0, s.Elements() / 2);
      const double v_err = testing::RelativeError(raw, out, s.dtype, s.Elements() / 2, s.Elements());
      // The last timed decode, before the row is printed: finite, within the error the
      // tests accept on this data (tests/kernels/lowrank_test.cc), and the same bytes as
      // a decode by the other SIMD variant.
      for (uint64_t i = 0; i < s.Elements(); ++i) {
        if (!std::isfinite(LoadAsFloat(out.data(), s.dtype, i))) {
          Fail(std::string(shape_name) + " r" + std::to_string(ratio) + ": decode not finite");
        }
      }
      if (!(k_err < 0.3 && v_err < 0.6)) {
        Fail(std::string(shape_name) + " r" + std::to_string(ratio) + ": K/V error " + std::to_string(k_err) + "/" +
             std::to_string(v_err) + " above 0.3/0.6");
      }
      {
        const bool avx2 = UseAvx2();
        SetAvx2EnabledForTesting(!avx2);
        if (UseAvx2() != avx2) {
          std::vector<std::byte> other(out.size());
          auto view = ParseContainer(blob);
          if (!view.ok() || !DecodeLowrank(*view, other).ok() || other != out) {
            Fail(std::string(shape_name) + " r" + std::to_string(ratio) +
                 ": the other SIMD variant decodes differently");
          }
        }
        SetAvx2EnabledForTesting(true);
      }
      const double achieved = double(s.Bytes()) / double(n);
      const double shared = SharedFraction(blob, s);
      std::printf("%-22s %-5s %5d %8.2f %10.1f %10.1f %8.4f %8.4f %7.2f\n", shape_name,
                  std::string(DTypeName(s.dtype)).c_str(), ratio, achieved, Median(enc), Median(dec),
                  k_err, v_err, shared);
      if (csv) {
        std::fprintf(csv, "\"%s\",%s,%d,%.3f,%.2f,%.2f,%.5f,%.5f,%.2f\n", shape_name,
                     std::string(DTypeName(s.dtype)).c_str(), ratio, achieved, Median(enc),
                     Median(dec), k_err, v_err, shared);
      }
    }
  }
  int rc = 0;
  if (quality) rc = QualityTable(KvShape{8, 256, 8, 128, DType::kBF16}, csv);
  if (csv) std::fclose(csv);
  return rc;
}

}  // namespace
}  // namespace adaptcache

int main(int argc, char** argv) { return adaptcache::Main(argc, argv); }
