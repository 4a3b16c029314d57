// Values of the device gate words that VerifyOnDevice writes (verify.h) and the decode
// kernels read. Kept free of dependencies so .cu files can include it.
#pragma once

#include <cstdint>

namespace adaptcache::cuda {

inline constexpr uint32_t kGateOpen = 1;     // the container's CRC matched
inline constexpr uint32_t kGateCorrupt = 2;  // it did not

}  // namespace adaptcache::cuda
