// The SSD index's value and key encodings (storage/ssd_index.h).
#include "storage/ssd_index.h"

#include "gtest/gtest.h"

namespace adaptcache {
namespace {

TEST(SsdIndexCodec, LocationRoundTripAndRejectsGarbage) {
  SsdLocation l{3, 17, 8192, 12345, 0xabcdef01, 2, 1ull << 40};
  std::string v = SsdIndex::EncodeLocation(l);
  SsdLocation o;
  ASSERT_TRUE(SsdIndex::DecodeLocation(v, &o));
  EXPECT_EQ(o.slot, 3u);
  EXPECT_EQ(o.segment_id, 17u);
  EXPECT_EQ(o.offset, 8192u);
  EXPECT_EQ(o.payload_bytes, 12345u);
  EXPECT_EQ(o.payload_crc32c, 0xabcdef01u);
  EXPECT_EQ(o.codec, 2);
  EXPECT_EQ(o.seq, 1ull << 40);
  EXPECT_FALSE(SsdIndex::DecodeLocation(v.substr(1), &o));
  v[0] = 9;
  EXPECT_FALSE(SsdIndex::DecodeLocation(v, &o));
  // Keys sort by namespace first.
  EXPECT_LT(SsdIndex::EncodeKey(EntryKey{1, Key128{~0ull, ~0ull}}), SsdIndex::EncodeKey(EntryKey{2, Key128{0, 0}}));
}

}  // namespace
}  // namespace adaptcache
