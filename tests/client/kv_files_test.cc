#include "client/kv_files.h"

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "client/npy.h"
#include "client/safetensors.h"

namespace adaptcache::client {
namespace {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/ac-client-test-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

TEST(KvFilesTest, ParseDims) {
  EXPECT_EQ(*ParseDims("2,32,256,8,128"), (std::vector<uint64_t>{2, 32, 256, 8, 128}));
  EXPECT_EQ(*ParseDims("[2, 4, 16, 2, 64]"), (std::vector<uint64_t>{2, 4, 16, 2, 64}));
  EXPECT_EQ(*ParseDims("2x4x8"), (std::vector<uint64_t>{2, 4, 8}));
  for (const char* bad : {"", "2,,3", "2,0,3", "a,b", "2;3", "-1,2", "99999999999999999,1"}) {
    EXPECT_FALSE(ParseDims(bad).ok()) << bad;
  }
}

TEST(KvFilesTest, KvShapeFromDims) {
  auto s = KvShapeFromDims(std::vector<uint64_t>{2, 32, 256, 8, 128}, ElemType::kBF16);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(*s, (KvShape{32, 256, 8, 128, DType::kBF16}));
  EXPECT_FALSE(KvShapeFromDims(std::vector<uint64_t>{3, 32, 256, 8, 128}, ElemType::kBF16).ok());
  EXPECT_FALSE(KvShapeFromDims(std::vector<uint64_t>{32, 256, 8, 128}, ElemType::kBF16).ok());
  EXPECT_FALSE(KvShapeFromDims(std::vector<uint64_t>{2, 32, 256, 8, 128}, ElemType::kI32).ok());
  EXPECT_FALSE(KvShapeFromDims(std::vector<uint64_t>{2, 5000, 256, 8, 128}, ElemType::kF16).ok());
}

TEST(KvFilesTest, TokenText) {
  EXPECT_EQ(*ParseTokenText("1 2\n3,4\t 5\r\n"), (std::vector<uint32_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(*ParseTokenText("4294967295"), (std::vector<uint32_t>{4294967295u}));
  EXPECT_FALSE(ParseTokenText("4294967296").ok());
  EXPECT_FALSE(ParseTokenText("1 -2").ok());
  EXPECT_FALSE(ParseTokenText("1 2.5").ok());
  EXPECT_TRUE(ParseTokenText("").ok());
}

TEST(KvFilesTest, TokensFromIntegerTensors) {
  HostTensor t;
  t.type = ElemType::kI64;
  t.shape = {3};
  int64_t v[] = {5, 0, 4294967295};
  t.data.resize(sizeof(v));
  std::memcpy(t.data.data(), v, sizeof(v));
  EXPECT_EQ(*TokensFromTensor(t), (std::vector<uint32_t>{5, 0, 4294967295u}));
  v[1] = -1;
  std::memcpy(t.data.data(), v, sizeof(v));
  EXPECT_FALSE(TokensFromTensor(t).ok());
  v[1] = int64_t{1} << 32;
  std::memcpy(t.data.data(), v, sizeof(v));
  EXPECT_FALSE(TokensFromTensor(t).ok());
  t.type = ElemType::kF64;
  EXPECT_FALSE(TokensFromTensor(t).ok());
  HostTensor small;
  small.type = ElemType::kI16;
  small.shape = {2};
  int16_t s[] = {-3, 7};
  small.data.resize(4);
  std::memcpy(small.data.data(), s, 4);
  EXPECT_FALSE(TokensFromTensor(small).ok()) << "sign extension of narrow ints";
}

TEST(KvFilesTest, TokenFilesTextAndNpy) {
  TempDir dir;
  std::ofstream(dir.File("ids.txt")) << "10 11 12\n13\n";
  EXPECT_EQ(*ReadTokenFile(dir.File("ids.txt")), (std::vector<uint32_t>{10, 11, 12, 13}));
  HostTensor t;
  t.type = ElemType::kI32;
  t.shape = {2, 2};
  int32_t v[] = {1, 2, 3, 4};
  t.data.resize(16);
  std::memcpy(t.data.data(), v, 16);
  ASSERT_TRUE(WriteNpy(dir.File("ids.npy"), t).ok());
  EXPECT_EQ(*ReadTokenFile(dir.File("ids.npy")), (std::vector<uint32_t>{1, 2, 3, 4}));
  std::ofstream(dir.File("empty.txt")) << "\n";
  EXPECT_FALSE(ReadTokenFile(dir.File("empty.txt")).ok());
  EXPECT_EQ(ReadTokenFile(dir.File("missing")).status().code(), absl::StatusCode::kNotFound);
}

TEST(KvFilesTest, HexKeys) {
  std::vector<std::string> ok = {std::string(32, 'a'), Key128{1, 2}.ToHex()};
  auto keys = ParseHexKeys(ok);
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ((*keys)[1], (Key128{1, 2}));
  std::vector<std::string> bad = {"abc"};
  EXPECT_FALSE(ParseHexKeys(bad).ok());
}

TEST(KvFilesTest, SliceAndConcatAreInverse) {
  const KvShape full{3, 10, 2, 4, DType::kFP16};
  auto data = RandomKvBytes(full, 7);
  std::vector<KvShape> shapes;
  std::vector<std::vector<std::byte>> parts;
  for (uint32_t t0 = 0; t0 < full.tokens; t0 += 4) {
    const uint32_t t1 = std::min(full.tokens, t0 + 4);
    KvShape s = full;
    s.tokens = t1 - t0;
    shapes.push_back(s);
    parts.push_back(SliceTokens(full, data, t0, t1));
    ASSERT_EQ(parts.back().size(), s.Bytes());
  }
  // Element (kv=1, layer=2, token=5, head=1, dim=3) lands in chunk 1 at token 1.
  const uint64_t row = 2 * 4;
  const uint64_t src = (((1 * 3 + 2) * 10 + 5) * row + 1 * 4 + 3) * 2;
  const uint64_t dst = (((1 * 3 + 2) * 4 + 1) * row + 1 * 4 + 3) * 2;
  EXPECT_EQ(std::memcmp(data.data() + src, parts[1].data() + dst, 2), 0);
  auto joined = ConcatTokens(shapes, parts);
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_EQ(joined->shape, (std::vector<uint64_t>{2, 3, 10, 2, 4}));
  EXPECT_EQ(joined->type, ElemType::kF16);
  EXPECT_EQ(joined->data, data);
  shapes[1].head_dim = 8;
  EXPECT_FALSE(ConcatTokens(shapes, parts).ok());
}

TEST(KvFilesTest, ConvertFloatRoundTrips) {
  const KvShape s{1, 4, 1, 8, DType::kBF16};
  HostTensor t;
  t.type = ElemType::kBF16;
  t.shape = {2, 1, 4, 1, 8};
  t.data = RandomKvBytes(s, 3);
  auto wide = ConvertFloat(t, ElemType::kF32);
  ASSERT_TRUE(wide.ok());
  auto back = ConvertFloat(*wide, ElemType::kBF16);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->data, t.data) << "bf16 -> f32 -> bf16 is lossless";
  HostTensor ints;
  ints.type = ElemType::kI32;
  EXPECT_FALSE(ConvertFloat(ints, ElemType::kF32).ok());
}

TEST(KvFilesTest, RandomIsDeterministicAndFinite) {
  const KvShape s{2, 16, 2, 8, DType::kFP32};
  EXPECT_EQ(RandomKvBytes(s, 1), RandomKvBytes(s, 1));
  EXPECT_NE(RandomKvBytes(s, 1), RandomKvBytes(s, 2));
  auto v = RandomKvBytes(s, 5);
  for (uint64_t i = 0; i < s.Elements(); ++i) {
    float f;
    std::memcpy(&f, v.data() + 4 * i, 4);
    ASSERT_TRUE(f >= -2.f && f < 2.f) << f;
  }
}

TEST(KvFilesTest, TensorFilesByMagicAndExtension) {
  TempDir dir;
  HostTensor t;
  t.type = ElemType::kBF16;
  t.shape = {2, 1, 3, 1, 4};
  t.data = RandomKvBytes(KvShape{1, 3, 1, 4, DType::kBF16}, 9);
  ASSERT_TRUE(WriteTensorFile(dir.File("kv.safetensors"), t).ok());
  auto st = ReadTensorFile(dir.File("kv.safetensors"));
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->data, t.data);
  EXPECT_EQ(st->type, ElemType::kBF16);
  // .npy has no bf16: widened to f32, which converts back exactly.
  ASSERT_TRUE(WriteTensorFile(dir.File("kv.npy"), t).ok());
  auto np = ReadTensorFile(dir.File("kv.npy"));
  ASSERT_TRUE(np.ok()) << np.status();
  EXPECT_EQ(np->type, ElemType::kF32);
  EXPECT_EQ(ConvertFloat(*np, ElemType::kBF16)->data, t.data);
  // Content decides the format, not the name.
  std::filesystem::copy_file(dir.File("kv.npy"), dir.File("renamed.bin"));
  EXPECT_TRUE(ReadTensorFile(dir.File("renamed.bin")).ok());
  EXPECT_FALSE(WriteTensorFile(dir.File("kv.txt"), t).ok());
  std::ofstream(dir.File("junk.npy")) << "not a tensor";
  EXPECT_EQ(ReadTensorFile(dir.File("junk.npy")).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(ReadTensorFile(dir.File("kv.npy"), "name").ok()) << "--tensor-name is for safetensors";
}

}  // namespace
}  // namespace adaptcache::client
