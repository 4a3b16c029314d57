#include "client/safetensors.h"

#include <cstring>
#include <string>

#include <gtest/gtest.h>

namespace adaptcache::client {
namespace {

std::vector<std::byte> File(const std::string& json, const std::string& data) {
  std::string s(8, '\0');
  const uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  s += json + data;
  std::vector<std::byte> v(s.size());
  std::memcpy(v.data(), s.data(), s.size());
  return v;
}

std::vector<std::byte> HeaderPastEnd() {
  auto f = File("{}", "");
  f[0] = std::byte{0xff};
  return f;
}

HostTensor Make(ElemType type, std::vector<uint64_t> shape, uint8_t fill) {
  HostTensor t;
  t.type = type;
  t.shape = std::move(shape);
  t.data.resize(t.Elements() * ElemSize(type));
  for (size_t i = 0; i < t.data.size(); ++i) t.data[i] = std::byte(static_cast<uint8_t>(fill + i));
  return t;
}

TEST(SafetensorsTest, ParsesHandWrittenFile) {
  // As the Python library writes it: tensors in any JSON order, metadata, padding.
  const std::string json =
      R"({"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]},"__metadata__":{"format":"pt"},)"
      R"("a":{"dtype":"BF16","shape":[1,2],"data_offsets":[0,4]}}   )";
  auto f = ParseSafetensors(File(json, std::string("\x01\x02\x03\x04") + std::string(8, '\x05')));
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ(f->tensors.size(), 2u);
  EXPECT_EQ(f->tensors[0].name, "a");  // data-offset order
  EXPECT_EQ(f->tensors[0].tensor.type, ElemType::kBF16);
  EXPECT_EQ(f->tensors[0].tensor.shape, (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(f->tensors[0].tensor.data[3], std::byte{4});
  EXPECT_EQ(f->tensors[1].name, "b");
  EXPECT_EQ(f->tensors[1].tensor.data.size(), 8u);
  ASSERT_EQ(f->metadata.size(), 1u);
  EXPECT_EQ(f->metadata[0].second, "pt");
  EXPECT_FALSE(f->Find("").ok()) << "two tensors: a name is required";
  auto b = f->Find("b");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ((*b)->type, ElemType::kF32);
  EXPECT_EQ(f->Find("c").status().code(), absl::StatusCode::kNotFound);
}

TEST(SafetensorsTest, RoundTripsWithMetadataAndEscapes) {
  SafetensorsFile f;
  f.metadata = {{"model", "llama \"3.1\"\n8B"}};
  f.tensors.push_back({"kv/0", Make(ElemType::kBF16, {2, 3, 4, 1, 8}, 1)});
  f.tensors.push_back({"ids\x01", Make(ElemType::kI64, {5}, 9)});
  f.tensors.push_back({"empty", Make(ElemType::kF16, {0, 4}, 0)});
  auto enc = EncodeSafetensors(f);
  ASSERT_TRUE(enc.ok()) << enc.status();
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t{static_cast<uint8_t>((*enc)[i])} << (8 * i);
  EXPECT_EQ((8 + n) % 8, 0u) << "data starts 8-byte aligned";
  auto back = ParseSafetensors(*enc);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->tensors.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(back->tensors[i].name, f.tensors[i].name);
    EXPECT_EQ(back->tensors[i].tensor.type, f.tensors[i].tensor.type);
    EXPECT_EQ(back->tensors[i].tensor.shape, f.tensors[i].tensor.shape);
    EXPECT_EQ(back->tensors[i].tensor.data, f.tensors[i].tensor.data);
  }
  EXPECT_EQ(back->metadata, f.metadata);
}

TEST(SafetensorsTest, UnicodeEscapes) {
  auto f = ParseSafetensors(File(R"({"\u00e9\ud83d\ude00":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "x"));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->tensors[0].name, "\xc3\xa9\xf0\x9f\x98\x80");
}

TEST(SafetensorsTest, RejectsMalformedFiles) {
  const std::string d8(8, '\0');
  struct Case {
    const char* what;
    std::vector<std::byte> file;
  } cases[] = {
      {"too short", std::vector<std::byte>(5)},
      {"header past end", HeaderPastEnd()},
      {"not json", File("hello", d8)},
      {"not an object", File("[1,2]", d8)},
      {"trailing garbage", File(R"({} x)", d8)},
      {"float in shape", File(R"({"a":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}})", d8)},
      {"negative", File(R"({"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}})", d8)},
      {"unknown dtype", File(R"({"a":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}})", d8)},
      {"offsets past buffer", File(R"({"a":{"dtype":"U8","shape":[9],"data_offsets":[0,9]}})", d8)},
      {"offsets reversed", File(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[4,2]}})", d8)},
      {"size mismatch", File(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", d8)},
      {"overlap", File(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})", d8)},
      {"duplicate", File(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})", d8)},
      {"missing field", File(R"({"a":{"dtype":"U8","shape":[1]}})", d8)},
      {"unknown field", File(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":1}})", d8)},
      {"metadata not strings", File(R"({"__metadata__":{"a":1}})", d8)},
      {"too deep", File(R"({"a":[[[[[[[[[[[[1]]]]]]]]]]]]})", d8)},
      {"lone surrogate", File(R"({"\ud800":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", d8)},
      {"control char", File("{\"a\x01\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", d8)},
      {"unterminated", File(R"({"a":{"dtype":"U8")", d8)},
      {"huge shape", File(R"({"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", d8)},
  };
  for (const auto& c : cases) {
    auto f = ParseSafetensors(c.file);
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << c.what << ": " << f.status();
  }
}

}  // namespace
}  // namespace adaptcache::client
