// lowrank: KVTC-style transform coding of one entry (docs/lowrank.md is the format spec).
//
// Per layer, separately for K and V, and per KV head, the [tokens][head_dim] matrix is
// centred on its mean, rotated onto its PCA basis (eigenvectors of the covariance), and
// the coefficients are quantized with per-component bit widths allocated by variance so
// that the whole container hits the configured compression ratio (cfg.lowrank_ratio,
// 8..20) including the basis and mean overhead. Encoding is deterministic: the same input
// gives the same bytes. All functions are thread safe (no shared state).
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/kv_shape.h"
#include "kernels/codec_config.h"
#include "kernels/container.h"

namespace adaptcache {

inline constexpr uint8_t kLowrankMinRatio = 8;
inline constexpr uint8_t kLowrankMaxRatio = 20;

// Upper bound of EncodeLowrank()'s output for this config and shape (bytes).
uint64_t LowrankMaxBytes(const CodecConfig& cfg, const KvShape& shape);

// Encodes `raw` (shape.Bytes() bytes in shape.dtype) as a sealed kLowrank container into
// `out` (at least LowrankMaxBytes() long); returns the bytes written. Errors on an invalid
// shape, a ratio outside [8, 20], a size mismatch or a short buffer; writes nothing useful
// on error.
absl::StatusOr<uint64_t> EncodeLowrank(const CodecConfig& cfg, const KvShape& shape,
                                       ConstByteSpan raw, ByteSpan out);

// Decodes a kLowrank container (already parsed and CRC-checked by ParseContainer) into
// `out` (exactly view.shape.Bytes(), in view.shape.dtype). Validates params, section
// sizes and every bit width against the shape before reading; never writes outside `out`.
// Returns DataLossError on any inconsistency.
absl::Status DecodeLowrank(const ContainerView& view, ByteSpan out);

}  // namespace adaptcache
