#include "common/kv_shape.h"

#include <gtest/gtest.h>

namespace adaptcache {
namespace {

TEST(KvShapeTest, BytesAndValidation) {
  KvShape s{32, 256, 8, 128, DType::kBF16};
  EXPECT_EQ(s.Bytes(), 2ull * 32 * 256 * 8 * 128 * 2);  // 32 MiB: Llama-3.1-8B chunk
  EXPECT_TRUE(ValidateShape(s).ok());
  KvShape zero = s;
  zero.layers = 0;
  EXPECT_FALSE(ValidateShape(zero).ok());
  KvShape huge{1024, 65536, 1024, 4096, DType::kFP32};
  EXPECT_FALSE(ValidateShape(huge).ok());
  KvShape big = s;
  big.head_dim = 5000;
  EXPECT_FALSE(ValidateShape(big).ok());
}

TEST(KvShapeTest, DTypeNames) {
  EXPECT_EQ(*DTypeFromName("bf16"), DType::kBF16);
  EXPECT_EQ(*DTypeFromName("float16"), DType::kFP16);
  EXPECT_FALSE(DTypeFromName("int8").ok());
  EXPECT_FALSE(DTypeFromCode(0).ok());
  EXPECT_FALSE(DTypeFromCode(4).ok());
  EXPECT_EQ(DTypeSize(DType::kFP32), 4u);
}

}  // namespace
}  // namespace adaptcache
