#include "policy/json.h"

#include <charconv>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace adaptcache::policy {
namespace {

constexpr int kMaxDepth = 64;
constexpr size_t kMaxInput = 16u << 20;

class Parser {
 public:
  explicit Parser(std::string_view t) : t_(t) {}

  absl::Status Error(std::string_view what) const {
    int line = 1, col = 1;
    for (size_t i = 0; i < pos_ && i < t_.size(); ++i) {
      if (t_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    return absl::InvalidArgumentError(
        absl::StrCat("JSON error at line ", line, " column ", col, ": ", std::string(what)));
  }

  void SkipWs() {
    while (pos_ < t_.size() && (t_[pos_] == ' ' || t_[pos_] == '\t' || t_[pos_] == '\n' || t_[pos_] == '\r')) {
      ++pos_;
    }
  }

  bool AtEnd() const { return pos_ >= t_.size(); }

  absl::Status Value(JsonValue* v, int depth) {
    if (depth > kMaxDepth) return Error("nesting too deep");
    SkipWs();
    if (AtEnd()) return Error("unexpected end of input");
    const char c = t_[pos_];
    if (c == '{') return Object(v, depth);
    if (c == '[') return Array(v, depth);
    if (c == '"') {
      v->type = JsonValue::Type::kString;
      return String(&v->string);
    }
    if (c == '-' || (c >= '0' && c <= '9')) return Number(v);
    if (Literal("true")) {
      v->type = JsonValue::Type::kBool;
      v->boolean = true;
      return absl::OkStatus();
    }
    if (Literal("false")) {
      v->type = JsonValue::Type::kBool;
      return absl::OkStatus();
    }
    if (Literal("null")) {
      v->type = JsonValue::Type::kNull;
      return absl::OkStatus();
    }
    return Error(absl::StrCat("unexpected character '", std::string(1, c), "'"));
  }

 private:
  bool Literal(std::string_view lit) {
    if (t_.substr(pos_, lit.size()) != lit) return false;
    pos_ += lit.size();
    return true;
  }

  absl::Status Object(JsonValue* v, int depth) {
    v->type = JsonValue::Type::kObject;
    ++pos_;
    SkipWs();
    if (!AtEnd() && t_[pos_] == '}') {
      ++pos_;
      return absl::OkStatus();
    }
    for (;;) {
      SkipWs();
      if (AtEnd() || t_[pos_] != '"') return Error("expected a string key");
      std::string key;
      if (auto s = String(&key); !s.ok()) return s;
      if (v->Find(key) != nullptr) return Error(absl::StrCat("duplicate key \"", key, "\""));
      SkipWs();
      if (AtEnd() || t_[pos_] != ':') return Error("expected ':'");
      ++pos_;
      JsonValue item;
      if (auto s = Value(&item, depth + 1); !s.ok()) return s;
      v->keys.push_back(std::move(key));
      v->items.push_back(std::move(item));
      SkipWs();
      if (AtEnd()) return Error("unterminated object");
      if (t_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (t_[pos_] == '}') {
        ++pos_;
        return absl::OkStatus();
      }
      return Error("expected ',' or '}'");
    }
  }

  absl::Status Array(JsonValue* v, int depth) {
    v->type = JsonValue::Type::kArray;
    ++pos_;
    SkipWs();
    if (!AtEnd() && t_[pos_] == ']') {
      ++pos_;
      return absl::OkStatus();
    }
    for (;;) {
      JsonValue item;
      if (auto s = Value(&item, depth + 1); !s.ok()) return s;
      v->items.push_back(std::move(item));
      SkipWs();
      if (AtEnd()) return Error("unterminated array");
      if (t_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (t_[pos_] == ']') {
        ++pos_;
        return absl::OkStatus();
      }
      return Error("expected ',' or ']'");
    }
  }

  static void AppendUtf8(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  bool Hex4(uint32_t* out) {
    if (pos_ + 4 > t_.size()) return false;
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = t_[pos_ + i];
      v <<= 4;
      if (c >= '0' && c <= '9') {
        v |= c - '0';
      } else if (c >= 'a' && c <= 'f') {
        v |= c - 'a' + 10;
      } else if (c >= 'A' && c <= 'F') {
        v |= c - 'A' + 10;
      } else {
        return false;
      }
    }
    pos_ += 4;
    *out = v;
    return true;
  }

  absl::Status String(std::string* out) {
    ++pos_;  // opening quote
    for (;;) {
      if (AtEnd()) return Error("unterminated string");
      const unsigned char c = static_cast<unsigned char>(t_[pos_]);
      if (c == '"') {
        ++pos_;
        return absl::OkStatus();
      }
      if (c < 0x20) return Error("control character in string");
      if (c != '\\') {
        out->push_back(static_cast<char>(c));
        ++pos_;
        continue;
      }
      ++pos_;
      if (AtEnd()) return Error("unterminated escape");
      const char e = t_[pos_++];
      switch (e) {
        case '"': out->push_back('"'); break;
        case '\\': out->push_back('\\'); break;
        case '/': out->push_back('/'); break;
        case 'b': out->push_back('\b'); break;
        case 'f': out->push_back('\f'); break;
        case 'n': out->push_back('\n'); break;
        case 'r': out->push_back('\r'); break;
        case 't': out->push_back('\t'); break;
        case 'u': {
          uint32_t cp;
          if (!Hex4(&cp)) return Error("bad \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            uint32_t lo;
            if (!Literal("\\u") || !Hex4(&lo) || lo < 0xDC00 || lo > 0xDFFF) {
              return Error("unpaired surrogate in \\u escape");
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return Error("unpaired surrogate in \\u escape");
          }
          AppendUtf8(cp, out);
          break;
        }
        default:
          return Error("bad escape");
      }
    }
  }

  absl::Status Number(JsonValue* v) {
    const size_t start = pos_;
    auto digit = [&] { return !AtEnd() && t_[pos_] >= '0' && t_[pos_] <= '9'; };
    if (t_[pos_] == '-') ++pos_;
    if (!digit()) return Error("bad number");
    if (t_[pos_] == '0') {
      ++pos_;
    } else {
      while (digit()) ++pos_;
    }
    if (!AtEnd() && t_[pos_] == '.') {
      ++pos_;
      if (!digit()) return Error("bad number: digits expected after '.'");
      while (digit()) ++pos_;
    }
    if (!AtEnd() && (t_[pos_] == 'e' || t_[pos_] == 'E')) {
      ++pos_;
      if (!AtEnd() && (t_[pos_] == '+' || t_[pos_] == '-')) ++pos_;
      if (!digit()) return Error("bad number: digits expected in exponent");
      while (digit()) ++pos_;
    }
    double d = 0;
    const char* b = t_.data() + start;
    const char* e = t_.data() + pos_;
    auto [ptr, ec] = std::from_chars(b, e, d);
    if (ec != std::errc() || ptr != e || !std::isfinite(d)) {
      pos_ = start;
      return Error("number out of range");
    }
    v->type = JsonValue::Type::kNumber;
    v->number = d;
    return absl::OkStatus();
  }

  std::string_view t_;
  size_t pos_ = 0;
};

}  // namespace

const JsonValue* JsonValue::Find(std::string_view key) const {
  if (type != Type::kObject) return nullptr;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (keys[i] == key) return &items[i];
  }
  return nullptr;
}

std::string_view JsonTypeName(JsonValue::Type t) {
  switch (t) {
    case JsonValue::Type::kNull: return "null";
    case JsonValue::Type::kBool: return "boolean";
    case JsonValue::Type::kNumber: return "number";
    case JsonValue::Type::kString: return "string";
    case JsonValue::Type::kArray: return "array";
    case JsonValue::Type::kObject: return "object";
  }
  return "?";
}

absl::StatusOr<JsonValue> ParseJson(std::string_view text) {
  if (text.size() > kMaxInput) return absl::InvalidArgumentError("JSON input larger than 16 MiB");
  Parser p(text);
  JsonValue v;
  if (auto s = p.Value(&v, 0); !s.ok()) return s;
  p.SkipWs();
  if (!p.AtEnd()) return p.Error("trailing characters after the JSON value");
  return v;
}

}  // namespace adaptcache::policy
