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
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "kernels/codec.h"
#include "kernels/drop.h"
#include "kernels/hadamard.h"
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

// ---- output checks (outside the timed region) ----

// Half the step of one min-max quant group (kernels/quant.h): s = (max - m) / (2^b - 1)
// with m = min rounded down and s rounded up to fp16 (fp32 scales are tighter).
float QuantHalfStep(float mn, float mx, int bits) {
  const float levels = static_cast<float>((1 << bits) - 1);
  const float m_ulp = std::max(std::fabs(mn) * 0x1p-10f, 0x1p-24f);
  return 0.5f * (((mx - mn) + m_ulp) / levels * (1 + 0x1p-10f) + 0x1p-24f);
}

// Compares a decode with the original against each family's documented error bound
// (kernels/quant.h, fp8.h, drop.h); returns the first violation, empty when within it.
class DecodeChecker {
 public:
  DecodeChecker(const CodecConfig& cfg, const adaptcache::KvShape& s, const std::vector<std::byte>& raw,
                const std::vector<std::byte>& dec)
      : cfg_(cfg), s_(s), raw_(raw), dec_(dec), W_(s.kv_heads * s.head_dim),
        hu2_(2 * adaptcache::testing::HalfUlp(s.dtype)) {}

  std::string Run(std::span<const std::byte> container) {
    using adaptcache::CodecId;
    if (cfg_.family == CodecId::kRaw) {
      const bool same = std::memcmp(raw_.data(), dec_.data(), raw_.size()) == 0;
      return same ? "" : "raw decode differs from the input";
    }
    for (uint64_t i = 0; i < s_.Elements(); ++i) {
      if (!std::isfinite(Y(i))) return absl::StrFormat("element %d decodes to %g", i, Y(i));
    }
    auto kept = adaptcache::DecodeKeptTokens(container);
    if (!kept.ok()) return "kept tokens: " + std::string(kept.status().message());
    kept_ = std::move(*kept);
    if (cfg_.family == CodecId::kDrop) {
      const uint32_t want = adaptcache::DropKeepCount(s_.tokens, cfg_.keep_permille, adaptcache::kDropSinks,
                                                      adaptcache::kDropWindow);
      if (kept_.size() != want) return absl::StrFormat("kept %d tokens, expected %d", kept_.size(), want);
      std::vector<bool> is_kept(s_.tokens, false);
      for (uint32_t t : kept_) is_kept[t] = true;
      for (uint64_t i = 0; i < s_.Elements(); ++i) {
        if (!is_kept[(i / W_) % s_.tokens] && Y(i) != 0.f) {
          return absl::StrFormat("dropped element %d is %g, not 0", i, Y(i));
        }
      }
    } else if (kept_.size() != s_.tokens) {
      return absl::StrFormat("%d kept tokens reported for a non-drop codec", kept_.size());
    }
    switch (cfg_.family) {
      case CodecId::kFp8: return Fp8();
      case CodecId::kQuant: return Quant();
      case CodecId::kDrop: return cfg_.k_bits != 0 ? Quant() : KeptExact();
      case CodecId::kLowrank: return Lowrank();
      default: return "unexpected codec family";
    }
  }

 private:
  uint64_t Index(int kv, uint32_t l, uint32_t t, uint64_t c) const {
    return ((uint64_t(kv) * s_.layers + l) * s_.tokens + t) * W_ + c;
  }
  float X(uint64_t i) const { return adaptcache::LoadAsFloat(raw_.data(), s_.dtype, i); }
  float Y(uint64_t i) const { return adaptcache::LoadAsFloat(dec_.data(), s_.dtype, i); }
  std::string Over(uint64_t i, float bound) const {
    return absl::StrFormat("element %d: |%g - %g| > bound %g", i, Y(i), X(i), bound);
  }

  // fp8: per-row scale amax/448; E4M3 relative error <= 2^-4, absolute step 2^-10 * scale
  // below the normal range (the bound of tests/kernels/fp8_test.cc).
  std::string Fp8() const {
    for (uint64_t r = 0; r < s_.Elements() / W_; ++r) {
      float amax = 0;
      for (uint64_t c = 0; c < W_; ++c) amax = std::max(amax, std::fabs(X(r * W_ + c)));
      const float scale = amax / 448;
      for (uint64_t c = 0; c < W_; ++c) {
        const uint64_t i = r * W_ + c;
        const float x = X(i);
        const float bound =
            (std::max(std::fabs(x) / 16, scale * std::ldexp(1.f, -10)) + std::fabs(x) * hu2_) * 1.001f + 1e-30f;
        if (std::fabs(Y(i) - x) > bound) return Over(i, bound);
      }
    }
    return "";
  }

  // Plain drop: the kept tokens are stored raw.
  std::string KeptExact() const {
    for (int kv = 0; kv < 2; ++kv)
      for (uint32_t l = 0; l < s_.layers; ++l)
        for (uint32_t t : kept_)
          for (uint64_t c = 0; c < W_; ++c) {
            const uint64_t i = Index(kv, l, t, c);
            if (X(i) != Y(i)) return Over(i, 0);
          }
    return "";
  }

  std::string Elem(uint64_t i, float half_step, float mn, float mx) const {
    const float x = X(i), y = Y(i);
    const float bound = half_step * 1.001f + hu2_ * std::max(std::fabs(x), std::fabs(y)) +
                        0x1p-22f * (std::fabs(mn) + std::fabs(mx)) + 1e-30f;
    return std::fabs(y - x) > bound ? Over(i, bound) : "";
  }

  // quant over the kept tokens (all of them unless drop): sinks exact; K per channel over
  // blocks of G tokens, V per token over groups of min(G, head_dim) inside each head,
  // each within half a step.
  std::string Quant() const {
    const uint32_t n = static_cast<uint32_t>(kept_.size()), S = std::min<uint32_t>(cfg_.sink_tokens, n);
    const uint32_t G = cfg_.group, D = s_.head_dim, Ge = std::min(G, D);
    std::vector<float> mn(W_), mx(W_), x(D), y(D);
    for (uint32_t l = 0; l < s_.layers; ++l) {
      for (int kv = 0; kv < 2; ++kv)
        for (uint32_t j = 0; j < S; ++j)
          for (uint64_t c = 0; c < W_; ++c) {
            const uint64_t i = Index(kv, l, kept_[j], c);
            if (X(i) != Y(i)) return "sink " + Over(i, 0);
          }
      for (uint32_t j0 = S; j0 < n; j0 += G) {
        const uint32_t j1 = std::min(j0 + G, n);
        for (uint64_t c = 0; c < W_; ++c) mn[c] = mx[c] = X(Index(0, l, kept_[j0], c));
        for (uint32_t j = j0; j < j1; ++j)
          for (uint64_t c = 0; c < W_; ++c) {
            const float v = X(Index(0, l, kept_[j], c));
            mn[c] = std::min(mn[c], v);
            mx[c] = std::max(mx[c], v);
          }
        for (uint32_t j = j0; j < j1; ++j)
          for (uint64_t c = 0; c < W_; ++c) {
            auto e = Elem(Index(0, l, kept_[j], c), QuantHalfStep(mn[c], mx[c], cfg_.k_bits), mn[c], mx[c]);
            if (!e.empty()) return "K " + e;
          }
      }
      for (uint32_t j = S; j < n; ++j) {
        for (uint32_t h = 0; h < s_.kv_heads; ++h) {
          const uint64_t base = Index(1, l, kept_[j], uint64_t(h) * D);
          double mag = 0;
          for (uint32_t d = 0; d < D; ++d) {
            x[d] = X(base + d);
            y[d] = Y(base + d);
            mag += double(x[d]) * x[d];
          }
          // Hadamard: compare in the rotated domain, where the groups were quantized; the
          // output rounding, rotated, stays within its L2 norm.
          if (cfg_.hadamard) {
            adaptcache::HadamardInPlace(x.data(), D, 1);
            adaptcache::HadamardInPlace(y.data(), D, 1);
          }
          const float round = cfg_.hadamard ? static_cast<float>((hu2_ + 0x1p-18) * std::sqrt(mag)) : 0.f;
          for (uint32_t g0 = 0; g0 < D; g0 += Ge) {
            const uint32_t g1 = std::min(g0 + Ge, D);
            float lo = x[g0], hi = x[g0];
            for (uint32_t d = g0; d < g1; ++d) lo = std::min(lo, x[d]), hi = std::max(hi, x[d]);
            const float hs = QuantHalfStep(lo, hi, cfg_.v_bits);
            for (uint32_t d = g0; d < g1; ++d) {
              const float bound = hs * 1.001f + hu2_ * std::max(std::fabs(x[d]), std::fabs(y[d])) + round +
                                  0x1p-22f * (std::fabs(lo) + std::fabs(hi)) + 1e-30f;
              if (std::fabs(y[d] - x[d]) > bound) {
                return absl::StrFormat("V%s element %d: |%g - %g| > bound %g", cfg_.hadamard ? " (rotated)" : "",
                                       base + d, y[d], x[d], bound);
              }
            }
          }
        }
      }
    }
    return "";
  }

  // lowrank has no closed-form bound: K and V must each beat an all-zero output.
  std::string Lowrank() const {
    const uint64_t half = s_.Elements() / 2;
    for (int kv = 0; kv < 2; ++kv) {
      const double e = adaptcache::testing::RelativeError(raw_, dec_, s_.dtype, kv * half, (kv + 1) * half);
      if (!(e < 1.0)) return absl::StrFormat("%s relative error %g >= 1", kv ? "V" : "K", e);
    }
    return "";
  }

  const CodecConfig& cfg_;
  const adaptcache::KvShape& s_;
  const std::vector<std::byte>& raw_;
  const std::vector<std::byte>& dec_;
  const uint64_t W_;
  const float hu2_;
  std::vector<uint32_t> kept_;
};

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
  std::vector<std::byte> blob, dec(shape.Bytes()), other;
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
    // Before the row is printed: the last timed decode against the input, then a decode
    // by the other SIMD variant, which must give identical bytes (kernels/simd.h).
    if (auto why = DecodeChecker(cfg, shape, raw, dec).Run(view); !why.empty()) {
      std::fprintf(stderr, "codec_bench: FAILED: %s: %s\n", cfg.Name().c_str(), why.c_str());
      return 1;
    }
    const bool avx2 = adaptcache::UseAvx2();
    adaptcache::SetAvx2EnabledForTesting(!avx2);
    if (adaptcache::UseAvx2() != avx2) {
      other.assign(dec.size(), std::byte{0});
      if (auto s = adaptcache::Decode(view, other); !s.ok() || other != dec) {
        std::fprintf(stderr, "codec_bench: FAILED: %s: the %s decoder %s\n", cfg.Name().c_str(),
                     avx2 ? "baseline" : "avx2", s.ok() ? "gives different bytes" : std::string(s.message()).c_str());
        return 1;
      }
    }
    adaptcache::SetAvx2EnabledForTesting(!baseline);
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
