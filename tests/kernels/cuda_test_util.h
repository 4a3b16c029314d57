// Helpers for the GPU codec tests: device buffers, skip-without-GPU, per-run seeds and
// element comparisons in ulps of the output dtype.
#pragma once

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/half.h"
#include "common/kv_shape.h"
#include "kernels/cuda/decode.h"

namespace adaptcache::testing {

#define AC_CUDA_OK(x) ASSERT_EQ((x), cudaSuccess) << cudaGetErrorString(x)

#define AC_SKIP_WITHOUT_GPU()                                        \
  do {                                                               \
    if (!::adaptcache::cuda::CudaDeviceAvailable()) {                \
      GTEST_SKIP() << "no CUDA device: GPU codec tests skipped";     \
    }                                                                \
  } while (0)

// Owns a cudaMalloc'd buffer.
class DevBuf {
 public:
  DevBuf() = default;
  explicit DevBuf(size_t n) : n_(n) {
    if (cudaMalloc(&p_, n == 0 ? 1 : n) != cudaSuccess) p_ = nullptr;
  }
  ~DevBuf() {
    if (p_ != nullptr) cudaFree(p_);
  }
  DevBuf(DevBuf&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; }
  DevBuf& operator=(DevBuf&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    return *this;
  }
  void* get() const { return p_; }
  std::byte* bytes() const { return static_cast<std::byte*>(p_); }
  size_t size() const { return n_; }
  void Upload(const void* src, size_t n) const {
    ASSERT_EQ(cudaMemcpy(p_, src, n, cudaMemcpyHostToDevice), cudaSuccess);
  }
  std::vector<std::byte> Download() const {
    std::vector<std::byte> v(n_);
    EXPECT_EQ(cudaMemcpy(v.data(), p_, n_, cudaMemcpyDeviceToHost), cudaSuccess);
    return v;
  }
  void Poison() const { ASSERT_EQ(cudaMemset(p_, 0xff, n_), cudaSuccess); }

 private:
  void* p_ = nullptr;
  size_t n_ = 0;
};

// A fresh seed every run (printed by the caller via SCOPED_TRACE); AC_TEST_SEED pins it.
inline uint32_t RunSeed() {
  if (const char* s = std::getenv("AC_TEST_SEED")) return static_cast<uint32_t>(std::stoul(s));
  return std::random_device{}();
}

// Sign-magnitude bit pattern of element i mapped to a monotonic integer.
inline int64_t OrderedBits(const std::byte* data, DType d, uint64_t i) {
  if (d == DType::kFP32) {
    int32_t v;
    std::memcpy(&v, data + 4 * i, 4);
    return v < 0 ? -int64_t{v & 0x7fffffff} : v;
  }
  uint16_t h;
  std::memcpy(&h, data + 2 * i, 2);
  return (h & 0x8000) ? -int64_t{h & 0x7fff} : h;
}

struct Compare {
  uint64_t mismatches = 0;  // elements whose bits differ
  int64_t max_ulps = 0;     // largest distance in ulps of the dtype (NaN counts huge)
  uint64_t first_bad = UINT64_MAX;
};

inline Compare CompareElems(const std::byte* got, const std::byte* want, DType d, uint64_t n) {
  Compare c;
  const size_t es = DTypeSize(d);
  for (uint64_t i = 0; i < n; ++i) {
    if (std::memcmp(got + i * es, want + i * es, es) == 0) continue;
    ++c.mismatches;
    if (c.first_bad == UINT64_MAX) c.first_bad = i;
    const bool nan = std::isnan(LoadAsFloat(got, d, i)) || std::isnan(LoadAsFloat(want, d, i));
    const int64_t diff = nan ? INT64_MAX : std::llabs(OrderedBits(got, d, i) - OrderedBits(want, d, i));
    c.max_ulps = std::max(c.max_ulps, diff);
  }
  return c;
}

}  // namespace adaptcache::testing
