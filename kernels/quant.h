// quant codec family: KIVI-style asymmetric integer quantization (docs/format.md "quant").
//
// Per layer, the first S tokens ("sinks") are stored exactly in the container dtype. The
// other Tq = tokens - S tokens are quantized:
//   K: per channel over blocks of G tokens: for each (layer, token block, channel of the
//      kv_heads*head_dim row) one (scale, min); the last block may be shorter than G.
//   V: per token over groups of Ge = min(G, head_dim) channels inside each head: for each
//      (layer, token, head, group) one (scale, min); when Ge does not divide head_dim the
//      last group of each head is shorter.
// Optionally (v_bits <= 3, head_dim a power of two) each V head vector is rotated by the
// normalized Walsh-Hadamard transform before quantization and rotated back on decode.
//
// Encode per group: m = min (rounded down to the scale format), s = (max - m) / (2^b - 1)
// (rounded up), q = floor((x - m) * (1/s) + 0.5) clamped to [0, 2^b - 1].
// Decode: y = float(q) * s + m  -- fp32 multiply, then fp32 add, each rounded to nearest
// (no fused multiply-add) -- then the container dtype, rounded to nearest even.
// Scales and mins are fp16 when every quantized |x| <= 16384, else fp32 (a params flag).
// Error bound per element (without Hadamard): |y - x| <= s/2 plus fp32 rounding plus
// the output dtype's rounding. All functions are thread safe.
#pragma once

#include <array>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/kv_shape.h"
#include "kernels/container.h"

namespace adaptcache {

struct QuantParams {
  uint8_t k_bits = 4;      // {2,3,4,8}
  uint8_t v_bits = 4;      // {2,3,4,8}
  uint16_t group = 64;     // {32,64,128}
  uint8_t sinks = 0;       // {0,4,8,16,32}; min(sinks, tokens) tokens are kept exact
  bool hadamard = false;   // only with v_bits <= 3
  bool fp32_scales = false;  // set by the encoder (see above)
  friend bool operator==(const QuantParams&, const QuantParams&) = default;
};

// Container params bytes: [0] k_bits [1] v_bits [2..3] group (LE) [4] sinks
// [5] flags (bit0 hadamard, bit1 fp32 scales; other bits zero).
inline constexpr size_t kQuantParamBytes = 6;
void WriteQuantParams(const QuantParams& p, uint8_t* dst);
// Parses and validates (grid and flags) params bytes.
absl::StatusOr<QuantParams> ReadQuantParams(const uint8_t* src);

// Grid check, independent of shape.
absl::Status ValidateQuantParams(const QuantParams& p);
// Shape-dependent check (Hadamard needs a power-of-two head_dim).
absl::Status CheckQuantShape(const QuantParams& p, const KvShape& shape);

// Section ids. Every quant payload has all seven, in this order, some possibly empty.
inline constexpr uint32_t kQuantKCodes = 1;   // [layers][Tq] rows of packed k_bits codes
inline constexpr uint32_t kQuantVCodes = 2;   // [layers][Tq] rows of packed v_bits codes
inline constexpr uint32_t kQuantKScale = 3;   // [layers][blocks][kv_heads*head_dim]
inline constexpr uint32_t kQuantKMin = 4;     // same shape as kQuantKScale
inline constexpr uint32_t kQuantVScale = 5;   // [layers][Tq][kv_heads][groups per head]
inline constexpr uint32_t kQuantVMin = 6;     // same shape as kQuantVScale
inline constexpr uint32_t kQuantSinks = 7;    // [2][layers][S][kv_heads][head_dim], dtype
inline constexpr size_t kQuantSections = 7;

// Section sizes for params and shape; bytes[i] is the size of section id i + 1.
std::array<uint64_t, kQuantSections> QuantSectionBytes(const QuantParams& p, const KvShape& s);

// Whether encoding `raw` needs fp32 scales; InvalidArgument on inf/NaN or |x| >= 2^100 in
// quantized tokens (their container could not be decoded in fp32).
absl::StatusOr<bool> QuantNeedsFp32Scales(const QuantParams& p, const KvShape& shape,
                                         ConstByteSpan raw);

// Encodes into the seven sections (sized by QuantSectionBytes, p.fp32_scales decided).
void QuantEncodeSections(const QuantParams& p, const KvShape& shape, ConstByteSpan raw,
                         const std::array<ByteSpan, kQuantSections>& sections);
// Validates section sizes and every scale/min, then decodes into out (shape.Bytes()).
absl::Status QuantDecodeSections(const QuantParams& p, const KvShape& shape,
                                 const std::array<ConstByteSpan, kQuantSections>& sections,
                                 ByteSpan out);
// The seven sections of a parsed container, in id order, checked for presence.
absl::StatusOr<std::array<ConstByteSpan, kQuantSections>> FindQuantSections(
    const ContainerView& view);

// Container level (codec id kQuant). p.fp32_scales is ignored on input.
uint64_t QuantContainerMaxBytes(const QuantParams& p, const KvShape& shape);
absl::StatusOr<uint64_t> EncodeQuant(QuantParams p, const KvShape& shape, ConstByteSpan raw,
                                     ByteSpan out);
absl::Status DecodeQuant(const ContainerView& view, ByteSpan out);

}  // namespace adaptcache
