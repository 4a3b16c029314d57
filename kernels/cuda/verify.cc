#include "kernels/cuda/verify.h"

#include <cuda_runtime_api.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/verify_desc.h"

namespace adaptcache::cuda {

absl::Status VerifyOnDevice(std::span<const DeviceCheck> in, uint32_t* work, cudaStream_t stream) {
  if (in.empty()) return absl::OkStatus();
  if (work == nullptr) return absl::InvalidArgumentError("no device work array");
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i].device == nullptr || in[i].bytes == 0) {
      return absl::InvalidArgumentError(absl::StrCat("container ", i, " has no device bytes"));
    }
    if (reinterpret_cast<uintptr_t>(in[i].device) % 16 != 0) {
      return absl::InvalidArgumentError(absl::StrCat("container ", i, " is not 16-byte aligned"));
    }
  }
  if (cudaError_t e = cudaMemsetAsync(work, 0, in.size() * kVerifyWordsPerContainer * 4, stream);
      e != cudaSuccess) {
    return absl::InternalError(absl::StrCat("CUDA memset: ", cudaGetErrorString(e)));
  }
  static const int sms = [] {
    int dev = 0, n = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
      cudaGetLastError();
      return 132;
    }
    return n;
  }();
  internal::VerifyArgs args;
  auto launch = [&]() -> absl::Status {
    const int grid = static_cast<int>(std::min<uint64_t>(args.total_units, uint64_t{8} * sms));
    if (int err = internal::LaunchVerify(args, grid, stream); err != 0) {
      return absl::InternalError(absl::StrCat("CUDA verify launch: ",
                                              cudaGetErrorString(static_cast<cudaError_t>(err))));
    }
    args.entries = 0;
    args.total_units = 0;
    return absl::OkStatus();
  };
  for (size_t i = 0; i < in.size(); ++i) {
    const uint64_t units = (in[i].bytes + internal::kVerifyUnitBytes - 1) / internal::kVerifyUnitBytes;
    if (units >= (1u << 30)) return absl::InvalidArgumentError("container too large");
    if (args.entries == internal::kMaxVerifyPerLaunch || args.total_units + units >= (1u << 31)) {
      if (auto st = launch(); !st.ok()) return st;
    }
    internal::VerifyEntry& e = args.e[args.entries++];
    e.data = static_cast<const uint8_t*>(in[i].device);
    e.bytes = in[i].bytes;
    e.work = work + i * kVerifyWordsPerContainer;
    e.expected = in[i].expected_crc32c;
    e.unit_begin = args.total_units;
    e.units = static_cast<uint32_t>(units);
    args.total_units += static_cast<uint32_t>(units);
  }
  return launch();
}

}  // namespace adaptcache::cuda
