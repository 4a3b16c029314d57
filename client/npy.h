// NumPy .npy files (format versions 1.0, 2.0 and 3.0), little-endian, C order.
//
// The reader validates everything before allocating: magic, version, header length,
// the header dict (exactly the keys descr, fortran_order, shape), the dtype, the shape
// bounds, and that the file holds exactly the data the header describes. A malformed
// file is an InvalidArgument error naming the problem. Thread safe (pure functions).
#pragma once

#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/host_tensor.h"

namespace adaptcache::client {

inline constexpr size_t kMaxNpyHeaderBytes = 1 << 20;

absl::StatusOr<HostTensor> ParseNpy(std::span<const std::byte> file);
absl::StatusOr<HostTensor> ReadNpy(const std::string& path);

// Encodes as version 1.0 (2.0 when the header needs it). NumPy has no bfloat16, so a
// bf16 tensor is refused (callers widen it to f32, which is lossless).
absl::StatusOr<std::vector<std::byte>> EncodeNpy(const HostTensor& t);
absl::Status WriteNpy(const std::string& path, const HostTensor& t);

}  // namespace adaptcache::client
