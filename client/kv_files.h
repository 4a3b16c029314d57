// Helpers that turn files and command-line text into KV tensors, token ids and keys,
// and back: used by the CLI and its tests. Every parser is bounded and returns a clear
// InvalidArgument error on malformed input. Thread safe (pure functions).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "client/host_tensor.h"
#include "common/key.h"
#include "common/kv_shape.h"

namespace adaptcache::client {

inline constexpr size_t kMaxTokenIds = 1u << 26;

// "2,32,256,8,128" (commas or 'x') -> dims. Every dim > 0.
absl::StatusOr<std::vector<uint64_t>> ParseDims(std::string_view text);

// The KV shape of a [2, layers, tokens, kv_heads, head_dim] tensor of `type`.
absl::StatusOr<KvShape> KvShapeFromDims(std::span<const uint64_t> dims, ElemType type);

// Token ids from text: non-negative integers < 2^32 separated by whitespace or commas.
absl::StatusOr<std::vector<uint32_t>> ParseTokenText(std::string_view text);
// Token ids from an integer tensor (any rank; flattened).
absl::StatusOr<std::vector<uint32_t>> TokensFromTensor(const HostTensor& t);
// A .npy file of integers, else a text file (decided by the file's magic bytes).
absl::StatusOr<std::vector<uint32_t>> ReadTokenFile(const std::string& path);

// 32-hex-digit keys (wire byte order, as printed by the CLI).
absl::StatusOr<std::vector<Key128>> ParseHexKeys(std::span<const std::string> hex);

// A .npy or .safetensors file (decided by the magic bytes, not the name). `name`
// selects a tensor in a safetensors file (empty: the only one).
absl::StatusOr<HostTensor> ReadTensorFile(const std::string& path, const std::string& name = "");
// Writes .npy or .safetensors by the path's extension. A bf16 tensor going to .npy is
// widened to f32 (lossless). `name` is the safetensors tensor name.
absl::Status WriteTensorFile(const std::string& path, const HostTensor& t, const std::string& name = "kv");

// Converts between float element types (f16, bf16, f32, f64); round to nearest even.
absl::StatusOr<HostTensor> ConvertFloat(const HostTensor& t, ElemType to);

// Copies tokens [t0, t1) of a [2][L][T][H][D] tensor into a new contiguous tensor.
std::vector<std::byte> SliceTokens(const KvShape& full, std::span<const std::byte> data, uint32_t t0, uint32_t t1);

// Concatenates KV tensors along the token axis; layers, heads, head_dim and dtype must
// agree. Returns a 5-D HostTensor [2, L, sum(T), H, D].
absl::StatusOr<HostTensor> ConcatTokens(std::span<const KvShape> shapes,
                                        std::span<const std::vector<std::byte>> parts);

// Deterministic pseudo-random tensor bytes: values uniform in [-2, 2) in shape.dtype.
std::vector<std::byte> RandomKvBytes(const KvShape& shape, uint64_t seed);

}  // namespace adaptcache::client
