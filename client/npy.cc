#include "client/npy.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace adaptcache::client {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;

absl::Status Bad(std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("malformed .npy: ", std::string(what)));
}

// A cursor over the header's Python dict literal.
class DictParser {
 public:
  explicit DictParser(std::string_view s) : s_(s) {}

  void SkipSpace() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n')) ++pos_;
  }
  bool Consume(char c) {
    SkipSpace();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool AtEnd() {
    SkipSpace();
    return pos_ == s_.size();
  }
  absl::StatusOr<std::string> String() {
    SkipSpace();
    if (pos_ >= s_.size() || (s_[pos_] != '\'' && s_[pos_] != '"')) return Bad("expected a string");
    const char q = s_[pos_++];
    const size_t start = pos_;
    while (pos_ < s_.size() && s_[pos_] != q) {
      if (s_[pos_] == '\\') return Bad("escapes are not supported in header strings");
      ++pos_;
    }
    if (pos_ >= s_.size()) return Bad("unterminated string");
    return std::string(s_.substr(start, pos_++ - start));
  }
  absl::StatusOr<bool> Bool() {
    SkipSpace();
    if (s_.substr(pos_, 4) == "True") {
      pos_ += 4;
      return true;
    }
    if (s_.substr(pos_, 5) == "False") {
      pos_ += 5;
      return false;
    }
    return Bad("expected True or False");
  }
  absl::StatusOr<std::vector<uint64_t>> Tuple() {
    if (!Consume('(')) return Bad("shape must be a tuple");
    std::vector<uint64_t> dims;
    while (!Consume(')')) {
      SkipSpace();
      if (pos_ >= s_.size() || s_[pos_] < '0' || s_[pos_] > '9') return Bad("shape entries must be integers");
      uint64_t v = 0;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
        if (v > (kMaxTensorFileBytes / 10)) return Bad("shape entry too large");
        v = v * 10 + static_cast<uint64_t>(s_[pos_++] - '0');
      }
      SkipSpace();
      if (pos_ < s_.size() && s_[pos_] == 'L') ++pos_;  // Python 2 longs
      dims.push_back(v);
      if (dims.size() > kMaxRank) return Bad("too many dimensions");
      if (!Consume(',')) {
        if (!Consume(')')) return Bad("expected ',' or ')' in shape");
        break;
      }
    }
    return dims;
  }

 private:
  std::string_view s_;
  size_t pos_ = 0;
};

absl::StatusOr<ElemType> ParseDescr(const std::string& d) {
  if (d.size() < 3) return Bad(absl::StrCat("unsupported dtype '", d, "'"));
  const char order = d[0];
  const std::string code = d.substr(1);
  const bool one_byte = code == "u1" || code == "i1" || code == "b1";
  if (order == '>' && !one_byte) {
    return absl::InvalidArgumentError(
        absl::StrCat(".npy dtype '", d, "' is big-endian; convert it to little-endian ('<')"));
  }
  if (order != '<' && order != '|' && order != '=' && order != '>') {
    return Bad(absl::StrCat("bad byte order in dtype '", d, "'"));
  }
  if (code == "f2") return ElemType::kF16;
  if (code == "f4") return ElemType::kF32;
  if (code == "f8") return ElemType::kF64;
  if (code == "i1") return ElemType::kI8;
  if (code == "i2") return ElemType::kI16;
  if (code == "i4") return ElemType::kI32;
  if (code == "i8") return ElemType::kI64;
  if (code == "u1") return ElemType::kU8;
  if (code == "u2") return ElemType::kU16;
  if (code == "u4") return ElemType::kU32;
  if (code == "u8") return ElemType::kU64;
  return absl::InvalidArgumentError(absl::StrCat(
      ".npy dtype '", d, "' is not supported (floats f2/f4/f8 and integers only; store bfloat16 "
      "in .safetensors)"));
}

std::string Descr(ElemType t) {
  switch (t) {
    case ElemType::kF16: return "<f2";
    case ElemType::kF32: return "<f4";
    case ElemType::kF64: return "<f8";
    case ElemType::kI8: return "|i1";
    case ElemType::kI16: return "<i2";
    case ElemType::kI32: return "<i4";
    case ElemType::kI64: return "<i8";
    case ElemType::kU8: return "|u1";
    case ElemType::kU16: return "<u2";
    case ElemType::kU32: return "<u4";
    case ElemType::kU64: return "<u8";
    case ElemType::kBF16: return "";
  }
  return "";
}

}  // namespace

absl::StatusOr<HostTensor> ParseNpy(std::span<const std::byte> file) {
  if (file.size() < kMagicLen + 4 || std::memcmp(file.data(), kMagic, kMagicLen) != 0) {
    return Bad("missing \\x93NUMPY magic");
  }
  const auto major = static_cast<uint8_t>(file[6]);
  size_t header_len = 0;
  size_t prefix = 0;
  if (major == 1) {
    header_len = static_cast<uint8_t>(file[8]) | (size_t{static_cast<uint8_t>(file[9])} << 8);
    prefix = 10;
  } else if (major == 2 || major == 3) {
    if (file.size() < 12) return Bad("truncated preamble");
    for (int i = 0; i < 4; ++i) header_len |= size_t{static_cast<uint8_t>(file[8 + i])} << (8 * i);
    prefix = 12;
  } else {
    return Bad(absl::StrCat("unsupported format version ", major));
  }
  if (header_len > kMaxNpyHeaderBytes) return Bad("header too long");
  if (header_len > file.size() - prefix) return Bad("header runs past end of file");
  std::string_view header(reinterpret_cast<const char*>(file.data()) + prefix, header_len);

  DictParser p(header);
  if (!p.Consume('{')) return Bad("header is not a dict");
  std::string descr;
  bool have_descr = false, have_order = false, have_shape = false, fortran = false;
  std::vector<uint64_t> shape;
  while (!p.Consume('}')) {
    auto key = p.String();
    if (!key.ok()) return key.status();
    if (!p.Consume(':')) return Bad("expected ':' after key");
    if (*key == "descr" && !have_descr) {
      auto v = p.String();
      if (!v.ok()) return Bad("descr must be a string (structured dtypes are not supported)");
      descr = *v;
      have_descr = true;
    } else if (*key == "fortran_order" && !have_order) {
      auto v = p.Bool();
      if (!v.ok()) return v.status();
      fortran = *v;
      have_order = true;
    } else if (*key == "shape" && !have_shape) {
      auto v = p.Tuple();
      if (!v.ok()) return v.status();
      shape = std::move(*v);
      have_shape = true;
    } else {
      return Bad(absl::StrCat("unexpected or repeated header key '", *key, "'"));
    }
    if (!p.Consume(',')) {
      if (!p.Consume('}')) return Bad("expected ',' or '}' in header");
      break;
    }
  }
  if (!p.AtEnd()) return Bad("trailing bytes after header dict");
  if (!have_descr || !have_order || !have_shape) return Bad("header lacks descr, fortran_order or shape");
  if (fortran) {
    return absl::InvalidArgumentError(".npy is in Fortran order; save it in C order (np.ascontiguousarray)");
  }
  auto type = ParseDescr(descr);
  if (!type.ok()) return type.status();
  auto n = CheckedElements(shape, ElemSize(*type));
  if (!n.ok()) return n.status();
  const uint64_t data_bytes = *n * ElemSize(*type);
  const size_t data_off = prefix + header_len;
  if (file.size() - data_off != data_bytes) {
    return Bad(absl::StrCat("header describes ", data_bytes, " data bytes, file holds ",
                            file.size() - data_off));
  }
  HostTensor t;
  t.type = *type;
  t.shape = std::move(shape);
  t.data.assign(file.begin() + static_cast<ptrdiff_t>(data_off), file.end());
  return t;
}

absl::StatusOr<HostTensor> ReadNpy(const std::string& path) {
  auto bytes = ReadFileBytes(path);
  if (!bytes.ok()) return bytes.status();
  auto t = ParseNpy(*bytes);
  if (!t.ok()) return absl::Status(t.status().code(), absl::StrCat(path, ": ", t.status().message()));
  return t;
}

absl::StatusOr<std::vector<std::byte>> EncodeNpy(const HostTensor& t) {
  if (t.type == ElemType::kBF16) {
    return absl::InvalidArgumentError(".npy has no bfloat16; widen to f32 or use .safetensors");
  }
  auto n = CheckedElements(t.shape, ElemSize(t.type));
  if (!n.ok()) return n.status();
  if (t.data.size() != *n * ElemSize(t.type)) {
    return absl::InvalidArgumentError("tensor data size does not match its shape");
  }
  std::string dict = absl::StrCat("{'descr': '", Descr(t.type), "', 'fortran_order': False, 'shape': (");
  for (size_t i = 0; i < t.shape.size(); ++i) {
    absl::StrAppend(&dict, t.shape[i], i + 1 < t.shape.size() || t.shape.size() == 1 ? "," : "");
    if (i + 1 < t.shape.size()) dict += ' ';
  }
  dict += "), }";
  // Pad with spaces so the data starts 64-byte aligned; the header ends with '\n'.
  const bool v2 = dict.size() + 1 + 10 > 65535;
  const size_t prefix = v2 ? 12 : 10;
  const size_t total = (prefix + dict.size() + 1 + 63) / 64 * 64;
  dict.append(total - prefix - dict.size() - 1, ' ');
  dict += '\n';
  std::vector<std::byte> out(total + t.data.size());
  std::memcpy(out.data(), kMagic, kMagicLen);
  out[6] = std::byte{static_cast<uint8_t>(v2 ? 2 : 1)};
  out[7] = std::byte{0};
  const size_t hl = dict.size();
  for (size_t i = 0; i < prefix - 8; ++i) out[8 + i] = std::byte{static_cast<uint8_t>(hl >> (8 * i))};
  std::memcpy(out.data() + prefix, dict.data(), dict.size());
  if (!t.data.empty()) std::memcpy(out.data() + total, t.data.data(), t.data.size());
  return out;
}

absl::Status WriteNpy(const std::string& path, const HostTensor& t) {
  auto bytes = EncodeNpy(t);
  if (!bytes.ok()) return bytes.status();
  return WriteFileBytes(path, bytes->data(), bytes->size());
}

}  // namespace adaptcache::client
