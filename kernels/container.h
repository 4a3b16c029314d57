// The self-describing container every stored entry lives in (docs/format.md).
//
//   [ContainerHeader 64 B][SectionEntry x section_count][section bytes ...]
//
// All integers little-endian. Sections start 8-byte aligned, lie after the section
// table, in ascending offset order, without overlap, inside total_bytes. header_crc32c
// covers header bytes [0, 60); payload_crc32c covers bytes [64, total_bytes). Any change
// to this layout bumps kContainerVersion. Thread safe (pure functions).
#pragma once

#include <cstddef>
#include <array>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/kv_shape.h"

namespace adaptcache {

using ByteSpan = std::span<std::byte>;
using ConstByteSpan = std::span<const std::byte>;

inline constexpr uint32_t kContainerMagic = 0x564B4341;  // bytes "ACKV"
inline constexpr uint16_t kContainerVersion = 1;
inline constexpr size_t kContainerHeaderBytes = 64;
inline constexpr size_t kContainerParamBytes = 20;
inline constexpr uint16_t kMaxSections = 32;
inline constexpr size_t kSectionAlign = 8;

// Codec family ids; numeric values are on disk and on the wire.
enum class CodecId : uint8_t { kRaw = 0, kFp8 = 1, kQuant = 2, kDrop = 3, kLowrank = 4 };
inline constexpr uint8_t kMaxCodecId = 4;
std::string_view CodecFamilyName(CodecId id);

#pragma pack(push, 1)
struct ContainerHeader {
  uint32_t magic;           // 0  kContainerMagic
  uint16_t version;         // 4  kContainerVersion
  uint16_t header_bytes;    // 6  sizeof(ContainerHeader)
  uint8_t codec;            // 8  CodecId
  uint8_t dtype;            // 9  DType of the original tensor (and of decode output)
  uint16_t section_count;   // 10
  uint32_t layers;          // 12
  uint32_t tokens;          // 16
  uint32_t kv_heads;        // 20
  uint32_t head_dim;        // 24
  uint32_t payload_crc32c;  // 28 CRC32C of bytes [64, total_bytes)
  uint64_t total_bytes;     // 32 size of the whole container
  uint8_t params[kContainerParamBytes];  // 40 codec parameters (per codec, see format.md)
  uint32_t header_crc32c;   // 60 CRC32C of bytes [0, 60)
};
struct SectionEntry {
  uint32_t id;       // per-codec section id
  uint32_t flags;    // reserved, 0
  uint64_t offset;   // from container start
  uint64_t length;   // bytes
};
#pragma pack(pop)
static_assert(sizeof(ContainerHeader) == kContainerHeaderBytes, "container header layout is pinned");
static_assert(sizeof(SectionEntry) == 24, "section entry layout is pinned");

// A validated view into container bytes (borrowed; the bytes must outlive it).
struct ContainerView {
  CodecId codec = CodecId::kRaw;
  KvShape shape;
  std::array<uint8_t, kContainerParamBytes> params{};  // copied from the header
  struct Section {
    uint32_t id;
    ConstByteSpan bytes;
  };
  std::vector<Section> sections;
  uint32_t payload_crc32c = 0;

  // The section with `id`, or an error naming it when absent.
  absl::StatusOr<ConstByteSpan> Find(uint32_t id) const;
};

// Validates every header field, the header CRC, the section table and (unless
// verify_payload_crc is false) the payload CRC. Never reads outside `blob`.
absl::StatusOr<ContainerView> ParseContainer(ConstByteSpan blob, bool verify_payload_crc = true);

// Reads only the fixed header after checking magic, version, sizes and header CRC.
absl::StatusOr<ContainerHeader> PeekHeader(ConstByteSpan blob);

// PeekHeader's checks on the header alone: `head` holds at least the first
// kContainerHeaderBytes of a container (the rest may be absent), and total_bytes is
// returned unchecked, for a caller that knows the size from elsewhere.
absl::StatusOr<ContainerHeader> CheckContainerHeader(ConstByteSpan head);

// Writes a container in place. Usage: compute sizes, Layout(), fill each section
// through SectionData(), then Seal() to set the CRCs.
class ContainerWriter {
 public:
  ContainerWriter(CodecId codec, const KvShape& shape);
  // Parameters copied into the header (at most kContainerParamBytes).
  void SetParams(std::span<const uint8_t> params);
  // Declares a section; returns its index.
  size_t AddSection(uint32_t id, uint64_t length);
  // Total container bytes for the declared sections.
  uint64_t TotalBytes() const;
  // Writes header and table into `dst` (TotalBytes() long); returns an error if small.
  absl::Status Layout(ByteSpan dst);
  ByteSpan SectionData(size_t index);
  // Computes the payload and header CRCs. Call after all section bytes are written.
  void Seal();
  // Seal() with the payload CRC (bytes [64, TotalBytes())) computed by the caller, e.g.
  // while the section bytes arrived. Returns the CRC32C of the whole container.
  uint32_t Seal(uint32_t payload_crc32c);

 private:
  ContainerHeader header_{};
  std::vector<SectionEntry> sections_;
  ByteSpan dst_;
};

}  // namespace adaptcache
