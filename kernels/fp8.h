// fp8 codec family: OCP E4M3 ("e4m3fn": bias 7, no infinities, max 448) with one fp32
// scale per (K/V, layer, token) over its kv_heads*head_dim values (docs/format.md "fp8").
//
// Encode: scale = amax / 448 (fp32 division); code = E4M3(x * (1/scale)) rounded to
// nearest even and saturated to +-448; an all-zero row has scale 0 and codes 0.
// Decode: y = E4M3ToFloat(code) * scale (one fp32 rounding), then the container dtype
// (round to nearest even). Encoding rejects inf/NaN inputs. Thread safe.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/kv_shape.h"
#include "kernels/container.h"

namespace adaptcache {

inline constexpr uint32_t kFp8SectionCodes = 1;   // uint8 [2][layers][tokens][kv_heads*head_dim]
inline constexpr uint32_t kFp8SectionScales = 2;  // fp32  [2][layers][tokens]

// Exact value of an E4M3 code (0x7f and 0xff are NaN).
float E4M3ToFloat(uint8_t code);
// Nearest E4M3 code (ties to even), saturating to +-448; v must not be NaN.
uint8_t FloatToE4M3(float v);

uint64_t Fp8ContainerBytes(const KvShape& shape);
absl::StatusOr<uint64_t> EncodeFp8(const KvShape& shape, ConstByteSpan raw, ByteSpan out);
// `view` is a parsed kFp8 container; out is view.shape.Bytes() long.
absl::Status DecodeFp8(const ContainerView& view, ByteSpan out);

}  // namespace adaptcache
