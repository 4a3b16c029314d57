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

// A raw container built in place, for bytes that arrive in pieces (a streamed Put): Start()
// lays out the header and section table in `out` (at least RawContainerBytes(shape)) and
// returns the builder; the caller writes the tensor into data() in order through Append(),
// which keeps the payload CRC, and Seal() finishes the header once every byte is there.
class RawContainerBuilder {
 public:
  static absl::StatusOr<RawContainerBuilder> Start(const KvShape& shape, ByteSpan out);
  // Copies the next `n` tensor bytes in; InvalidArgument past the shape's end.
  absl::Status Append(const void* data, uint64_t n);
  uint64_t size() const { return written_; }  // tensor bytes so far
  uint64_t total_bytes() const { return writer_.TotalBytes(); }
  // FailedPrecondition unless all of the tensor was appended; else the CRC32C of the
  // whole container.
  absl::StatusOr<uint32_t> Seal();

 private:
  explicit RawContainerBuilder(const KvShape& shape) : writer_(CodecId::kRaw, shape) {}
  ContainerWriter writer_;
  ByteSpan data_;
  uint64_t written_ = 0;
  uint32_t payload_crc_ = 0;
};
uint64_t RawContainerBytes(const KvShape& shape);
// Encode() for the raw config, also giving the CRC32C of the whole container (computed in
// the same pass as the copy) when `container_crc32c` is not null.
absl::StatusOr<uint64_t> EncodeRaw(const KvShape& shape, ConstByteSpan raw, ByteSpan out,
                                   uint32_t* container_crc32c = nullptr);

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
