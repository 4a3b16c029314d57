// GPU encode (fp8, quant) must produce exactly the CPU encoder's bytes, for every fp8 and
// quant config of DefaultConfigSpace() and the three dtypes, on fresh random data each
// run; plus the edge cases that decide the container layout (fp32 scales, inf/NaN,
// signed zeros). Skips cleanly without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include "kernels/codec.h"
#include "kernels/cuda/encode.h"
#include "tests/kernels/cuda_test_util.h"
#include "tests/kernels/kv_test_util.h"

namespace adaptcache {
namespace {

using testing::DevBuf;

void ExpectSameBytes(const CodecConfig& cfg, const KvShape& shape, const std::vector<std::byte>& raw) {
  SCOPED_TRACE(cfg.Name() + " " + shape.DebugString());
  auto want = EncodeToVector(cfg, shape, raw);
  ASSERT_TRUE(want.ok()) << want.status();
  DevBuf d(raw.size());
  d.Upload(raw.data(), raw.size());
  std::vector<std::byte> got(MaxEncodedBytes(cfg, shape));
  auto n = cuda::EncodeOnDevice(cfg, shape, d.get(), got, nullptr);
  ASSERT_TRUE(n.ok()) << n.status();
  ASSERT_EQ(*n, want->size());
  got.resize(*n);
  size_t first = 0;
  while (first < got.size() && got[first] == (*want)[first]) ++first;
  EXPECT_EQ(first, got.size()) << "first differing byte at " << first << " of " << got.size();
}

class CudaEncodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AC_SKIP_WITHOUT_GPU();
    seed_ = testing::RunSeed();
    std::printf("[ seed ] AC_TEST_SEED=%u\n", seed_);
  }
  uint32_t seed_ = 0;
};

TEST_F(CudaEncodeTest, EveryFp8AndQuantConfigMatchesCpuBytes) {
  const std::vector<KvShape> shapes = {{2, 83, 4, 128, DType::kBF16}, {2, 83, 4, 128, DType::kFP16},
                                       {2, 83, 4, 128, DType::kFP32}, {3, 37, 3, 20, DType::kBF16},
                                       {1, 70, 2, 512, DType::kFP16}, {1, 3, 2, 8, DType::kBF16}};
  for (const KvShape& shape : shapes) {
    const auto raw = testing::MakeKv(shape, seed_ + shape.head_dim + static_cast<uint32_t>(shape.dtype));
    for (const CodecConfig& cfg : DefaultConfigSpace()) {
      if (cfg.family != CodecId::kFp8 && cfg.family != CodecId::kQuant) continue;
      if (!CheckApplicable(cfg, shape).ok()) continue;
      ExpectSameBytes(cfg, shape, raw);
    }
  }
}

// Values above 16384 switch quant to fp32 scales; zeros of both signs exercise the
// comparison order that decides the sign of a stored min/scale.
TEST_F(CudaEncodeTest, LayoutDecidingEdgeCases) {
  const KvShape shape{1, 40, 2, 64, DType::kFP32};
  auto raw = testing::MakeKv(shape, seed_);
  std::vector<std::byte> big = raw;
  StoreFromFloat(big.data(), shape.dtype, 5000, 30000.f);
  std::vector<std::byte> zeros = raw;
  for (uint64_t i = 0; i < 2 * 64 * 40; ++i) StoreFromFloat(zeros.data(), shape.dtype, i, (i % 3) ? -0.0f : 0.0f);
  for (const char* name : {"fp8", "quant-k4v4-g32", "quant-k2v2-g32-s4-h", "quant-k8v8-g128"}) {
    auto cfg = ParseCodecConfig(name);
    ASSERT_TRUE(cfg.ok());
    ExpectSameBytes(*cfg, shape, big);
    ExpectSameBytes(*cfg, shape, zeros);
  }
}

TEST_F(CudaEncodeTest, RejectsWhatTheCpuRejects) {
  const KvShape shape{1, 16, 2, 64, DType::kBF16};
  auto raw = testing::MakeKv(shape, seed_);
  StoreFromFloat(raw.data(), shape.dtype, 77, std::nanf(""));
  DevBuf d(raw.size());
  d.Upload(raw.data(), raw.size());
  for (const char* name : {"fp8", "quant-k4v4-g32"}) {
    auto cfg = ParseCodecConfig(name);
    ASSERT_TRUE(cfg.ok());
    std::vector<std::byte> out(MaxEncodedBytes(*cfg, shape));
    EXPECT_EQ(cuda::EncodeOnDevice(*cfg, shape, d.get(), out, nullptr).status().code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(EncodeToVector(*cfg, shape, raw).status().code(), absl::StatusCode::kInvalidArgument);
  }
  auto lowrank = ParseCodecConfig("lowrank-r8");
  ASSERT_TRUE(lowrank.ok());
  std::vector<std::byte> out(1 << 20);
  EXPECT_EQ(cuda::EncodeOnDevice(*lowrank, shape, d.get(), out, nullptr).status().code(),
            absl::StatusCode::kUnimplemented);
  std::vector<std::byte> small(100);
  auto fp8 = ParseCodecConfig("fp8");
  EXPECT_EQ(cuda::EncodeOnDevice(*fp8, shape, d.get(), small, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace adaptcache
