// Internal: launch interface between VerifyOnDevice (verify.cc) and its kernel
// (verify_kernels.cu). Not a public API.
#pragma once

#include <cstdint>

namespace adaptcache::cuda::internal {

inline constexpr int kVerifyThreads = 256;
inline constexpr uint32_t kVerifySliceBytes = 128;  // bytes per thread
inline constexpr uint32_t kVerifyUnitBytes = kVerifyThreads * kVerifySliceBytes;
inline constexpr int kMaxVerifyPerLaunch = 64;

struct VerifyEntry {
  const uint8_t* data;
  uint64_t bytes;
  uint32_t* work;         // [gate, crc accumulator, finished units, unused]
  uint32_t expected;
  uint32_t unit_begin;    // first unit of this entry within the launch
  uint32_t units;
};

struct VerifyArgs {
  uint32_t entries = 0;
  uint32_t total_units = 0;
  VerifyEntry e[kMaxVerifyPerLaunch];
};

// Returns a CUDA error code (0 = success).
int LaunchVerify(const VerifyArgs& args, int grid, void* stream);

}  // namespace adaptcache::cuda::internal
