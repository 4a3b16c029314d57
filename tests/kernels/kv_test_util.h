// Test helpers for the codec tests: KV tensors with realistic structure and container
// surgery (re-sealing a modified container so that only semantic checks can catch it).
#pragma once

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "common/crc32c.h"
#include "common/half.h"
#include "common/kv_shape.h"
#include "kernels/container.h"

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

inline float At(const std::vector<std::byte>& t, DType d, uint64_t i) {
  return LoadAsFloat(t.data(), d, i);
}

// Recomputes both CRCs of a container after a test modified it.
inline void Reseal(std::vector<std::byte>& blob) {
  ContainerHeader h;
  std::memcpy(&h, blob.data(), sizeof(h));
  h.payload_crc32c = Crc32c(blob.data() + sizeof(h), blob.size() - sizeof(h));
  std::memcpy(blob.data(), &h, sizeof(h));
  h.header_crc32c = Crc32c(blob.data(), offsetof(ContainerHeader, header_crc32c));
  std::memcpy(blob.data(), &h, sizeof(h));
}

inline ContainerHeader HeaderOf(const std::vector<std::byte>& blob) {
  ContainerHeader h;
  std::memcpy(&h, blob.data(), sizeof(h));
  return h;
}

inline void SetHeader(std::vector<std::byte>& blob, const ContainerHeader& h) {
  std::memcpy(blob.data(), &h, sizeof(h));
  Reseal(blob);
}

inline SectionEntry SectionAt(const std::vector<std::byte>& blob, size_t i) {
  SectionEntry e;
  std::memcpy(&e, blob.data() + sizeof(ContainerHeader) + i * sizeof(SectionEntry), sizeof(e));
  return e;
}

inline void SetSection(std::vector<std::byte>& blob, size_t i, const SectionEntry& e) {
  std::memcpy(blob.data() + sizeof(ContainerHeader) + i * sizeof(SectionEntry), &e, sizeof(e));
  Reseal(blob);
}

// Relative precision of a dtype (half an ulp at 1.0).
inline float HalfUlp(DType d) {
  switch (d) {
    case DType::kBF16:
      return 1.f / 256;
    case DType::kFP16:
      return 1.f / 2048;
    case DType::kFP32:
      return 1.f / (1 << 24);
  }
  return 0;
}

}  // namespace adaptcache::testing
