// Synthetic KV tensors with realistic structure for codec and quality-proxy tests:
// per head, keys are a smooth low-rank process plus a per-head offset with a few
// outlier channels; values are higher-rank and centred. Deterministic for a seed.
#pragma once

#include <cmath>
#include <cstddef>
#include <random>
#include <vector>

#include "common/half.h"
#include "common/kv_shape.h"

namespace adaptcache::testing {

inline std::vector<std::byte> SyntheticKv(const KvShape& s, uint32_t seed) {
  std::vector<std::byte> out(s.Bytes());
  std::mt19937 rng(seed);
  std::normal_distribution<float> g;
  const uint32_t T = s.tokens, H = s.kv_heads, D = s.head_dim;
  std::vector<float> latent, mix, offset(D);
  for (uint32_t kv = 0; kv < 2; ++kv) {
    const uint32_t rank = kv == 0 ? 8 : 24;
    for (uint32_t l = 0; l < s.layers; ++l) {
      for (uint32_t h = 0; h < H; ++h) {
        mix.resize(size_t(rank) * D);
        for (uint32_t r = 0; r < rank; ++r)
          for (uint32_t d = 0; d < D; ++d)
            mix[size_t(r) * D + d] = g(rng) * 1.5f / (1.0f + 0.4f * float(r)) / std::sqrt(float(D) / 16);
        for (uint32_t d = 0; d < D; ++d) offset[d] = kv == 0 ? 0.3f * g(rng) : 0.f;
        if (kv == 0 && D >= 4) {  // outlier channels, as seen in real keys
          offset[(h * 7 + l) % D] = 9.f + float(h % 3);
          offset[(h * 13 + 5) % D] = -6.f;
        }
        latent.assign(rank, 0.f);
        for (uint32_t t = 0; t < T; ++t) {
          for (uint32_t r = 0; r < rank; ++r) latent[r] = 0.85f * latent[r] + 0.53f * g(rng);
          const uint64_t base = ((uint64_t(kv) * s.layers + l) * T + t) * H * D + uint64_t(h) * D;
          for (uint32_t d = 0; d < D; ++d) {
            float v = offset[d] + (kv == 0 ? 0.05f : 0.2f) * g(rng);
            for (uint32_t r = 0; r < rank; ++r) v += latent[r] * mix[size_t(r) * D + d];
            if (kv == 0 && d == (h * 7 + l) % D) v *= 1.0f + 0.2f * latent[0];
            StoreFromFloat(out.data(), s.dtype, base + d, v);
          }
        }
      }
    }
  }
  return out;
}

// ||a - b||_F / ||a||_F over the elements [begin, end) of two tensors in `dtype`.
inline double RelativeError(const std::vector<std::byte>& a, const std::vector<std::byte>& b,
                            DType dtype, uint64_t begin, uint64_t end) {
  double num = 0, den = 0;
  for (uint64_t i = begin; i < end; ++i) {
    const double x = LoadAsFloat(a.data(), dtype, i), y = LoadAsFloat(b.data(), dtype, i);
    num += (x - y) * (x - y);
    den += x * x;
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

}  // namespace adaptcache::testing
