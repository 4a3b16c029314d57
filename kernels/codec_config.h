// A codec config: one point of the config grid (DESIGN.md §4). Its Name() is the stable
// string used on the wire, in config files and in metrics; ParseCodecConfig() is its
// inverse. Its own header so that the family codecs (lowrank.h) take a config without
// the codec API (codec.h). Implemented in codec.cc. All functions are thread safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
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

}  // namespace adaptcache
