#include "kernels/container.h"

#include <gtest/gtest.h>

#include <vector>

namespace adaptcache {
namespace {

std::vector<std::byte> SmallContainer() {
  ContainerWriter w(CodecId::kRaw, KvShape{1, 2, 1, 8, DType::kFP16});
  w.AddSection(0, 64);
  std::vector<std::byte> b(w.TotalBytes());
  EXPECT_TRUE(w.Layout(ByteSpan(b)).ok());
  for (size_t i = kContainerHeaderBytes; i < b.size(); ++i) b[i] = std::byte(i & 0xff);
  w.Seal();
  return b;
}

TEST(ContainerHeaderTest, ChecksTheHeaderAloneAndReturnsIt) {
  const auto b = SmallContainer();
  const ConstByteSpan head = ConstByteSpan(b).first(kContainerHeaderBytes);
  auto h = CheckContainerHeader(head);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->total_bytes, b.size());
  EXPECT_EQ(h->tokens, 2u);
  // PeekHeader needs the whole container.
  EXPECT_FALSE(PeekHeader(head).ok());
  EXPECT_TRUE(PeekHeader(ConstByteSpan(b)).ok());
}

TEST(ContainerHeaderTest, RejectsShortOrCorruptHeaders) {
  const auto b = SmallContainer();
  EXPECT_FALSE(CheckContainerHeader(ConstByteSpan(b).first(kContainerHeaderBytes - 1)).ok());
  for (size_t i = 0; i < kContainerHeaderBytes; ++i) {
    auto bad = b;
    bad[i] ^= std::byte{0x01};
    EXPECT_FALSE(CheckContainerHeader(ConstByteSpan(bad)).ok()) << "byte " << i;
  }
}

TEST(ContainerHeaderTest, IgnoresThePayload) {
  auto b = SmallContainer();
  b.back() ^= std::byte{0xff};
  EXPECT_TRUE(CheckContainerHeader(ConstByteSpan(b)).ok());
  EXPECT_FALSE(ParseContainer(ConstByteSpan(b)).ok());
}

}  // namespace
}  // namespace adaptcache
