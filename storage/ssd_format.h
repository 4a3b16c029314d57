// On-disk layout of the SSD tier's log (docs/ssd_format.md is the spec).
//
// A data directory holds `slot_count` preallocated segment files ("slots") of
// `segment_bytes` each, plus the RocksDB index. A slot holds one segment at a time:
//
//   slot file:  [segment header block 4 KiB][record][record]...[unused tail]
//   record:     [record header block 4 KiB][container bytes][zero pad to 4 KiB]
//
// Every record is 4 KiB aligned so it can be written and read with O_DIRECT, and its
// payload starts 4 KiB aligned so a read can land straight in a caller's aligned buffer.
// A record belongs to the segment whose id and nonce it carries: records left in a slot
// by an earlier segment never validate. All integers little-endian. Any change to these
// structs bumps the matching version. Thread safe (pure functions).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/key.h"

namespace adaptcache {

inline constexpr uint64_t kSsdBlock = 4096;
inline constexpr uint32_t kSegmentMagic = 0x53534341;  // bytes "ACSS"
inline constexpr uint32_t kRecordMagic = 0x52534341;   // bytes "ACSR"
inline constexpr uint16_t kSegmentFormatVersion = 1;
inline constexpr uint16_t kRecordFormatVersion = 2;  // 2 added flags/kRecordReinsertion
inline constexpr uint16_t kRecordFormatVersionMin = 1;
// RecordHeader::flags: the record is a reclaim's copy of the record with sequence
// ReinsertionTrailer::of_seq, valid only while that record is still the key's entry.
inline constexpr uint8_t kRecordReinsertion = 1;

#pragma pack(push, 1)
struct SegmentHeader {
  uint32_t magic;            // 0  kSegmentMagic
  uint16_t version;          // 4  kSegmentFormatVersion
  uint16_t header_bytes;     // 6  sizeof(SegmentHeader)
  uint32_t slot;             // 8  slot index this segment was written to
  uint32_t nonce;            // 12 random per segment; every record repeats it
  uint64_t segment_id;       // 16 monotonic across the directory's life (FIFO order)
  uint64_t segment_bytes;    // 24 size of the slot file
  uint64_t created_unix_ns;  // 32 informational
  uint8_t reserved[20];      // 40 zero
  uint32_t header_crc32c;    // 60 CRC32C of bytes [0, 60)
};

struct RecordHeader {
  uint32_t magic;           // 0  kRecordMagic
  uint16_t version;         // 4  kRecordFormatVersion
  uint8_t codec;            // 6  CodecId of the container
  uint8_t flags;            // 7  kRecordReinsertion or 0
  uint64_t ns;              // 8  namespace id
  uint64_t key_lo;          // 16 Key128.lo
  uint64_t key_hi;          // 24 Key128.hi
  uint64_t seq;             // 32 sequence number (unique, increasing per directory)
  uint64_t segment_id;      // 40 must equal the segment header's
  uint32_t payload_bytes;   // 48 container bytes that follow the header block
  uint32_t payload_crc32c;  // 52 CRC32C of those bytes
  uint32_t nonce;           // 56 must equal the segment header's
  uint32_t header_crc32c;   // 60 CRC32C of bytes [0, 60)
};
// Follows the record header (offset 64 of the header block) when flags has kRecordReinsertion.
struct ReinsertionTrailer {
  uint64_t of_seq;          // 0  seq of the record this one copies
  uint32_t reserved;        // 8  zero
  uint32_t crc32c;          // 12 CRC32C of bytes [0, 12)
};
#pragma pack(pop)
static_assert(sizeof(SegmentHeader) == 64, "segment header layout is pinned");
static_assert(sizeof(RecordHeader) == 64, "record header layout is pinned");
static_assert(sizeof(ReinsertionTrailer) == 16, "reinsertion trailer layout is pinned");

inline constexpr uint64_t RoundUpBlock(uint64_t n) {
  return (n + kSsdBlock - 1) / kSsdBlock * kSsdBlock;
}
// Bytes a record with `payload` container bytes occupies in the log.
inline constexpr uint64_t RecordBytes(uint64_t payload) { return kSsdBlock + RoundUpBlock(payload); }

// The file of segment slot `slot` in the data directory: "segment-NNNNN.log". Inline so
// that config probing (server/config_probe.cc) names files without linking the tier.
inline std::string SegmentFileName(uint32_t slot) {
  char name[32];
  std::snprintf(name, sizeof name, "segment-%05u.log", slot);
  return name;
}
// Whether a file name (no directory) has the shape of SegmentFileName's: segment-*.log.
inline bool IsSegmentFileName(std::string_view name) {
  return name.starts_with("segment-") && name.ends_with(".log");
}

// Fills the CRC of a header whose other fields are set.
void SealSegmentHeader(SegmentHeader& h);
void SealRecordHeader(RecordHeader& h);

// Checks magic, version, size and header CRC of the block's leading header. The block
// must be at least 64 bytes.
absl::Status ValidateSegmentHeader(std::span<const std::byte> block, SegmentHeader* out);
absl::Status ValidateRecordHeader(std::span<const std::byte> block, RecordHeader* out);
// The copied record's seq of a reinsertion record (0 for any other record); the block must
// hold the record header and its trailer. DataLoss if the trailer does not validate.
absl::StatusOr<uint64_t> ReinsertionOf(std::span<const std::byte> block, const RecordHeader& h);
void SealReinsertionTrailer(ReinsertionTrailer& t);

}  // namespace adaptcache
