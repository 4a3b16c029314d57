// Test data shared by the tests and benchmarks: KV tensors of realistic structure and
// plain Gaussian bf16 tensors, and the error measure the tests compare them by. Every
// generator is deterministic for its seed. Header-only.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <span>
#include <vector>

#include "common/half.h"
#include "common/kv_shape.h"

namespace adaptcache::testing {

// [2][layers][tokens][heads][dim] in shape.dtype. Keys: per-channel offsets and scales with
// a few outlier channels (10-50x), smooth drift over tokens (as rotary keys have); values:
// per-token scale variation, roughly zero-mean. Deterministic for a seed.
inline std::vector<std::byte> MakeKv(const KvShape& s, uint32_t seed = 1) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n01(0.f, 1.f);
  std::uniform_real_distribution<float> u01(0.f, 1.f);
  const uint32_t w = s.kv_heads * s.head_dim;
  std::vector<float> chan_scale(w), chan_off(w), chan_freq(w);
  for (uint32_t c = 0; c < w; ++c) {
    chan_scale[c] = 0.5f + u01(rng);
    if (u01(rng) < 0.03f) chan_scale[c] *= 10.f + 40.f * u01(rng);  // outlier channel
    chan_off[c] = 0.3f * n01(rng);
    chan_freq[c] = 0.01f + 0.3f * u01(rng);
  }
  std::vector<std::byte> out(s.Bytes());
  uint64_t i = 0;
  for (int kv = 0; kv < 2; ++kv) {
    for (uint32_t l = 0; l < s.layers; ++l) {
      for (uint32_t t = 0; t < s.tokens; ++t) {
        const float tok_scale = 0.5f + u01(rng);
        for (uint32_t c = 0; c < w; ++c, ++i) {
          float v;
          if (kv == 0) {
            v = chan_off[c] + chan_scale[c] * (0.8f * std::sin(chan_freq[c] * t + c) +
                                               0.3f * n01(rng));
          } else {
            v = tok_scale * n01(rng);
          }
          StoreFromFloat(out.data(), s.dtype, i, v);
        }
      }
    }
  }
  return out;
}

// Per head, keys are a smooth low-rank process plus a per-head offset with a few
// outlier channels; values are higher-rank and centred (the structure the lowrank codec
// and the quality proxies look for). Deterministic for a seed.
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

// `elements` bf16 values drawn from N(0, 1). With `channels` > 0, element i is scaled by
// 0.5 + (i % channels) / (channels / 2), as KV channels differ in scale.
inline std::vector<std::byte> GaussianBf16(uint64_t elements, uint32_t seed, uint32_t channels = 0) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<std::byte> out(elements * 2);
  for (uint64_t i = 0; i < elements; ++i) {
    const float scale =
        channels == 0 ? 1.f : 0.5f + static_cast<float>(i % channels) / static_cast<float>(channels / 2);
    const uint16_t h = FloatToBf16(g(rng) * scale);
    std::memcpy(out.data() + 2 * i, &h, 2);
  }
  return out;
}

// ||a - b||_F / ||a||_F over the elements [begin, end) of two tensors in `dtype`.
inline double RelativeError(std::span<const std::byte> a, std::span<const std::byte> b, DType dtype,
                            uint64_t begin, uint64_t end) {
  double num = 0, den = 0;
  for (uint64_t i = begin; i < end; ++i) {
    const double x = LoadAsFloat(a.data(), dtype, i), y = LoadAsFloat(b.data(), dtype, i);
    num += (x - y) * (x - y);
    den += x * x;
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

}  // namespace adaptcache::testing
