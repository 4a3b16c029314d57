// .safetensors files (https://huggingface.co/docs/safetensors): an 8-byte little-endian
// header length, a JSON header mapping tensor names to {dtype, shape, data_offsets}
// (plus an optional "__metadata__" object of strings), then the data buffer.
//
// The reader is bounded and strict: header at most 100 MB, JSON nesting at most 8 deep,
// every tensor's offsets inside the buffer, its byte length equal to shape x dtype, no
// two tensors overlapping, no duplicate names. A malformed file is an InvalidArgument
// error. Thread safe (pure functions).
#pragma once

#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "client/host_tensor.h"

namespace adaptcache::client {

inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

struct NamedTensor {
  std::string name;
  HostTensor tensor;
};

struct SafetensorsFile {
  std::vector<NamedTensor> tensors;  // in data-offset order
  std::vector<std::pair<std::string, std::string>> metadata;

  // The tensor called `name`; with an empty name, the only tensor (error if several).
  absl::StatusOr<const HostTensor*> Find(const std::string& name) const;
};

absl::StatusOr<SafetensorsFile> ParseSafetensors(std::span<const std::byte> file);
absl::StatusOr<SafetensorsFile> ReadSafetensors(const std::string& path);

absl::StatusOr<std::vector<std::byte>> EncodeSafetensors(const SafetensorsFile& f);
absl::Status WriteSafetensors(const std::string& path, const SafetensorsFile& f);

}  // namespace adaptcache::client
