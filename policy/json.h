// A small strict JSON reader (RFC 8259) for the policy's configuration files, such as
// the quality calibration. No exceptions: errors come back as InvalidArgument with the
// line and column. Limits: nesting depth 64, input 16 MiB. Numbers are doubles.
// Thread safety: pure functions over immutable values.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace adaptcache::policy {

struct JsonValue {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  Type type = Type::kNull;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<JsonValue> items;          // array items, or object values
  std::vector<std::string> keys;         // object keys, parallel to items

  // The value of `key` in an object (first occurrence), or nullptr.
  const JsonValue* Find(std::string_view key) const;
};

std::string_view JsonTypeName(JsonValue::Type t);

// Parses one JSON document (whitespace around it allowed, nothing else). Duplicate
// object keys are an error.
absl::StatusOr<JsonValue> ParseJson(std::string_view text);

}  // namespace adaptcache::policy
