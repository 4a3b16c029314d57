#include "storage/ssd_format.h"

#include <bit>
#include <cstddef>
#include <cstring>

#include "common/crc32c.h"

namespace adaptcache {

static_assert(std::endian::native == std::endian::little, "on-disk structs are little-endian");

void SealSegmentHeader(SegmentHeader& h) {
  h.header_crc32c = Crc32c(&h, offsetof(SegmentHeader, header_crc32c));
}

void SealRecordHeader(RecordHeader& h) {
  h.header_crc32c = Crc32c(&h, offsetof(RecordHeader, header_crc32c));
}

absl::Status ValidateSegmentHeader(std::span<const std::byte> block, SegmentHeader* out) {
  if (block.size() < sizeof(SegmentHeader)) return absl::InvalidArgumentError("segment header: short block");
  SegmentHeader h;
  std::memcpy(&h, block.data(), sizeof h);
  if (h.magic != kSegmentMagic) return absl::DataLossError("segment header: bad magic");
  if (h.header_crc32c != Crc32c(&h, offsetof(SegmentHeader, header_crc32c)))
    return absl::DataLossError("segment header: bad CRC");
  if (h.version != kSegmentFormatVersion || h.header_bytes != sizeof(SegmentHeader))
    return absl::FailedPreconditionError("segment header: unsupported version");
  if (out) *out = h;
  return absl::OkStatus();
}

absl::Status ValidateRecordHeader(std::span<const std::byte> block, RecordHeader* out) {
  if (block.size() < sizeof(RecordHeader)) return absl::InvalidArgumentError("record header: short block");
  RecordHeader h;
  std::memcpy(&h, block.data(), sizeof h);
  if (h.magic != kRecordMagic) return absl::DataLossError("record header: bad magic");
  if (h.header_crc32c != Crc32c(&h, offsetof(RecordHeader, header_crc32c)))
    return absl::DataLossError("record header: bad CRC");
  if (h.version < kRecordFormatVersionMin || h.version > kRecordFormatVersion ||
      (h.flags & ~kRecordReinsertion) != 0 || (h.version < 2 && h.flags != 0))
    return absl::FailedPreconditionError("record header: unsupported version");
  if (h.payload_bytes == 0) return absl::DataLossError("record header: empty payload");
  if (out) *out = h;
  return absl::OkStatus();
}

void SealReinsertionTrailer(ReinsertionTrailer& t) {
  t.reserved = 0;
  t.crc32c = Crc32c(&t, offsetof(ReinsertionTrailer, crc32c));
}

absl::StatusOr<uint64_t> ReinsertionOf(std::span<const std::byte> block, const RecordHeader& h) {
  if ((h.flags & kRecordReinsertion) == 0) return uint64_t{0};
  if (block.size() < sizeof(RecordHeader) + sizeof(ReinsertionTrailer))
    return absl::InvalidArgumentError("record header: short block");
  ReinsertionTrailer t;
  std::memcpy(&t, block.data() + sizeof(RecordHeader), sizeof t);
  if (t.crc32c != Crc32c(&t, offsetof(ReinsertionTrailer, crc32c)) || t.of_seq == 0 || t.of_seq >= h.seq)
    return absl::DataLossError("record header: bad reinsertion trailer");
  return t.of_seq;
}

}  // namespace adaptcache
