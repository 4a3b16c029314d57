// GPU decode vs the CPU reference Decode(), for every config of DefaultConfigSpace() and
// the three dtypes, on fresh random data each run (seed printed; AC_TEST_SEED pins it).
// Outputs are poisoned (0xff bytes, a NaN in every dtype) so unwritten elements fail.
// Raw, fp8, quant and drop must be bit-exact; Hadamard and lowrank are designed to be
// bit-exact too (same operation order) and are asserted within 1 ulp of the output
// dtype, with the exact-match count reported. Skips cleanly without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/codec.h"
#include "kernels/cuda/decode.h"
#include "tests/kernels/cuda_test_util.h"
#include "tests/kernels/kv_test_util.h"

namespace adaptcache {
namespace {

using testing::CompareElems;
using testing::DevBuf;

bool MustBeExact(const CodecConfig& c) {
  return c.family != CodecId::kLowrank && !c.hadamard;
}

struct Encoded {
  CodecConfig cfg;
  KvShape shape;
  std::vector<std::byte> container;
  std::vector<std::byte> reference;  // CPU Decode()
};

Encoded EncodeCase(const CodecConfig& cfg, const KvShape& shape, uint32_t seed) {
  Encoded e{cfg, shape, {}, {}};
  const auto raw = testing::MakeKv(shape, seed);
  auto c = EncodeToVector(cfg, shape, raw);
  EXPECT_TRUE(c.ok()) << cfg.Name() << ": " << c.status();
  if (!c.ok()) return e;
  e.container = std::move(*c);
  e.reference.resize(shape.Bytes());
  const auto st = Decode(e.container, e.reference);
  EXPECT_TRUE(st.ok()) << st;
  return e;
}

void ExpectMatches(const Encoded& e, const std::byte* got, DType dtype, uint64_t n,
                   const std::byte* want, const char* what) {
  const auto cmp = CompareElems(got, want, dtype, n);
  SCOPED_TRACE(::testing::Message() << e.cfg.Name() << " " << DTypeName(dtype) << " "
                                    << e.shape.DebugString() << " " << what);
  if (MustBeExact(e.cfg)) {
    EXPECT_EQ(cmp.mismatches, 0u) << "first mismatch at element " << cmp.first_bad;
  } else {
    EXPECT_LE(cmp.max_ulps, 1) << "first mismatch at element " << cmp.first_bad;
    if (cmp.mismatches != 0) {
      std::printf("[ note ] %s %s: %llu of %llu elements differ by 1 ulp\n", e.cfg.Name().c_str(),
                  std::string(DTypeName(dtype)).c_str(),
                  static_cast<unsigned long long>(cmp.mismatches),
                  static_cast<unsigned long long>(n));
    }
  }
}

// Decodes `e` on the GPU (contiguous, output in the container's dtype) and compares.
void CheckContiguous(const Encoded& e) {
  DevBuf dc(e.container.size());
  dc.Upload(e.container.data(), e.container.size());
  DevBuf out(e.shape.Bytes());
  out.Poison();
  cuda::DeviceContainer in{e.container, dc.get()};
  cuda::ContiguousOut o{out.get(), e.shape.dtype};
  ASSERT_TRUE(cuda::DecodeContiguous({&in, 1}, {&o, 1}, nullptr).ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const auto got = out.Download();
  ExpectMatches(e, got.data(), e.shape.dtype, e.shape.Elements(), e.reference.data(), "contiguous");
}

class CudaDecodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AC_SKIP_WITHOUT_GPU();
    seed_ = testing::RunSeed();
    std::printf("[ seed ] AC_TEST_SEED=%u\n", seed_);
  }
  uint32_t seed_ = 0;
};

// Every config of the default space on a Llama-like head layout (W = 4 x 128), with
// token counts that leave partial quant blocks, in all three dtypes.
TEST_F(CudaDecodeTest, EveryConfigEveryDtypeContiguous) {
  for (DType dt : {DType::kBF16, DType::kFP16, DType::kFP32}) {
    const KvShape shape{2, 83, 4, 128, dt};
    for (const CodecConfig& cfg : DefaultConfigSpace()) {
      if (!CheckApplicable(cfg, shape).ok()) continue;
      const Encoded e = EncodeCase(cfg, shape, seed_ ^ (static_cast<uint32_t>(dt) << 20));
      ASSERT_FALSE(e.container.empty());
      CheckContiguous(e);
    }
  }
}

// Odd geometries: head_dim not a multiple of 8 (per-element group lookup, partial
// chunks), tiny heads, short chunks (fewer tokens than sinks or groups), and head_dim 512
// (the shared-memory Hadamard kernel).
TEST_F(CudaDecodeTest, OddShapes) {
  const std::vector<KvShape> shapes = {
      {3, 37, 3, 20, DType::kBF16}, {1, 5, 2, 64, DType::kFP16},  {2, 50, 8, 4, DType::kBF16},
      {1, 70, 2, 512, DType::kBF16}, {2, 129, 1, 96, DType::kFP32}, {1, 1, 1, 1, DType::kFP16},
  };
  const char* names[] = {"raw", "fp8", "quant-k4v4-g32", "quant-k3v3-g64-h", "quant-k2v2-g32-s4-h",
                         "quant-k8v8-g128", "quant-k4v2-g64-h", "drop-33", "drop-50+quant-k4v2-g64",
                         "drop-25+quant-k2v2-g32-h", "lowrank-r8", "lowrank-r16"};
  for (const KvShape& shape : shapes) {
    for (const char* name : names) {
      auto cfg = ParseCodecConfig(name);
      ASSERT_TRUE(cfg.ok());
      if (!CheckApplicable(*cfg, shape).ok()) continue;
      const Encoded e = EncodeCase(*cfg, shape, seed_ + shape.head_dim);
      ASSERT_FALSE(e.container.empty());
      CheckContiguous(e);
    }
  }
}

// Paged layout: a random slot mapping over a cache larger than the entries (some tokens
// mapped to -1); every slot not written must keep its poison.
TEST_F(CudaDecodeTest, PagedRandomSlots) {
  std::mt19937 rng(seed_);
  for (DType dt : {DType::kBF16, DType::kFP16}) {
    const KvShape shape{3, 70, 2, 64, dt};
    const uint32_t block_size = 16, num_blocks = 24;  // 384 slots
    const uint64_t W = uint64_t{shape.kv_heads} * shape.head_dim;
    const uint64_t layer_elems = uint64_t{num_blocks} * block_size * W;
    const size_t es = DTypeSize(dt);
    for (const char* name : {"raw", "fp8", "quant-k4v2-g64", "quant-k2v2-g32-s4-h",
                             "drop-50", "drop-33+quant-k4v2-g64", "lowrank-r12"}) {
      auto cfg = ParseCodecConfig(name);
      ASSERT_TRUE(cfg.ok());
      const Encoded e = EncodeCase(*cfg, shape, seed_ + 7);
      ASSERT_FALSE(e.container.empty());
      std::vector<int64_t> slots(num_blocks * block_size);
      std::iota(slots.begin(), slots.end(), 0);
      std::shuffle(slots.begin(), slots.end(), rng);
      slots.resize(shape.tokens);
      for (uint32_t t = 0; t < shape.tokens; t += 9) slots[t] = -1;
      slots[1] = int64_t{num_blocks} * block_size + 1000;  // out of range: skipped, counted
      DevBuf dslots(slots.size() * 8), dc(e.container.size());
      dslots.Upload(slots.data(), slots.size() * 8);
      dc.Upload(e.container.data(), e.container.size());
      std::vector<DevBuf> caches;
      std::vector<void*> kp, vp;
      for (uint32_t l = 0; l < shape.layers; ++l) {
        caches.emplace_back(layer_elems * es);
        caches.back().Poison();
        kp.push_back(caches.back().get());
        caches.emplace_back(layer_elems * es);
        caches.back().Poison();
        vp.push_back(caches.back().get());
      }
      DevBuf dk(kp.size() * sizeof(void*)), dv(vp.size() * sizeof(void*)), bad(4);
      dk.Upload(kp.data(), kp.size() * sizeof(void*));
      dv.Upload(vp.data(), vp.size() * sizeof(void*));
      ASSERT_EQ(cudaMemset(bad.get(), 0, 4), cudaSuccess);
      cuda::PagedCache cache;
      cache.k_layers = static_cast<void* const*>(dk.get());
      cache.v_layers = static_cast<void* const*>(dv.get());
      cache.layers = shape.layers;
      cache.kv_heads = shape.kv_heads;
      cache.head_dim = shape.head_dim;
      cache.block_size = block_size;
      cache.num_blocks = num_blocks;
      cache.dtype = dt;
      cache.bad_slots = static_cast<uint32_t*>(bad.get());
      cuda::DeviceContainer in{e.container, dc.get()};
      const int64_t* sm = static_cast<const int64_t*>(dslots.get());
      ASSERT_TRUE(cuda::DecodePaged({&in, 1}, {&sm, 1}, cache, nullptr).ok());
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      auto kept = DecodeKeptTokens(e.container);
      ASSERT_TRUE(kept.ok());
      for (uint32_t kv = 0; kv < 2; ++kv) {
        for (uint32_t l = 0; l < shape.layers; ++l) {
          const auto got = caches[2 * l + kv].Download();
          std::vector<std::byte> want(layer_elems * es, std::byte{0xff});
          for (uint32_t t : *kept) {
            if (slots[t] < 0 || t == 1) continue;
            std::memcpy(want.data() + slots[t] * W * es,
                        e.reference.data() + ((uint64_t{kv} * shape.layers + l) * shape.tokens + t) * W * es,
                        W * es);
          }
          ExpectMatches(e, got.data(), dt, layer_elems, want.data(), kv ? "paged V" : "paged K");
        }
      }
      uint32_t bad_count = 1;
      ASSERT_EQ(cudaMemcpy(&bad_count, bad.get(), 4, cudaMemcpyDeviceToHost), cudaSuccess);
      EXPECT_GT(bad_count, 0u);
    }
  }
}

// One call, many entries of different families, shapes and dtypes; output in another
// dtype than the entry's is the CPU's output in the entry's dtype, converted (so fp32 output
// holds exactly the widened CPU values).
TEST_F(CudaDecodeTest, BatchedMixedEntries) {
  struct Case {
    const char* name;
    KvShape shape;
    DType out;
  };
  const std::vector<Case> cases = {
      {"fp8", {2, 64, 4, 128, DType::kBF16}, DType::kBF16},
      {"quant-k4v2-g64", {2, 96, 4, 128, DType::kBF16}, DType::kBF16},
      {"drop-50+quant-k4v4-g64", {2, 64, 2, 128, DType::kFP16}, DType::kFP16},
      {"lowrank-r8", {2, 48, 2, 64, DType::kBF16}, DType::kBF16},
      {"raw", {1, 33, 3, 40, DType::kFP32}, DType::kFP32},
      {"quant-k2v2-g64-h", {1, 40, 2, 512, DType::kBF16}, DType::kBF16},
      {"quant-k4v4-g32", {2, 50, 2, 64, DType::kBF16}, DType::kFP32},
      {"fp8", {2, 20, 2, 64, DType::kFP16}, DType::kFP32},
      {"drop-25", {2, 64, 2, 64, DType::kBF16}, DType::kBF16},
  };
  std::vector<Encoded> enc;
  std::vector<DevBuf> dcs, outs;
  std::vector<cuda::DeviceContainer> in;
  std::vector<cuda::ContiguousOut> out;
  for (size_t i = 0; i < cases.size(); ++i) {
    auto cfg = ParseCodecConfig(cases[i].name);
    ASSERT_TRUE(cfg.ok());
    enc.push_back(EncodeCase(*cfg, cases[i].shape, seed_ + 100 * i));
    ASSERT_FALSE(enc.back().container.empty());
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    dcs.emplace_back(enc[i].container.size());
    dcs.back().Upload(enc[i].container.data(), enc[i].container.size());
    outs.emplace_back(cases[i].shape.Elements() * DTypeSize(cases[i].out));
    outs.back().Poison();
    in.push_back({enc[i].container, dcs.back().get()});
    out.push_back({outs.back().get(), cases[i].out});
  }
  ASSERT_TRUE(cuda::DecodeContiguous(in, out, nullptr).ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  for (size_t i = 0; i < cases.size(); ++i) {
    const Encoded& e = enc[i];
    auto got = outs[i].Download();
    if (cases[i].out != e.shape.dtype) {  // fp32 output: round it the CPU way, then compare
      std::vector<std::byte> rounded(e.shape.Bytes());
      uint64_t inexact = 0;
      for (uint64_t j = 0; j < e.shape.Elements(); ++j) {
        const float v = LoadAsFloat(got.data(), DType::kFP32, j);
        StoreFromFloat(rounded.data(), e.shape.dtype, j, v);
        const float back = LoadAsFloat(rounded.data(), e.shape.dtype, j);
        inexact += std::memcmp(&v, &back, 4) != 0;
      }
      EXPECT_EQ(inexact, 0u) << cases[i].name << ": fp32 output not in the entry's dtype";
      got = std::move(rounded);
    }
    ExpectMatches(e, got.data(), e.shape.dtype, e.shape.Elements(), e.reference.data(), "batched");
  }
}

// Corrupt input is refused on the host before anything is written.
TEST_F(CudaDecodeTest, CorruptContainerChangesNothing) {
  const KvShape shape{1, 16, 2, 64, DType::kBF16};
  auto cfg = ParseCodecConfig("fp8");
  ASSERT_TRUE(cfg.ok());
  Encoded e = EncodeCase(*cfg, shape, seed_);
  const SectionEntry codes = testing::SectionAt(e.container, 0);
  auto bad = e.container;
  bad[codes.offset + 5] = std::byte{0x7f};  // NaN code, CRCs fixed up
  testing::Reseal(bad);
  auto crc_bad = e.container;
  crc_bad[codes.offset + 5] ^= std::byte{1};  // payload CRC mismatch
  auto good = e.container;
  for (auto* blob : {&bad, &crc_bad}) {
    DevBuf dc(blob->size()), dgood(good.size()), out(shape.Bytes()), out2(shape.Bytes());
    dc.Upload(blob->data(), blob->size());
    dgood.Upload(good.data(), good.size());
    out.Poison();
    out2.Poison();
    cuda::DeviceContainer in[2] = {{good, dgood.get()}, {*blob, dc.get()}};
    cuda::ContiguousOut o[2] = {{out2.get(), shape.dtype}, {out.get(), shape.dtype}};
    const auto st = cuda::DecodeContiguous(in, o, nullptr);
    EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    for (const DevBuf* b : {&out, &out2}) {  // the good entry of the batch is not decoded either
      const auto got = b->Download();
      EXPECT_TRUE(std::all_of(got.begin(), got.end(), [](std::byte v) { return v == std::byte{0xff}; }));
    }
  }
}

TEST_F(CudaDecodeTest, RejectsMismatchedArguments) {
  const KvShape shape{1, 8, 1, 16, DType::kBF16};
  auto cfg = ParseCodecConfig("raw");
  ASSERT_TRUE(cfg.ok());
  Encoded e = EncodeCase(*cfg, shape, seed_);
  DevBuf dc(e.container.size());
  dc.Upload(e.container.data(), e.container.size());
  cuda::DeviceContainer in{e.container, dc.get()};
  EXPECT_EQ(cuda::DecodeContiguous({&in, 1}, {}, nullptr).code(), absl::StatusCode::kInvalidArgument);
  cuda::ContiguousOut o{nullptr, DType::kBF16};
  EXPECT_EQ(cuda::DecodeContiguous({&in, 1}, {&o, 1}, nullptr).code(), absl::StatusCode::kInvalidArgument);
  cuda::PagedCache cache;  // incomplete
  const int64_t* sm = nullptr;
  EXPECT_EQ(cuda::DecodePaged({&in, 1}, {&sm, 1}, cache, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace adaptcache
