#include "kernels/quant.h"

#include <gtest/gtest.h>

#include <cmath>

#include "kernels/codec.h"
#include "kernels/hadamard.h"
#include "kernels/simd.h"
#include "tests/kernels/kv_test_util.h"

namespace adaptcache {
namespace {

using testing::At;

// An independent, deliberately plain decoder written from docs/format.md ("quant"). The
// library's decoder must match it bit for bit (as GPU decoders must). Also returns each
// element's quantization step s (for the error bounds).
struct RefResult {
  std::vector<std::byte> out;
  std::vector<float> step;  // 0 for exact (sink) elements
};

uint64_t Le(const std::byte* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= uint64_t(std::to_integer<uint8_t>(p[i])) << (8 * i);
  return v;
}

float ReadScale(const std::byte* base, uint64_t i, bool fp32) {
  if (fp32) {
    float f;
    std::memcpy(&f, base + 4 * i, 4);
    return f;
  }
  return Fp16ToFloat(static_cast<uint16_t>(Le(base + 2 * i, 2)));
}

RefResult RefDecode(const std::vector<std::byte>& blob) {
  const ContainerHeader h = testing::HeaderOf(blob);
  const KvShape s{h.layers, h.tokens, h.kv_heads, h.head_dim, static_cast<DType>(h.dtype)};
  const uint32_t kb = h.params[0], vb = h.params[1], G = h.params[2] | h.params[3] << 8;
  const uint32_t S = std::min<uint32_t>(h.params[4], s.tokens);
  const bool had = h.params[5] & 1, fp32 = h.params[5] & 2;
  const std::byte* sec[8];
  for (int i = 0; i < 7; ++i) sec[i + 1] = blob.data() + testing::SectionAt(blob, i).offset;
  const uint32_t L = s.layers, T = s.tokens, H = s.kv_heads, D = s.head_dim, W = H * D;
  const uint32_t Tq = T - S, blocks = (Tq + G - 1) / G, Ge = std::min(G, D);
  const uint32_t ng = (D + Ge - 1) / Ge;
  const uint64_t krow = (uint64_t(W) * kb + 7) / 8, vrow = (uint64_t(W) * vb + 7) / 8;
  const size_t es = DTypeSize(s.dtype);
  RefResult r{std::vector<std::byte>(s.Bytes()), std::vector<float>(s.Elements())};
  auto code = [](const std::byte* row, uint32_t j, uint32_t b) {
    uint32_t v = 0;
    for (uint32_t k = 0; k < b; ++k) {
      const uint64_t bit = uint64_t(j) * b + k;
      v |= ((std::to_integer<uint32_t>(row[bit / 8]) >> (bit % 8)) & 1u) << k;
    }
    return v;
  };
  std::vector<float> y(W);
  for (uint32_t kv = 0; kv < 2; ++kv) {
    for (uint32_t l = 0; l < L; ++l) {
      for (uint32_t t = 0; t < T; ++t) {
        const uint64_t base = ((uint64_t(kv) * L + l) * T + t) * W;
        if (t < S) {
          std::memcpy(r.out.data() + base * es,
                      sec[7] + ((uint64_t(kv) * L + l) * S + t) * W * es, W * es);
          continue;
        }
        const uint32_t tq = t - S;
        for (uint32_t c = 0; c < W; ++c) {
          float sc, mn;
          uint32_t q;
          if (kv == 0) {
            const uint64_t si = (uint64_t(l) * blocks + tq / G) * W + c;
            sc = ReadScale(sec[3], si, fp32);
            mn = ReadScale(sec[4], si, fp32);
            q = code(sec[1] + (uint64_t(l) * Tq + tq) * krow, c, kb);
          } else {
            const uint64_t si = ((uint64_t(l) * Tq + tq) * H + c / D) * ng + (c % D) / Ge;
            sc = ReadScale(sec[5], si, fp32);
            mn = ReadScale(sec[6], si, fp32);
            q = code(sec[2] + (uint64_t(l) * Tq + tq) * vrow, c, vb);
          }
          volatile float prod = float(q) * sc;  // separately rounded multiply and add
          y[c] = prod + mn;
          r.step[base + c] = sc;
        }
        if (kv == 1 && had) {
          const float scale = HadamardScale(D);
          for (uint32_t hh = 0; hh < H; ++hh) {
            float* x = y.data() + hh * D;
            for (uint32_t len = 1; len < D; len *= 2) {
              for (uint32_t i = 0; i < D; ++i) {
                if (i & len) continue;
                const float a = x[i], b = x[i + len];
                x[i] = a + b;
                x[i + len] = a - b;
              }
            }
            for (uint32_t i = 0; i < D; ++i) x[i] *= scale;
          }
        }
        for (uint32_t c = 0; c < W; ++c) StoreFromFloat(r.out.data(), s.dtype, base + c, y[c]);
      }
    }
  }
  return r;
}

CodecConfig Quant(int k, int v, int g, int sinks = 0, bool h = false) {
  CodecConfig c;
  c.family = CodecId::kQuant;
  c.k_bits = k;
  c.v_bits = v;
  c.group = g;
  c.sink_tokens = sinks;
  c.hadamard = h;
  return c;
}

// Round trip with bit-exact reference match and the documented error bound.
void CheckRoundTrip(const CodecConfig& cfg, const KvShape& s, uint32_t seed = 5) {
  SCOPED_TRACE(cfg.Name() + " " + s.DebugString());
  const auto raw = testing::MakeKv(s, seed);
  auto blob = EncodeToVector(cfg, s, raw);
  ASSERT_TRUE(blob.ok()) << blob.status();
  ASSERT_LE(blob->size(), MaxEncodedBytes(cfg, s));
  std::vector<std::byte> out(s.Bytes());
  ASSERT_TRUE(Decode(*blob, out).ok());
  const RefResult ref = RefDecode(*blob);
  ASSERT_TRUE(ref.out == out) << "decoder differs from the format spec reference";
  const uint32_t W = s.kv_heads * s.head_dim, S = std::min<uint32_t>(cfg.sink_tokens, s.tokens);
  const float rel = 2 * testing::HalfUlp(s.dtype);
  for (uint64_t i = 0; i < s.Elements(); ++i) {
    const uint64_t row = i / W, t = row % s.tokens;
    const bool is_v = row >= uint64_t(s.layers) * s.tokens;
    const float x = At(raw, s.dtype, i), y = At(out, s.dtype, i);
    if (t < S) {
      ASSERT_EQ(x, y) << "sink token not exact at " << i;
      continue;
    }
    if (is_v && cfg.hadamard) continue;  // checked per head below
    const float bound = 0.5f * ref.step[i] * 1.0001f + rel * std::max(std::fabs(x), std::fabs(y)) + 1e-6f * ref.step[i] + 1e-30f;
    ASSERT_LE(std::fabs(y - x), bound) << "element " << i << " step " << ref.step[i];
  }
  if (cfg.hadamard) {  // orthonormal rotation: per-head L2 error <= L2 of the half steps
    const uint64_t vbase = uint64_t(s.layers) * s.tokens * W;
    for (uint64_t hv = vbase; hv < s.Elements(); hv += s.head_dim) {
      const uint64_t t = (hv / W) % s.tokens;
      if (t < S) continue;
      double err = 0, budget = 0, mag = 0;
      for (uint32_t j = 0; j < s.head_dim; ++j) {
        const double d = At(out, s.dtype, hv + j) - At(raw, s.dtype, hv + j);
        err += d * d;
        budget += 0.25 * ref.step[hv + j] * ref.step[hv + j];
        mag += std::pow(At(raw, s.dtype, hv + j), 2);
      }
      ASSERT_LE(std::sqrt(err), 1.001 * std::sqrt(budget) + rel * std::sqrt(mag) + 1e-6);
    }
  }
}

TEST(QuantTest, FullGridRoundTripsBf16) {
  const KvShape s{2, 77, 2, 64, DType::kBF16};  // 77 tokens: partial blocks for every G
  for (int k : {2, 3, 4, 8}) {
    for (int v : {2, 3, 4, 8}) {
      for (int g : {32, 64, 128}) {
        CheckRoundTrip(Quant(k, v, g), s);
        if (v <= 3) CheckRoundTrip(Quant(k, v, g, 4, true), s);
      }
    }
  }
}

TEST(QuantTest, RoundTripsFp16AndFp32) {
  for (DType d : {DType::kFP16, DType::kFP32}) {
    const KvShape s{2, 70, 2, 32, d};
    CheckRoundTrip(Quant(4, 2, 32), s);
    CheckRoundTrip(Quant(2, 2, 64, 8, true), s);
    CheckRoundTrip(Quant(8, 8, 128, 16), s);
    CheckRoundTrip(Quant(3, 3, 32), s);
  }
}

TEST(QuantTest, HeadDimSmallerThanGroupOrNotAMultiple) {
  CheckRoundTrip(Quant(4, 4, 64), KvShape{1, 40, 3, 16, DType::kBF16});   // Ge = 16
  CheckRoundTrip(Quant(4, 3, 32), KvShape{1, 40, 2, 80, DType::kBF16});   // 32+32+16
  CheckRoundTrip(Quant(2, 2, 128), KvShape{1, 5, 1, 1, DType::kFP16});    // tiny
}

TEST(QuantTest, AllSinkTokensAndExactBlocks) {
  CheckRoundTrip(Quant(2, 2, 32, 32), KvShape{2, 20, 2, 16, DType::kBF16});  // tokens < S
  CheckRoundTrip(Quant(4, 4, 32, 0), KvShape{1, 64, 1, 32, DType::kBF16});   // 2 full blocks
}

TEST(QuantTest, LargeValuesUseFp32Scales) {
  const KvShape s{1, 40, 1, 32, DType::kFP32};
  auto raw = testing::MakeKv(s, 3);
  float big = 30000.f;
  std::memcpy(raw.data() + 4 * 100, &big, 4);
  auto blob = *EncodeToVector(Quant(8, 8, 32), s, raw);
  EXPECT_EQ(testing::HeaderOf(blob).params[5] & 2, 2);
  std::vector<std::byte> out(s.Bytes());
  ASSERT_TRUE(Decode(blob, out).ok());
  EXPECT_EQ(RefDecode(blob).out, out);
  EXPECT_NEAR(At(out, s.dtype, 100), 30000.f, 30000.f / 255);
  auto small = *EncodeToVector(Quant(8, 8, 32), s, testing::MakeKv(s, 3));
  EXPECT_EQ(testing::HeaderOf(small).params[5] & 2, 0);
  EXPECT_LT(small.size(), blob.size());
}

// Finite values whose group range or Hadamard butterflies overflow fp32 (found by
// fuzz_rpc) are refused at encode, never stored as an undecodable container.
TEST(QuantTest, HugeFiniteValuesAreRefused) {
  for (const bool hadamard : {false, true}) {
    for (const DType dt : {DType::kBF16, DType::kFP32}) {
      const KvShape s{1, 40, 1, 32, dt};
      auto raw = testing::MakeKv(s, 3);
      const float big = 0x1p127f;
      const uint64_t v0 = s.Elements() / 2;  // the first V element
      StoreFromFloat(raw.data(), dt, v0, big);
      StoreFromFloat(raw.data(), dt, v0 + 1, -big);
      CodecConfig c = Quant(4, hadamard ? 2 : 4, 32);
      c.hadamard = hadamard;
      auto blob = EncodeToVector(c, s, raw);
      EXPECT_TRUE(absl::IsInvalidArgument(blob.status())) << blob.status();
      // Just under the limit still encodes and decodes.
      StoreFromFloat(raw.data(), dt, v0, 0x1p99f);
      StoreFromFloat(raw.data(), dt, v0 + 1, -0x1p99f);
      auto ok = EncodeToVector(c, s, raw);
      ASSERT_TRUE(ok.ok()) << ok.status();
      std::vector<std::byte> out(s.Bytes());
      EXPECT_TRUE(Decode(*ok, out).ok());
    }
  }
}

TEST(QuantTest, ConstantAndZeroGroupsAreExact) {
  const KvShape s{1, 33, 1, 32, DType::kBF16};
  std::vector<std::byte> raw(s.Bytes());
  for (uint64_t i = 0; i < s.Elements(); ++i) {
    StoreFromFloat(raw.data(), s.dtype, i, i < s.Elements() / 2 ? 0.f : 1.5f);
  }
  auto blob = *EncodeToVector(Quant(2, 2, 32), s, raw);
  std::vector<std::byte> out(s.Bytes());
  ASSERT_TRUE(Decode(blob, out).ok());
  EXPECT_EQ(out, raw);
}

TEST(QuantTest, SimdVariantsProduceIdenticalBytes) {
  const KvShape s{2, 50, 2, 64, DType::kFP16};
  const auto raw = testing::MakeKv(s, 8);
  for (const auto& cfg : {Quant(4, 2, 32), Quant(3, 3, 64, 4, true)}) {
    auto a = *EncodeToVector(cfg, s, raw);
    SetAvx2EnabledForTesting(false);
    auto b = *EncodeToVector(cfg, s, raw);
    std::vector<std::byte> ob(s.Bytes()), oa(s.Bytes());
    ASSERT_TRUE(Decode(a, ob).ok());
    SetAvx2EnabledForTesting(true);
    ASSERT_TRUE(Decode(a, oa).ok());
    EXPECT_EQ(a, b);
    EXPECT_EQ(oa, ob);
  }
}

TEST(QuantTest, HadamardNeedsPowerOfTwoHeadDim) {
  const KvShape s{1, 8, 1, 80, DType::kBF16};
  const auto raw = testing::MakeKv(s);
  auto r = EncodeToVector(Quant(2, 2, 32, 0, true), s, raw);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(CheckApplicable(Quant(2, 2, 32, 0, true), s).ok());
}

TEST(QuantTest, DecoderRejectsInconsistentButSealedContainers) {
  const KvShape s{2, 40, 2, 32, DType::kBF16};
  const auto raw = testing::MakeKv(s);
  const auto blob = *EncodeToVector(Quant(4, 2, 32, 4), s, raw);
  std::vector<std::byte> out(s.Bytes());
  auto expect_reject = [&](std::vector<std::byte> b, const char* what) {
    const auto before = out;
    EXPECT_EQ(Decode(b, out).code(), absl::StatusCode::kDataLoss) << what;
    EXPECT_EQ(out, before) << what << ": decoder wrote before validating";
  };
  auto with_params = [&](int i, uint8_t v) {
    auto b = blob;
    auto h = testing::HeaderOf(b);
    h.params[i] = v;
    testing::SetHeader(b, h);
    return b;
  };
  expect_reject(with_params(0, 5), "k bits off grid");
  expect_reject(with_params(1, 3), "v bits changed (sizes no longer match)");
  expect_reject(with_params(2, 64), "group changed");
  expect_reject(with_params(4, 8), "sinks changed");
  expect_reject(with_params(5, 4), "unknown flag");
  expect_reject(with_params(5, 2), "scale format flipped");
  expect_reject(with_params(9, 1), "reserved byte");
  {
    auto b = blob;
    auto e = testing::SectionAt(b, 1);
    e.length -= 8;
    testing::SetSection(b, 1, e);
    expect_reject(b, "short V codes section");
  }
  {
    auto b = blob;
    auto e = testing::SectionAt(b, 6);
    e.id = 9;
    testing::SetSection(b, 6, e);
    expect_reject(b, "missing sinks section");
  }
  {
    auto b = blob;
    const uint16_t inf = 0x7c00;
    std::memcpy(b.data() + testing::SectionAt(b, 2).offset + 6, &inf, 2);
    testing::Reseal(b);
    expect_reject(b, "infinite K scale");
  }
  {
    auto b = blob;
    const uint16_t neg = 0xbc00;
    std::memcpy(b.data() + testing::SectionAt(b, 4).offset, &neg, 2);
    testing::Reseal(b);
    expect_reject(b, "negative V scale");
  }
}

}  // namespace
}  // namespace adaptcache
