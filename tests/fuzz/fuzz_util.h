// Shared body of the decoder fuzz targets. Each input is tried twice: as is (exercising
// the header/payload CRC checks) and re-sealed with its codec id forced to the target's
// family, so mutations reach the decoder's semantic validation. Decoding must either fail
// cleanly or fill the whole output buffer; nothing may crash or touch memory outside it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/crc32c.h"
#include "kernels/codec.h"
#include "kernels/container.h"

namespace adaptcache::fuzz {

inline constexpr uint64_t kMaxFuzzOutput = 8ull << 20;  // bound the output allocation

inline void TryDecode(std::span<const std::byte> blob) {
  auto hdr = PeekHeader(blob);
  if (!hdr.ok()) {
    (void)Decode(blob, {});
    return;
  }
  KvShape s{hdr->layers, hdr->tokens, hdr->kv_heads, hdr->head_dim,
            static_cast<DType>(hdr->dtype)};
  if (s.Bytes() > kMaxFuzzOutput) return;
  std::vector<std::byte> out(s.Bytes());
  (void)Decode(blob, out);
  (void)DecodeKeptTokens(blob);
  if (auto view = ParseContainer(blob); view.ok()) (void)ConfigOf(*view);
}

inline int FuzzOne(const uint8_t* data, size_t size, CodecId family) {
  std::vector<std::byte> blob(size);
  if (size) std::memcpy(blob.data(), data, size);
  TryDecode(blob);
  if (size < sizeof(ContainerHeader)) return 0;
  // Re-seal: force the family, fix total_bytes and both CRCs.
  ContainerHeader h;
  std::memcpy(&h, blob.data(), sizeof(h));
  h.codec = static_cast<uint8_t>(family);
  h.total_bytes = size;
  std::memcpy(blob.data(), &h, sizeof(h));
  h.payload_crc32c = Crc32c(blob.data() + sizeof(h), size - sizeof(h));
  std::memcpy(blob.data(), &h, sizeof(h));
  h.header_crc32c = Crc32c(blob.data(), offsetof(ContainerHeader, header_crc32c));
  std::memcpy(blob.data(), &h, sizeof(h));
  TryDecode(blob);
  return 0;
}

}  // namespace adaptcache::fuzz
