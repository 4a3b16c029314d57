// Integrity check of containers on the GPU: the CRC32C of every container's device copy
// against the value the daemon recorded for it (EntryInfo.payload_crc32c, which covers the
// whole container), so a fetch never needs a host pass over the bytes (docs/cuda.md).
//
// The result is a gate word per container: kGateOpen when the CRC matched, kGateCorrupt
// when it did not; anything else (the zero VerifyOnDevice writes first) means "not
// verified". Decode kernels given the gate (DecodeOptions::device_gates) decode only when
// it reads kGateOpen, so bytes that fail the check are never written into the output.
// All work is enqueued on `stream` without host synchronisation.
// Thread safety: thread safe; concurrent calls must use distinct `work` arrays.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "kernels/cuda/gate.h"

namespace adaptcache::cuda {

struct DeviceCheck {
  const void* device = nullptr;  // container bytes on the device, 16-byte aligned
  uint64_t bytes = 0;
  uint32_t expected_crc32c = 0;  // CRC32C of all `bytes`
};

// Device words VerifyOnDevice needs per container.
inline constexpr uint32_t kVerifyWordsPerContainer = 4;

// Checks in[i] and writes its gate to work[i * kVerifyWordsPerContainer] (device memory of
// at least in.size() * kVerifyWordsPerContainer uint32 words; the call zeroes it first).
absl::Status VerifyOnDevice(std::span<const DeviceCheck> in, uint32_t* work, cudaStream_t stream);

// The gate word of container i in `work`.
inline const uint32_t* GateOf(const uint32_t* work, size_t i) {
  return work + i * kVerifyWordsPerContainer;
}

}  // namespace adaptcache::cuda
