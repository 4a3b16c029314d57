// The codec library's public API: configs, encode, decode (CPU reference).
//
// A CodecConfig is one point of the config grid (DESIGN.md §4). Its Name() is the
// stable string used on the wire, in config files and in metrics; ParseCodecConfig()
// is its inverse. Encode writes a self-describing container (kernels/container.h);
// Decode validates everything before touching the payload and writes the tensor in the
// container's original dtype. All functions are thread safe.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/kv_shape.h"
#include "kernels/container.h"

namespace adaptcache {

struct CodecConfig {
  CodecId family = CodecId::kRaw;
  // quant (and drop+quant): bits for K and V in {8,4,3,2}; group size in {32,64,128};
  // sink tokens kept exact; Hadamard rotation of V (only at v_bits <= 3).
  uint8_t k_bits = 0;
  uint8_t v_bits = 0;
  uint16_t group = 0;
  uint8_t sink_tokens = 0;
  bool hadamard = false;
  // drop: kept fraction in permille (750, 500, 330, 250, 100); with k_bits != 0 the kept
  // tokens are quant-encoded with the fields above ("drop-50+quant-k4v4-g64").
  uint16_t keep_permille = 0;
  // lowrank: target compression ratio (8..20).
  uint8_t lowrank_ratio = 0;

  friend bool operator==(const CodecConfig&, const CodecConfig&) = default;
  std::string Name() const;
};

absl::StatusOr<CodecConfig> ParseCodecConfig(std::string_view name);
// The daemon's default config space (raw first), in a stable order.
std::vector<CodecConfig> DefaultConfigSpace();
absl::Status ValidateConfig(const CodecConfig& cfg);

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
