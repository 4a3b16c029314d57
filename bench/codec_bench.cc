// Codec CPU benchmark: for every config of DefaultConfigSpace() (or --configs), encodes and
// decodes one entry on one thread and prints the median encode/decode throughput in GB/s of
// uncompressed KV, and the exact size ratio (raw bytes / container bytes).
//
//   codec_bench [--layers 32 --tokens 256 --heads 8 --dim 128 --dtype bf16] [--reps 7]
//               [--configs raw,fp8,...] [--baseline] [--csv out.csv]
//
// Default shape: one 256-token chunk of Llama-3.1-8B (32 MiB in bf16). --baseline disables
// the AVX2 variants. Data: keys with per-channel structure and outlier channels, values
// roughly Gaussian (tests/kernels/kv_test_util.h).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/codec.h"
#include "kernels/simd.h"
#include "tests/kernels/kv_test_util.h"

namespace {

using adaptcache::CodecConfig;

double MedianSeconds(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <typename F>
std::vector<double> Time(int reps, F&& f) {
  std::vector<double> out;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    out.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  adaptcache::KvShape shape{32, 256, 8, 128, adaptcache::DType::kBF16};
  int reps = 7;
  std::string configs, csv;
  bool baseline = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "missing value for %s\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--layers") shape.layers = std::stoul(next());
    else if (a == "--tokens") shape.tokens = std::stoul(next());
    else if (a == "--heads") shape.kv_heads = std::stoul(next());
    else if (a == "--dim") shape.head_dim = std::stoul(next());
    else if (a == "--reps") reps = std::max(1, std::stoi(next()));
    else if (a == "--configs") configs = next();
    else if (a == "--csv") csv = next();
    else if (a == "--baseline") baseline = true;
    else if (a == "--dtype") {
      auto d = adaptcache::DTypeFromName(next());
      if (!d.ok()) {
        std::fprintf(stderr, "%s\n", std::string(d.status().message()).c_str());
        return 2;
      }
      shape.dtype = *d;
    } else {
      std::fprintf(stderr, "unknown flag %s (see the header of bench/codec_bench.cc)\n", a.c_str());
      return 2;
    }
  }
  if (auto st = adaptcache::ValidateShape(shape); !st.ok()) {
    std::fprintf(stderr, "bad shape: %s\n", std::string(st.message()).c_str());
    return 2;
  }
  adaptcache::SetAvx2EnabledForTesting(!baseline);
  std::vector<CodecConfig> space;
  if (configs.empty()) {
    space = adaptcache::DefaultConfigSpace();
  } else {
    size_t p = 0;
    while (p <= configs.size()) {
      const size_t e = std::min(configs.find(',', p), configs.size());
      auto c = adaptcache::ParseCodecConfig(std::string_view(configs).substr(p, e - p));
      if (!c.ok()) {
        std::fprintf(stderr, "%s\n", std::string(c.status().message()).c_str());
        return 2;
      }
      space.push_back(*c);
      p = e + 1;
    }
  }
  const auto raw = adaptcache::testing::MakeKv(shape, 1);
  const double gb = shape.Bytes() / 1e9;
  std::printf("shape %s = %.1f MiB, %d reps, one thread, simd %s\n", shape.DebugString().c_str(),
              shape.Bytes() / 1048576.0, reps, adaptcache::UseAvx2() ? "avx2" : "baseline");
  std::printf("%-28s %10s %12s %12s %12s %12s\n", "config", "ratio", "bytes", "enc GB/s",
              "dec GB/s", "max|err|/amax");
  FILE* out = csv.empty() ? nullptr : std::fopen(csv.c_str(), "w");
  if (out) std::fprintf(out, "config,dtype,ratio,bytes,encode_gbps,decode_gbps,max_rel_err\n");
  std::vector<std::byte> blob, dec(shape.Bytes());
  float amax = 0;
  for (uint64_t i = 0; i < shape.Elements(); i += 7) {
    amax = std::max(amax, std::fabs(adaptcache::LoadAsFloat(raw.data(), shape.dtype, i)));
  }
  for (const auto& cfg : space) {
    blob.assign(adaptcache::MaxEncodedBytes(cfg, shape), std::byte{0});
    uint64_t n = 0;
    absl::Status st;
    auto enc = Time(reps, [&] {
      auto r = adaptcache::Encode(cfg, shape, raw, {}, blob);
      if (!r.ok()) st = r.status();
      else n = *r;
    });
    if (!st.ok()) {
      std::printf("%-28s %s\n", cfg.Name().c_str(), std::string(st.message()).c_str());
      continue;
    }
    const std::span<const std::byte> view(blob.data(), n);
    auto decs = Time(reps, [&] {
      if (auto s = adaptcache::Decode(view, dec); !s.ok()) st = s;
    });
    if (!st.ok()) {
      std::printf("%-28s decode failed: %s\n", cfg.Name().c_str(), std::string(st.message()).c_str());
      return 1;
    }
    float err = 0;
    for (uint64_t i = 0; i < shape.Elements(); i += 7) {
      err = std::max(err, std::fabs(adaptcache::LoadAsFloat(dec.data(), shape.dtype, i) -
                                    adaptcache::LoadAsFloat(raw.data(), shape.dtype, i)));
    }
    const double ratio = double(shape.Bytes()) / n;
    const double e = gb / MedianSeconds(enc), d = gb / MedianSeconds(decs);
    std::printf("%-28s %10.3f %12llu %12.2f %12.2f %12.4f\n", cfg.Name().c_str(), ratio,
                static_cast<unsigned long long>(n), e, d, err / amax);
    if (out) {
      std::fprintf(out, "%s,%s,%.4f,%llu,%.3f,%.3f,%.5f\n", cfg.Name().c_str(),
                   std::string(adaptcache::DTypeName(shape.dtype)).c_str(), ratio,
                   static_cast<unsigned long long>(n), e, d, err / amax);
    }
  }
  if (out) std::fclose(out);
  return 0;
}
