#include "bench/eval/profile.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/half.h"
#include "kernels/quality_proxy.h"

namespace adaptcache::eval {
namespace {

class Rng {
 public:
  explicit Rng(uint64_t s) : s_(s * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t Next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double Uniform() { return (Next() >> 11) * 0x1.0p-53; }
  double Normal() {
    const double u = std::max(Uniform(), 1e-300), v = Uniform();
    return std::sqrt(-2 * std::log(u)) * std::cos(2 * M_PI * v);
  }

 private:
  uint64_t s_;
};

}  // namespace

std::vector<std::byte> SyntheticKv(const KvShape& s, uint32_t index, uint64_t seed) {
  Rng rng(seed * 1000003 + index);
  // Difficulty knobs: structure rank, unstructured noise, key outlier strength.
  const uint32_t rank = 4 + (index * 7) % 29;                 // 4..32
  const double noise = 0.05 + 0.45 * ((index * 5) % 8) / 7.0;  // 0.05..0.5
  const double outlier = 2.0 + 6.0 * ((index * 3) % 5) / 4.0;  // 2..8
  std::vector<std::byte> out(s.Bytes());
  const uint32_t d = s.head_dim, T = s.tokens, H = s.kv_heads;
  std::vector<float> basis(rank * d), coef(T * rank), chan_scale(d), tok_scale(T);
  for (uint32_t kv = 0; kv < 2; ++kv) {
    for (uint32_t l = 0; l < s.layers; ++l) {
      for (uint32_t h = 0; h < H; ++h) {
        for (float& b : basis) b = static_cast<float>(rng.Normal() / std::sqrt(rank));
        // Slowly varying token coefficients (neighbouring tokens are similar).
        for (uint32_t r = 0; r < rank; ++r) {
          double x = rng.Normal();
          for (uint32_t t = 0; t < T; ++t) {
            x = 0.9 * x + 0.436 * rng.Normal();
            coef[t * rank + r] = static_cast<float>(x);
          }
        }
        for (uint32_t c = 0; c < d; ++c) {
          chan_scale[c] = kv == 0 && rng.Uniform() < 0.04 ? static_cast<float>(outlier) : 1.f;
        }
        for (uint32_t t = 0; t < T; ++t) {
          // Attention sink at token 0, a few heavy hitters.
          tok_scale[t] = t == 0 ? 4.f : (rng.Uniform() < 0.05 ? 2.5f : 1.f);
        }
        for (uint32_t t = 0; t < T; ++t) {
          for (uint32_t c = 0; c < d; ++c) {
            double v = 0;
            for (uint32_t r = 0; r < rank; ++r) v += coef[t * rank + r] * basis[r * d + c];
            v = (v + noise * rng.Normal()) * chan_scale[c] * (kv == 1 ? tok_scale[t] : 1.f);
            const uint64_t i = ((((uint64_t{kv} * s.layers + l) * T + t) * H + h) * d) + c;
            StoreFromFloat(out.data(), s.dtype, i, static_cast<float>(v));
          }
        }
      }
    }
  }
  return out;
}

absl::StatusOr<ProfileSet> BuildProfiles(const ProfileOptions& o, const policy::QualityModel& quality) {
  if (auto st = ValidateShape(o.shape); !st.ok()) return st;
  if (o.templates == 0 || o.templates > 256) return absl::InvalidArgumentError("templates must be 1..256");
  ProfileSet set;
  set.shape = o.shape;
  set.templates = o.templates;
  const std::vector<CodecConfig> cfgs = o.configs.empty() ? DefaultConfigSpace() : o.configs;
  for (const CodecConfig& c : cfgs) {
    if (!CheckApplicable(c, o.shape).ok()) continue;
    ConfigProfile p;
    p.name = c.Name();
    p.config = c;
    p.ratio = 0;
    set.configs.push_back(std::move(p));
  }
  std::vector<std::vector<double>> decode_s(set.configs.size());
  std::vector<std::byte> decoded(o.shape.Bytes());
  for (uint32_t t = 0; t < o.templates; ++t) {
    const std::vector<std::byte> raw = SyntheticKv(o.shape, t, o.seed);
    auto ref = QualityReference::Build(o.shape, raw, {});
    if (!ref.ok()) return ref.status();
    for (size_t ci = 0; ci < set.configs.size(); ++ci) {
      ConfigProfile& p = set.configs[ci];
      auto enc = EncodeToVector(p.config, o.shape, raw);
      if (!enc.ok()) return absl::InternalError(absl::StrCat(p.name, ": ", std::string(enc.status().message())));
      p.ratio += static_cast<double>(enc->size()) / raw.size() / o.templates;
      for (uint32_t r = 0; r < o.decode_reps; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        if (auto st = Decode(*enc, decoded); !st.ok()) return st;
        decode_s[ci].push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      double proxy = 0;
      if (p.config.family != CodecId::kRaw) {
        auto rep = ref->EvaluateConfig(p.config);
        if (!rep.ok()) return rep.status();
        proxy = rep->proxy;
      }
      p.proxy.push_back(proxy);
      p.qloss.push_back(p.config.family == CodecId::kRaw ? 0.0
                                                          : quality.ExpectedLoss(p.name, p.config.family, proxy));
    }
  }
  for (size_t ci = 0; ci < set.configs.size(); ++ci) {
    auto& v = decode_s[ci];
    std::sort(v.begin(), v.end());
    set.configs[ci].cpu_decode_GBps = o.shape.Bytes() / std::max(v[v.size() / 2], 1e-9) / 1e9;
  }
  return set;
}

}  // namespace adaptcache::eval
