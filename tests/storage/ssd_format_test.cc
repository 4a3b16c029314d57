// The SSD log's on-disk headers, record sizes and file names (storage/ssd_format.h).
#include <cstring>

#include "gtest/gtest.h"
#include "storage/ssd_format.h"

namespace adaptcache {
namespace {

TEST(SsdFormat, RecordHeaderRoundTripAndCorruption) {
  RecordHeader h{};
  h.magic = kRecordMagic;
  h.version = kRecordFormatVersion;
  h.ns = 42;
  h.key_lo = 1;
  h.key_hi = 2;
  h.seq = 99;
  h.segment_id = 5;
  h.payload_bytes = 1000;
  h.payload_crc32c = 0xdeadbeef;
  h.nonce = 77;
  SealRecordHeader(h);
  std::byte block[kSsdBlock] = {};
  std::memcpy(block, &h, sizeof h);
  RecordHeader out;
  ASSERT_TRUE(ValidateRecordHeader(block, &out).ok());
  EXPECT_EQ(out.seq, 99u);
  EXPECT_EQ(out.nonce, 77u);
  for (size_t byte = 0; byte < sizeof h; ++byte) {
    block[byte] ^= std::byte{0x10};
    EXPECT_FALSE(ValidateRecordHeader(block, nullptr).ok()) << "flip at byte " << byte;
    block[byte] ^= std::byte{0x10};
  }
  EXPECT_FALSE(ValidateRecordHeader(std::span<const std::byte>(block, 10), nullptr).ok());
}

TEST(SsdFormat, ReinsertionTrailer) {
  RecordHeader h{};
  h.magic = kRecordMagic;
  h.version = kRecordFormatVersion;
  h.seq = 500;
  h.payload_bytes = 10;
  SealRecordHeader(h);
  std::byte block[kSsdBlock] = {};
  std::memcpy(block, &h, sizeof h);
  EXPECT_EQ(*ReinsertionOf(block, h), 0u);  // a plain record
  h.flags = kRecordReinsertion;
  SealRecordHeader(h);
  std::memcpy(block, &h, sizeof h);
  ReinsertionTrailer t{};
  t.of_seq = 123;
  SealReinsertionTrailer(t);
  std::memcpy(block + sizeof h, &t, sizeof t);
  ASSERT_TRUE(ValidateRecordHeader(block, nullptr).ok());
  EXPECT_EQ(*ReinsertionOf(block, h), 123u);
  block[sizeof h + 1] ^= std::byte{1};
  EXPECT_FALSE(ReinsertionOf(block, h).ok());
  block[sizeof h + 1] ^= std::byte{1};
  t.of_seq = 600;  // a copy is always newer than what it copies
  SealReinsertionTrailer(t);
  std::memcpy(block + sizeof h, &t, sizeof t);
  EXPECT_FALSE(ReinsertionOf(block, h).ok());
  // Version 1 records had no flags: one that claims them is not a v1 record.
  h.version = 1;
  SealRecordHeader(h);
  std::memcpy(block, &h, sizeof h);
  EXPECT_FALSE(ValidateRecordHeader(block, nullptr).ok());
  h.flags = 0;
  SealRecordHeader(h);
  std::memcpy(block, &h, sizeof h);
  EXPECT_TRUE(ValidateRecordHeader(block, nullptr).ok());
}

TEST(SsdFormat, SegmentHeaderValidates) {
  SegmentHeader h{};
  h.magic = kSegmentMagic;
  h.version = kSegmentFormatVersion;
  h.header_bytes = sizeof h;
  h.segment_id = 3;
  SealSegmentHeader(h);
  std::byte block[64];
  std::memcpy(block, &h, sizeof h);
  EXPECT_TRUE(ValidateSegmentHeader(block, nullptr).ok());
  block[16] ^= std::byte{1};
  EXPECT_FALSE(ValidateSegmentHeader(block, nullptr).ok());
  std::memset(block, 0, sizeof block);
  EXPECT_FALSE(ValidateSegmentHeader(block, nullptr).ok());
}

TEST(SsdFormat, RecordBytesArePaddedToBlocks) {
  EXPECT_EQ(RecordBytes(1), 2 * kSsdBlock);
  EXPECT_EQ(RecordBytes(kSsdBlock), 2 * kSsdBlock);
  EXPECT_EQ(RecordBytes(kSsdBlock + 1), 3 * kSsdBlock);
  EXPECT_EQ(RecordBytes(1 << 20), (1 << 20) + kSsdBlock);
}

TEST(SsdFormat, SegmentFileNames) {
  EXPECT_EQ(SegmentFileName(0), "segment-00000.log");
  EXPECT_EQ(SegmentFileName(42), "segment-00042.log");
  EXPECT_EQ(SegmentFileName(123456), "segment-123456.log");
  EXPECT_TRUE(IsSegmentFileName(SegmentFileName(7)));
  EXPECT_FALSE(IsSegmentFileName("segment-00007.log.tmp"));
  EXPECT_FALSE(IsSegmentFileName("index"));
  EXPECT_FALSE(IsSegmentFileName("xsegment-00007.log"));
}

}  // namespace
}  // namespace adaptcache
