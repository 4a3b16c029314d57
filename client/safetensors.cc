#include "client/safetensors.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <map>
#include <memory>
#include <tuple>

#include "absl/strings/str_cat.h"

namespace adaptcache::client {
namespace {

absl::Status Bad(std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("malformed .safetensors: ", std::string(what)));
}

// Just enough JSON for safetensors headers: objects, arrays, strings, non-negative
// integers, true/false/null. Numbers with fractions or exponents are refused because
// nothing in a valid header needs them.
struct Json {
  enum Kind { kNull, kBool, kInt, kString, kArray, kObject } kind = kNull;
  bool b = false;
  uint64_t i = 0;
  std::string s;
  std::vector<Json> items;
  std::vector<std::pair<std::string, Json>> members;
};

class JsonParser {
 public:
  explicit JsonParser(std::string_view s) : s_(s) {}

  absl::StatusOr<Json> ParseDocument() {
    auto v = Value(0);
    if (!v.ok()) return v.status();
    SkipSpace();
    if (pos_ != s_.size()) return Bad("trailing characters after the JSON header");
    return v;
  }

 private:
  static constexpr int kMaxDepth = 8;

  void SkipSpace() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) {
      ++pos_;
    }
  }
  bool Peek(char c) {
    SkipSpace();
    return pos_ < s_.size() && s_[pos_] == c;
  }

  absl::StatusOr<Json> Value(int depth) {
    if (depth > kMaxDepth) return Bad("JSON nested too deeply");
    SkipSpace();
    if (pos_ >= s_.size()) return Bad("unexpected end of JSON");
    const char c = s_[pos_];
    Json v;
    if (c == '{') {
      ++pos_;
      v.kind = Json::kObject;
      if (Peek('}')) {
        ++pos_;
        return v;
      }
      while (true) {
        SkipSpace();
        auto key = String();
        if (!key.ok()) return key.status();
        if (!Peek(':')) return Bad("expected ':' in object");
        ++pos_;
        auto val = Value(depth + 1);
        if (!val.ok()) return val.status();
        v.members.emplace_back(std::move(*key), std::move(*val));
        if (Peek(',')) {
          ++pos_;
          continue;
        }
        if (Peek('}')) {
          ++pos_;
          return v;
        }
        return Bad("expected ',' or '}' in object");
      }
    }
    if (c == '[') {
      ++pos_;
      v.kind = Json::kArray;
      if (Peek(']')) {
        ++pos_;
        return v;
      }
      while (true) {
        auto val = Value(depth + 1);
        if (!val.ok()) return val.status();
        v.items.push_back(std::move(*val));
        if (Peek(',')) {
          ++pos_;
          continue;
        }
        if (Peek(']')) {
          ++pos_;
          return v;
        }
        return Bad("expected ',' or ']' in array");
      }
    }
    if (c == '"') {
      auto str = String();
      if (!str.ok()) return str.status();
      v.kind = Json::kString;
      v.s = std::move(*str);
      return v;
    }
    if (c >= '0' && c <= '9') {
      v.kind = Json::kInt;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
        if (v.i > (UINT64_MAX - 9) / 10) return Bad("integer too large");
        v.i = v.i * 10 + static_cast<uint64_t>(s_[pos_++] - '0');
      }
      if (pos_ < s_.size() && (s_[pos_] == '.' || s_[pos_] == 'e' || s_[pos_] == 'E')) {
        return Bad("only integers are allowed in the header");
      }
      return v;
    }
    for (auto [word, kind, bval] : {std::tuple{"true", Json::kBool, true},
                                    std::tuple{"false", Json::kBool, false},
                                    std::tuple{"null", Json::kNull, false}}) {
      const size_t n = std::strlen(word);
      if (s_.substr(pos_, n) == word) {
        pos_ += n;
        v.kind = kind;
        v.b = bval;
        return v;
      }
    }
    return Bad(absl::StrCat("unexpected character '", std::string(1, c), "' in JSON"));
  }

  static void AppendUtf8(std::string* out, uint32_t cp) {
    if (cp < 0x80) {
      *out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      *out += static_cast<char>(0xC0 | (cp >> 6));
      *out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      *out += static_cast<char>(0xE0 | (cp >> 12));
      *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      *out += static_cast<char>(0xF0 | (cp >> 18));
      *out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  absl::StatusOr<uint32_t> Hex4() {
    if (s_.size() - pos_ < 4) return Bad("truncated \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      const char h = s_[pos_++];
      v <<= 4;
      if (h >= '0' && h <= '9') v |= static_cast<uint32_t>(h - '0');
      else if (h >= 'a' && h <= 'f') v |= static_cast<uint32_t>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') v |= static_cast<uint32_t>(h - 'A' + 10);
      else return Bad("bad \\u escape");
    }
    return v;
  }

  absl::StatusOr<std::string> String() {
    if (pos_ >= s_.size() || s_[pos_] != '"') return Bad("expected a string");
    ++pos_;
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) return Bad("unterminated string");
      const char c = s_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) return Bad("control character in string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= s_.size()) return Bad("unterminated escape");
      const char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          auto cp = Hex4();
          if (!cp.ok()) return cp.status();
          uint32_t code = *cp;
          if (code >= 0xD800 && code < 0xDC00) {
            if (s_.substr(pos_, 2) != "\\u") return Bad("lone surrogate in string");
            pos_ += 2;
            auto lo = Hex4();
            if (!lo.ok()) return lo.status();
            if (*lo < 0xDC00 || *lo >= 0xE000) return Bad("bad surrogate pair");
            code = 0x10000 + ((code - 0xD800) << 10) + (*lo - 0xDC00);
          } else if (code >= 0xDC00 && code < 0xE000) {
            return Bad("lone surrogate in string");
          }
          AppendUtf8(&out, code);
          break;
        }
        default:
          return Bad("bad escape in string");
      }
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
};

absl::StatusOr<ElemType> ParseDType(const std::string& d) {
  static const std::map<std::string, ElemType> kTypes = {
      {"F16", ElemType::kF16}, {"BF16", ElemType::kBF16}, {"F32", ElemType::kF32},
      {"F64", ElemType::kF64}, {"I8", ElemType::kI8},     {"I16", ElemType::kI16},
      {"I32", ElemType::kI32}, {"I64", ElemType::kI64},   {"U8", ElemType::kU8},
      {"U16", ElemType::kU16}, {"U32", ElemType::kU32},   {"U64", ElemType::kU64}};
  auto it = kTypes.find(d);
  if (it == kTypes.end()) {
    return absl::InvalidArgumentError(absl::StrCat(".safetensors dtype '", d, "' is not supported"));
  }
  return it->second;
}

std::string DTypeString(ElemType t) {
  std::string s(ElemTypeName(t));
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;  // "F16", "BF16", ..., "U64"
}

void AppendJsonString(std::string* out, const std::string& s) {
  *out += '"';
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      *out += '\\';
      *out += static_cast<char>(c);
    } else if (c < 0x20) {
      absl::StrAppend(out, "\\u00", absl::Hex(c, absl::kZeroPad2));
    } else {
      *out += static_cast<char>(c);
    }
  }
  *out += '"';
}

}  // namespace

absl::StatusOr<const HostTensor*> SafetensorsFile::Find(const std::string& name) const {
  if (name.empty()) {
    if (tensors.size() != 1) {
      std::string names;
      for (const auto& t : tensors) absl::StrAppend(&names, names.empty() ? "" : ", ", t.name);
      return absl::InvalidArgumentError(absl::StrCat(
          "file holds ", tensors.size(), " tensors (", names, "); name one with --tensor-name"));
    }
    return &tensors[0].tensor;
  }
  for (const auto& t : tensors) {
    if (t.name == name) return &t.tensor;
  }
  return absl::NotFoundError(absl::StrCat("no tensor named '", name, "' in the file"));
}

absl::StatusOr<SafetensorsFile> ParseSafetensors(std::span<const std::byte> file) {
  if (file.size() < 8) return Bad("shorter than the 8-byte header length");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t{static_cast<uint8_t>(file[i])} << (8 * i);
  if (n > kMaxSafetensorsHeaderBytes) return Bad("header longer than 100 MB");
  if (n > file.size() - 8) return Bad("header runs past end of file");
  std::string_view header(reinterpret_cast<const char*>(file.data()) + 8, n);
  auto doc = JsonParser(header).ParseDocument();
  if (!doc.ok()) return doc.status();
  if (doc->kind != Json::kObject) return Bad("header is not a JSON object");
  const std::span<const std::byte> buffer = file.subspan(8 + n);

  SafetensorsFile out;
  struct Range {
    uint64_t begin, end;
    size_t index;
  };
  std::vector<Range> ranges;
  for (auto& [name, val] : doc->members) {
    for (const auto& t : out.tensors) {
      if (t.name == name) return Bad(absl::StrCat("duplicate tensor '", name, "'"));
    }
    if (name == "__metadata__") {
      if (!out.metadata.empty()) return Bad("duplicate __metadata__");
      if (val.kind != Json::kObject) return Bad("__metadata__ must be an object");
      for (auto& [k, mv] : val.members) {
        if (mv.kind != Json::kString) return Bad("__metadata__ values must be strings");
        out.metadata.emplace_back(k, mv.s);
      }
      continue;
    }
    if (val.kind != Json::kObject) return Bad(absl::StrCat("entry '", name, "' is not an object"));
    const Json* dtype = nullptr;
    const Json* shape = nullptr;
    const Json* offsets = nullptr;
    for (auto& [k, mv] : val.members) {
      const Json** slot = k == "dtype" ? &dtype : k == "shape" ? &shape : k == "data_offsets" ? &offsets : nullptr;
      if (slot == nullptr) return Bad(absl::StrCat("tensor '", name, "' has unknown field '", k, "'"));
      if (*slot != nullptr) return Bad(absl::StrCat("tensor '", name, "' repeats '", k, "'"));
      *slot = &mv;
    }
    if (!dtype || !shape || !offsets || dtype->kind != Json::kString || shape->kind != Json::kArray ||
        offsets->kind != Json::kArray || offsets->items.size() != 2) {
      return Bad(absl::StrCat("tensor '", name, "' needs dtype, shape and data_offsets [begin, end]"));
    }
    auto type = ParseDType(dtype->s);
    if (!type.ok()) return type.status();
    NamedTensor t{name, {}};
    t.tensor.type = *type;
    for (const auto& d : shape->items) {
      if (d.kind != Json::kInt) return Bad(absl::StrCat("tensor '", name, "' shape entries must be integers"));
      t.tensor.shape.push_back(d.i);
    }
    auto elems = CheckedElements(t.tensor.shape, ElemSize(*type));
    if (!elems.ok()) return elems.status();
    const Json& b = offsets->items[0];
    const Json& e = offsets->items[1];
    if (b.kind != Json::kInt || e.kind != Json::kInt || b.i > e.i || e.i > buffer.size()) {
      return Bad(absl::StrCat("tensor '", name, "' data_offsets lie outside the data buffer"));
    }
    if (e.i - b.i != *elems * ElemSize(*type)) {
      return Bad(absl::StrCat("tensor '", name, "' holds ", e.i - b.i, " bytes, shape needs ",
                              *elems * ElemSize(*type)));
    }
    ranges.push_back({b.i, e.i, out.tensors.size()});
    out.tensors.push_back(std::move(t));
  }
  std::sort(ranges.begin(), ranges.end(), [](const Range& x, const Range& y) {
    return x.begin != y.begin ? x.begin < y.begin : x.end < y.end;
  });
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].begin < ranges[i - 1].end) return Bad("tensors overlap in the data buffer");
  }
  std::vector<NamedTensor> ordered;
  ordered.reserve(ranges.size());
  for (const auto& r : ranges) {
    NamedTensor& t = out.tensors[r.index];
    t.tensor.data.assign(buffer.begin() + static_cast<ptrdiff_t>(r.begin),
                         buffer.begin() + static_cast<ptrdiff_t>(r.end));
    ordered.push_back(std::move(t));
  }
  out.tensors = std::move(ordered);
  return out;
}

absl::StatusOr<SafetensorsFile> ReadSafetensors(const std::string& path) {
  auto bytes = ReadFileBytes(path);
  if (!bytes.ok()) return bytes.status();
  auto f = ParseSafetensors(*bytes);
  if (!f.ok()) return absl::Status(f.status().code(), absl::StrCat(path, ": ", f.status().message()));
  return f;
}

absl::StatusOr<std::vector<std::byte>> EncodeSafetensors(const SafetensorsFile& f) {
  std::string header = "{";
  bool first = true;
  if (!f.metadata.empty()) {
    header += "\"__metadata__\":{";
    for (size_t i = 0; i < f.metadata.size(); ++i) {
      if (i) header += ',';
      AppendJsonString(&header, f.metadata[i].first);
      header += ':';
      AppendJsonString(&header, f.metadata[i].second);
    }
    header += '}';
    first = false;
  }
  uint64_t offset = 0;
  for (const auto& t : f.tensors) {
    if (t.name.empty() || t.name == "__metadata__") return absl::InvalidArgumentError("bad tensor name");
    auto n = CheckedElements(t.tensor.shape, ElemSize(t.tensor.type));
    if (!n.ok()) return n.status();
    if (t.tensor.data.size() != *n * ElemSize(t.tensor.type)) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", t.name, "' data does not match its shape"));
    }
    if (!first) header += ',';
    first = false;
    AppendJsonString(&header, t.name);
    absl::StrAppend(&header, ":{\"dtype\":\"", DTypeString(t.tensor.type), "\",\"shape\":[");
    for (size_t i = 0; i < t.tensor.shape.size(); ++i) absl::StrAppend(&header, i ? "," : "", t.tensor.shape[i]);
    absl::StrAppend(&header, "],\"data_offsets\":[", offset, ",", offset + t.tensor.data.size(), "]}");
    offset += t.tensor.data.size();
  }
  header += '}';
  header.append((8 - header.size() % 8) % 8, ' ');  // data starts 8-byte aligned
  std::vector<std::byte> out(8 + header.size() + offset);
  const uint64_t hn = header.size();
  for (int i = 0; i < 8; ++i) out[i] = std::byte{static_cast<uint8_t>(hn >> (8 * i))};
  std::memcpy(out.data() + 8, header.data(), header.size());
  size_t pos = 8 + header.size();
  for (const auto& t : f.tensors) {
    if (!t.tensor.data.empty()) std::memcpy(out.data() + pos, t.tensor.data.data(), t.tensor.data.size());
    pos += t.tensor.data.size();
  }
  return out;
}

absl::Status WriteSafetensors(const std::string& path, const SafetensorsFile& f) {
  auto bytes = EncodeSafetensors(f);
  if (!bytes.ok()) return bytes.status();
  return WriteFileBytes(path, bytes->data(), bytes->size());
}

}  // namespace adaptcache::client
