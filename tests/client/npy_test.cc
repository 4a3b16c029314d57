#include "client/npy.h"

#include <cstring>
#include <string>

#include <gtest/gtest.h>

namespace adaptcache::client {
namespace {

std::vector<std::byte> Bytes(const std::string& s) {
  std::vector<std::byte> v(s.size());
  if (!s.empty()) std::memcpy(v.data(), s.data(), s.size());
  return v;
}

// A file laid out exactly as numpy.save writes it (version 1.0, 64-byte aligned).
std::string NumpyFile(const std::string& dict, const std::string& data, char major = 1) {
  std::string h = dict;
  const size_t prefix = major == 1 ? 10 : 12;
  while ((prefix + h.size() + 1) % 64 != 0) h += ' ';
  h += '\n';
  std::string out = "\x93NUMPY";
  out += major;
  out += '\0';
  if (major == 1) {
    out += static_cast<char>(h.size() & 0xff);
    out += static_cast<char>(h.size() >> 8);
  } else {
    for (int i = 0; i < 4; ++i) out += static_cast<char>((h.size() >> (8 * i)) & 0xff);
  }
  return out + h + data;
}

std::string Int32s(std::initializer_list<int32_t> v) {
  std::string s(v.size() * 4, '\0');
  size_t i = 0;
  for (int32_t x : v) std::memcpy(&s[4 * i++], &x, 4);
  return s;
}

TEST(NpyTest, ParsesNumpyWrittenFile) {
  auto f = Bytes(NumpyFile("{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }", Int32s({0, 1, 2, 3, 4, 5})));
  auto t = ParseNpy(f);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->type, ElemType::kI32);
  EXPECT_EQ(t->shape, (std::vector<uint64_t>{2, 3}));
  int32_t last;
  std::memcpy(&last, t->data.data() + 20, 4);
  EXPECT_EQ(last, 5);
}

TEST(NpyTest, ParsesVersion2AndOneDimAndScalar) {
  auto v2 = ParseNpy(Bytes(NumpyFile("{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", Int32s({7, 8, 9}), 2)));
  ASSERT_TRUE(v2.ok()) << v2.status();
  EXPECT_EQ(v2->shape, (std::vector<uint64_t>{3}));
  auto scalar = ParseNpy(Bytes(NumpyFile("{'descr': '<i4', 'fortran_order': False, 'shape': (), }", Int32s({42}))));
  ASSERT_TRUE(scalar.ok()) << scalar.status();
  EXPECT_TRUE(scalar->shape.empty());
  EXPECT_EQ(scalar->Elements(), 1u);
}

TEST(NpyTest, RoundTripsEveryType) {
  for (ElemType type : {ElemType::kF16, ElemType::kF32, ElemType::kF64, ElemType::kI8, ElemType::kI16, ElemType::kI32,
                        ElemType::kI64, ElemType::kU8, ElemType::kU16, ElemType::kU32, ElemType::kU64}) {
    HostTensor t;
    t.type = type;
    t.shape = {2, 1, 3, 2, 4};
    t.data.resize(t.Elements() * ElemSize(type));
    for (size_t i = 0; i < t.data.size(); ++i) t.data[i] = std::byte(static_cast<uint8_t>(i * 7 + 3));
    auto enc = EncodeNpy(t);
    ASSERT_TRUE(enc.ok()) << enc.status();
    const size_t header_end = 10 + (static_cast<uint8_t>((*enc)[8]) | (static_cast<uint8_t>((*enc)[9]) << 8));
    EXPECT_EQ(header_end % 64, 0u) << "data must start 64-byte aligned";
    auto back = ParseNpy(*enc);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->type, type);
    EXPECT_EQ(back->shape, t.shape);
    EXPECT_EQ(back->data, t.data);
  }
}

TEST(NpyTest, RefusesBf16OnWrite) {
  HostTensor t;
  t.type = ElemType::kBF16;
  t.shape = {1};
  t.data.resize(2);
  EXPECT_EQ(EncodeNpy(t).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(NpyTest, RejectsMalformedFiles) {
  const std::string data6 = Int32s({0, 1, 2, 3, 4, 5});
  const std::string good = "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }";
  struct Case {
    const char* what;
    std::string file;
  } cases[] = {
      {"empty", ""},
      {"bad magic", "\x93NUMPX" + NumpyFile(good, data6).substr(6)},
      {"bad version", NumpyFile(good, data6).replace(6, 1, "\x07")},
      {"truncated header", NumpyFile(good, data6).substr(0, 40)},
      {"data too short", NumpyFile(good, data6.substr(0, 20))},
      {"data too long", NumpyFile(good, data6 + "xx")},
      {"fortran order", NumpyFile("{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3), }", data6)},
      {"big endian", NumpyFile("{'descr': '>i4', 'fortran_order': False, 'shape': (2, 3), }", data6)},
      {"structured", NumpyFile("{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (6,), }", data6)},
      {"unknown type", NumpyFile("{'descr': '<c8', 'fortran_order': False, 'shape': (3,), }", data6)},
      {"missing shape", NumpyFile("{'descr': '<i4', 'fortran_order': False, }", data6)},
      {"extra key", NumpyFile("{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), 'x': 1, }", data6)},
      {"repeated key", NumpyFile("{'descr': '<i4', 'descr': '<i4', 'fortran_order': False, 'shape': (6,), }", data6)},
      {"negative dim", NumpyFile("{'descr': '<i4', 'fortran_order': False, 'shape': (-6,), }", data6)},
      {"overflowing shape",
       NumpyFile("{'descr': '<i4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }", data6)},
      {"not a dict", NumpyFile("['descr']", data6)},
      {"unterminated", NumpyFile("{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3", data6)},
  };
  for (const auto& c : cases) {
    auto t = ParseNpy(Bytes(c.file));
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << c.what << ": " << t.status();
  }
}

TEST(NpyTest, HeaderLengthPastEndIsAnError) {
  std::string f = NumpyFile("{'descr': '<i4', 'fortran_order': False, 'shape': (1,), }", Int32s({1}));
  f[8] = '\xff';
  f[9] = '\xff';
  EXPECT_FALSE(ParseNpy(Bytes(f)).ok());
}

}  // namespace
}  // namespace adaptcache::client
