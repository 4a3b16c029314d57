// GPU CRC32C check (kernels/cuda/verify.h) against the host CRC32C, and decode gated by
// it: a container whose check fails is never written. Skips cleanly without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "common/crc32c.h"
#include "kernels/codec.h"
#include "kernels/cuda/decode.h"
#include "kernels/cuda/verify.h"
#include "tests/kernels/cuda_test_util.h"
#include "tests/kernels/kv_test_util.h"

namespace adaptcache {
namespace {

using testing::DevBuf;

class CudaVerifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AC_SKIP_WITHOUT_GPU();
    seed_ = testing::RunSeed();
    std::printf("[ seed ] AC_TEST_SEED=%u\n", seed_);
  }
  uint32_t seed_ = 0;
};

uint64_t Align256(uint64_t n) { return (n + 255) / 256 * 256; }

// Lengths around every boundary of the kernel: 16-byte loads, 128-byte slices, 32 KiB
// units, and a multi-unit container; 70 of them, so the batch needs two launches.
std::vector<uint64_t> Lengths() {
  std::vector<uint64_t> v = {1,     15,    16,    17,    127,   128,   129,     255,
                             4095,  32767, 32768, 32769, 65536, 65600, 3 << 20, (3 << 20) + 5};
  std::mt19937_64 rng(3);
  while (v.size() < 70) v.push_back(1 + rng() % 200000);
  return v;
}

TEST_F(CudaVerifyTest, MatchesTheHostCrcAtEveryBoundary) {
  const auto lens = Lengths();
  uint64_t total = 0;
  for (uint64_t n : lens) total += Align256(n);
  std::vector<std::byte> host(total);
  std::mt19937_64 rng(seed_);
  for (auto& b : host) b = static_cast<std::byte>(rng());
  DevBuf dev(total), work(lens.size() * cuda::kVerifyWordsPerContainer * 4);
  dev.Upload(host.data(), total);
  for (bool right : {true, false}) {
    SCOPED_TRACE(right ? "expected CRC right" : "expected CRC off by one bit");
    std::vector<cuda::DeviceCheck> checks;
    uint64_t off = 0;
    for (uint64_t n : lens) {
      const uint32_t crc = Crc32c(host.data() + off, n) ^ (right ? 0u : 1u);
      checks.push_back({dev.bytes() + off, n, crc});
      off += Align256(n);
    }
    ASSERT_TRUE(cuda::VerifyOnDevice(checks, static_cast<uint32_t*>(work.get()), nullptr).ok());
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const auto words = work.Download();
    for (size_t i = 0; i < lens.size(); ++i) {
      uint32_t gate;
      std::memcpy(&gate, words.data() + i * cuda::kVerifyWordsPerContainer * 4, 4);
      EXPECT_EQ(gate, right ? cuda::kGateOpen : cuda::kGateCorrupt) << "length " << lens[i];
    }
  }
}

TEST_F(CudaVerifyTest, OneFlippedBitAnywhereClosesTheGate) {
  const uint64_t n = (1 << 20) + 333;
  std::vector<std::byte> host(n);
  std::mt19937_64 rng(seed_);
  for (auto& b : host) b = static_cast<std::byte>(rng());
  const uint32_t crc = Crc32c(host.data(), n);
  DevBuf dev(n), work(cuda::kVerifyWordsPerContainer * 4);
  for (uint64_t at : {uint64_t{0}, uint64_t{127}, uint64_t{32768}, n / 2, n - 1}) {
    auto bad = host;
    bad[at] ^= std::byte{0x80};
    dev.Upload(bad.data(), n);
    const cuda::DeviceCheck c{dev.get(), n, crc};
    ASSERT_TRUE(cuda::VerifyOnDevice({&c, 1}, static_cast<uint32_t*>(work.get()), nullptr).ok());
    const auto words = work.Download();
    uint32_t gate;
    std::memcpy(&gate, words.data(), 4);
    EXPECT_EQ(gate, cuda::kGateCorrupt) << "flip at " << at;
  }
}

// 40 entries of mixed families (more than one decode launch) with device gates: entries
// whose expected CRC is wrong stay poisoned, the rest match the CPU decoder bit for bit.
TEST_F(CudaVerifyTest, GatedDecodeWritesOnlyVerifiedEntries) {
  const KvShape shape{4, 96, 2, 64, DType::kBF16};
  const char* names[] = {"raw", "fp8", "quant-k4v4-g64", "quant-k2v2-g32", "drop-50+quant-k4v2-g64"};
  const size_t n = 40;
  std::vector<std::vector<std::byte>> containers, refs;
  for (size_t i = 0; i < n; ++i) {
    auto cfg = ParseCodecConfig(names[i % std::size(names)]);
    ASSERT_TRUE(cfg.ok());
    const auto raw = testing::MakeKv(shape, seed_ + static_cast<uint32_t>(i));
    auto c = EncodeToVector(*cfg, shape, raw);
    ASSERT_TRUE(c.ok()) << c.status();
    std::vector<std::byte> ref(shape.Bytes());
    ASSERT_TRUE(Decode(*c, ref).ok());
    containers.push_back(std::move(*c));
    refs.push_back(std::move(ref));
  }
  uint64_t total = 0;
  std::vector<uint64_t> off;
  for (const auto& c : containers) off.push_back(total), total += Align256(c.size());
  DevBuf dev(total), work(n * cuda::kVerifyWordsPerContainer * 4);
  std::vector<DevBuf> outs;
  std::vector<cuda::DeviceContainer> in;
  std::vector<cuda::ContiguousOut> o;
  std::vector<cuda::DeviceCheck> checks;
  std::vector<const uint32_t*> gates;
  for (size_t i = 0; i < n; ++i) {
    ASSERT_EQ(cudaMemcpy(dev.bytes() + off[i], containers[i].data(), containers[i].size(), cudaMemcpyHostToDevice),
              cudaSuccess);
    outs.emplace_back(shape.Bytes());
    outs.back().Poison();
    in.push_back({containers[i], dev.bytes() + off[i]});
    o.push_back({outs.back().get(), shape.dtype});
    const bool bad = i % 7 == 3;
    checks.push_back({dev.bytes() + off[i], containers[i].size(), Crc32c(containers[i].data(), containers[i].size()) ^ (bad ? 4u : 0u)});
    gates.push_back(cuda::GateOf(static_cast<const uint32_t*>(work.get()), i));
  }
  ASSERT_TRUE(cuda::VerifyOnDevice(checks, static_cast<uint32_t*>(work.get()), nullptr).ok());
  cuda::DecodeOptions opts;
  opts.verify_payload_crc = false;
  opts.device_gates = gates;
  const auto st = cuda::DecodeContiguous(in, o, nullptr, opts);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  for (size_t i = 0; i < n; ++i) {
    const auto got = outs[i].Download();
    if (i % 7 == 3) {
      EXPECT_TRUE(std::all_of(got.begin(), got.end(), [](std::byte b) { return b == std::byte{0xff}; }))
          << "entry " << i << " failed its check but was written";
    } else {
      EXPECT_TRUE(got == refs[i]) << "entry " << i << " (" << names[i % std::size(names)] << ")";
    }
  }
}

}  // namespace
}  // namespace adaptcache
