// The codec library's public API: configs (kernels/codec_config.h), encode, decode (CPU
// reference). Encode writes a self-describing container (kernels/container.h); Decode
// validates everything before touching the payload and writes the tensor in the
// container's original dtype. All functions are thread safe.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/kv_shape.h"
#include "kernels/codec_config.h"
#include "kernels/container.h"

namespace adaptcache {

// Optional engine hints used by token dropping and the quality proxies.
struct SideData {
  std::span<const float> token_importance;  // [tokens] or empty
  uint32_t probe_count = 0;
  std::span<const float> probe_queries;     // [layers][probe_count][kv_heads][head_dim] or empty
};

// Upper bound of Encode()'s output for this config and shape.
uint64_t MaxEncodedBytes(const CodecConfig& cfg, const KvShape& shape);

// Encodes `raw` (shape.Bytes() bytes in shape.dtype) into `out`; returns bytes written.
absl::StatusOr<uint64_t> Encode(const CodecConfig& cfg, const KvShape& shape, ConstByteSpan raw,
                                const SideData& side, ByteSpan out);
absl::StatusOr<std::vector<std::byte>> EncodeToVector(const CodecConfig& cfg, const KvShape& shape,
                                                      ConstByteSpan raw, const SideData& side = {});

// Decodes a container into `out` (exactly shape.Bytes() in the container's dtype).
absl::Status Decode(ConstByteSpan container, ByteSpan out);

// The config a container was encoded with (after full validation).
absl::StatusOr<CodecConfig> ConfigOf(const ContainerView& view);

// Shape-dependent applicability: OK when Encode() can encode this shape with this config
// (e.g. Hadamard rotation needs a power-of-two head_dim). Includes ValidateConfig.
absl::Status CheckApplicable(const CodecConfig& cfg, const KvShape& shape);

// Token positions whose KV a decode of `container` reconstructs: 0..tokens-1 for every
// codec except drop, whose decode writes zeros at the other positions. Validates the
// container fully (as Decode does, without decoding the payload).
absl::StatusOr<std::vector<uint32_t>> DecodeKeptTokens(ConstByteSpan container);

}  // namespace adaptcache
