#include "common/kv_shape.h"

#include "absl/strings/str_cat.h"

namespace adaptcache {

size_t DTypeSize(DType d) {
  switch (d) {
    case DType::kBF16:
    case DType::kFP16:
      return 2;
    case DType::kFP32:
      return 4;
  }
  return 0;
}

std::string_view DTypeName(DType d) {
  switch (d) {
    case DType::kBF16:
      return "bf16";
    case DType::kFP16:
      return "fp16";
    case DType::kFP32:
      return "fp32";
  }
  return "invalid";
}

absl::StatusOr<DType> DTypeFromName(std::string_view name) {
  if (name == "bf16" || name == "bfloat16") return DType::kBF16;
  if (name == "fp16" || name == "float16" || name == "half") return DType::kFP16;
  if (name == "fp32" || name == "float32" || name == "float") return DType::kFP32;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown dtype '", std::string(name), "' (expected bf16, fp16 or fp32)"));
}

absl::StatusOr<DType> DTypeFromCode(uint32_t code) {
  if (code >= 1 && code <= 3) return static_cast<DType>(code);
  return absl::InvalidArgumentError(absl::StrCat("unknown dtype code ", code));
}

std::string KvShape::DebugString() const {
  return absl::StrCat("[2][", layers, "][", tokens, "][", kv_heads, "][", head_dim, "] ",
                      std::string(DTypeName(dtype)));
}

absl::Status ValidateShape(const KvShape& s) {
  auto check = [](const char* name, uint32_t v, uint32_t max) -> absl::Status {
    if (v == 0) return absl::InvalidArgumentError(absl::StrCat(name, " must be > 0"));
    if (v > max) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, " = ", v, " exceeds the limit ", max));
    }
    return absl::OkStatus();
  };
  if (auto st = check("layers", s.layers, kMaxLayers); !st.ok()) return st;
  if (auto st = check("tokens", s.tokens, kMaxTokens); !st.ok()) return st;
  if (auto st = check("kv_heads", s.kv_heads, kMaxKvHeads); !st.ok()) return st;
  if (auto st = check("head_dim", s.head_dim, kMaxHeadDim); !st.ok()) return st;
  if (DTypeSize(s.dtype) == 0) return absl::InvalidArgumentError("invalid dtype");
  // Each factor is < 2^16 (tokens) or < 2^13, so the product cannot overflow 64 bits.
  if (s.Bytes() > kMaxEntryBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "entry of ", s.Bytes(), " bytes exceeds the per-entry limit ", kMaxEntryBytes));
  }
  return absl::OkStatus();
}

}  // namespace adaptcache
