// The logical KV tensor of one entry: [2][layers][tokens][kv_heads][head_dim]
// (K then V), row-major, in one of three dtypes. Thread safe (plain values).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace adaptcache {

// Numeric values are part of the container and wire formats: never renumber.
enum class DType : uint8_t { kBF16 = 1, kFP16 = 2, kFP32 = 3 };

size_t DTypeSize(DType d);
std::string_view DTypeName(DType d);
absl::StatusOr<DType> DTypeFromName(std::string_view name);  // "bf16", "fp16", "fp32"
absl::StatusOr<DType> DTypeFromCode(uint32_t code);

// Bounds that reject absurd shapes before any allocation. One entry is one chunk; the
// largest real models have ~128 layers, 128 KV heads (MHA) and head_dim 256.
inline constexpr uint32_t kMaxLayers = 1024;
inline constexpr uint32_t kMaxTokens = 1u << 16;
inline constexpr uint32_t kMaxKvHeads = 1024;
inline constexpr uint32_t kMaxHeadDim = 4096;
inline constexpr uint64_t kMaxEntryBytes = 1ull << 32;  // 4 GiB of raw KV per entry.

struct KvShape {
  uint32_t layers = 0;
  uint32_t tokens = 0;
  uint32_t kv_heads = 0;
  uint32_t head_dim = 0;
  DType dtype = DType::kBF16;

  friend bool operator==(const KvShape&, const KvShape&) = default;

  uint64_t Elements() const {  // 2 * layers * tokens * kv_heads * head_dim
    return 2ull * layers * tokens * kv_heads * head_dim;
  }
  uint64_t Bytes() const { return Elements() * DTypeSize(dtype); }
  // Elements in one [tokens][kv_heads][head_dim] slab (one of K or V for one layer).
  uint64_t SlabElements() const { return uint64_t{tokens} * kv_heads * head_dim; }
  std::string DebugString() const;
};

// Every dimension non-zero and within the bounds above, total within kMaxEntryBytes.
absl::Status ValidateShape(const KvShape& s);

}  // namespace adaptcache
