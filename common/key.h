// Keys: 128-bit chained token-prefix hashes within a namespace (DESIGN.md §3).
//
//   seed      = XXH3_128("adaptcache/ns/v1\0" || namespace bytes)
//   k_0       = XXH3_128(seed || tokens_0)
//   k_i       = XXH3_128(k_{i-1} || tokens_i)
//
// Keys and token ids are hashed as little-endian bytes (key: low 64 bits first, then
// high), token ids as uint32. No seed, no process state: the same tokens give the same
// keys in every process and on every host. All functions are thread safe.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace adaptcache {

struct Key128 {
  uint64_t lo = 0;
  uint64_t hi = 0;

  friend bool operator==(const Key128&, const Key128&) = default;
  friend auto operator<=>(const Key128&, const Key128&) = default;

  // 16 bytes, little-endian (lo first). This is the wire form in proto `bytes` keys.
  std::string ToBytes() const;
  static absl::StatusOr<Key128> FromBytes(std::string_view bytes);
  std::string ToHex() const;  // 32 hex digits, wire byte order.
  static absl::StatusOr<Key128> FromHex(std::string_view hex);

  template <typename H>
  friend H AbslHashValue(H h, const Key128& k) {
    return H::combine(std::move(h), k.lo, k.hi);
  }
};

inline constexpr size_t kKeyBytes = 16;
inline constexpr uint32_t kDefaultChunkTokens = 256;

// The chain's starting value for a namespace.
Key128 NamespaceSeed(std::string_view ns);

// One step of the chain.
Key128 ChainKey(const Key128& prev, std::span<const uint32_t> tokens);

// Splits `tokens` into chunks of `chunk_tokens` (the last may be shorter) and returns
// one key per chunk. chunk_tokens must be > 0.
std::vector<Key128> HashTokenChunks(std::string_view ns,
                                    std::span<const uint32_t> tokens,
                                    uint32_t chunk_tokens = kDefaultChunkTokens);

// 64-bit namespace id used to separate namespaces inside the daemon's maps.
uint64_t NamespaceId(std::string_view ns);

// A key qualified by its namespace: what the daemon indexes by.
struct EntryKey {
  uint64_t ns = 0;
  Key128 key;
  friend bool operator==(const EntryKey&, const EntryKey&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const EntryKey& k) {
    return H::combine(std::move(h), k.ns, k.key);
  }
};

// What a group of namespaces holds in one tier (a tenant's quota scope).
struct NamespaceUsage {
  int64_t bytes = 0;
  int64_t entries = 0;
};

// Namespaces are operator/engine strings: 1..256 printable ASCII bytes.
inline constexpr size_t kMaxNamespaceBytes = 256;
absl::Status ValidateNamespace(std::string_view ns);

}  // namespace adaptcache
