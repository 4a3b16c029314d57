// VerifyContainer: the check that turns a reused or torn shared-memory slot into a miss.
#include <gtest/gtest.h>

#include "client/client.h"
#include "client/kv_files.h"
#include "common/crc32c.h"
#include "kernels/codec.h"

namespace adaptcache::client {
namespace {

struct Fixture {
  KvShape shape{2, 16, 2, 8, DType::kBF16};
  std::vector<std::byte> container;
  EntryInfo info;
  explicit Fixture(uint64_t seed) {
    auto raw = RandomKvBytes(shape, seed);
    container = *EncodeToVector(CodecConfig{}, shape, raw);
    info.tier = Tier::kDram;
    info.codec = "raw";
    info.stored_bytes = container.size();
    info.raw_bytes = shape.Bytes();
    info.shape = shape;
    info.payload_crc32c = Crc32c(container.data(), container.size());
  }
};

TEST(VerifyContainerTest, AcceptsTheEntry) {
  Fixture f(1);
  EXPECT_TRUE(VerifyContainer(f.container, f.info).ok());
}

TEST(VerifyContainerTest, RejectsAnyFlippedByte) {
  Fixture f(2);
  for (size_t i : {size_t{0}, size_t{9}, size_t{40}, size_t{63}, size_t{64}, size_t{100}, f.container.size() - 1}) {
    auto c = f.container;
    c[i] ^= std::byte{0x10};
    EXPECT_FALSE(VerifyContainer(c, f.info).ok()) << "byte " << i;
  }
}

TEST(VerifyContainerTest, RejectsAnotherValidEntryInTheSameSlot) {
  // A lease expired and the extent now holds a different, internally valid container.
  Fixture a(3), b(4);
  ASSERT_EQ(a.container.size(), b.container.size());
  auto st = VerifyContainer(b.container, a.info);
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
}

TEST(VerifyContainerTest, RejectsWrongSizeOrShape) {
  Fixture f(5);
  EntryInfo bigger = f.info;
  bigger.stored_bytes += 8;
  EXPECT_FALSE(VerifyContainer(f.container, bigger).ok());
  EXPECT_FALSE(VerifyContainer(std::span<const std::byte>(f.container).first(f.container.size() - 1), f.info).ok());
  EntryInfo other_shape = f.info;
  other_shape.shape.layers = 4;
  EXPECT_FALSE(VerifyContainer(f.container, other_shape).ok());
}

}  // namespace
}  // namespace adaptcache::client
