// A dense, row-major tensor in host memory, as read from or written to .npy and
// .safetensors files by the CLI. Plain value type; not synchronised.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/kv_shape.h"

namespace adaptcache::client {

// Element types the file readers understand (KV tensors use the float ones; token-id
// files use the integer ones).
enum class ElemType : uint8_t { kF16, kBF16, kF32, kF64, kI8, kI16, kI32, kI64, kU8, kU16, kU32, kU64 };

size_t ElemSize(ElemType t);
std::string_view ElemTypeName(ElemType t);  // "f16", "bf16", "f32", ..., "u64"
bool IsFloat(ElemType t);

// The KV dtype for a float element type; InvalidArgument for anything else.
absl::StatusOr<DType> ToKvDType(ElemType t);
ElemType FromKvDType(DType d);

// Files larger than this are refused before any allocation.
inline constexpr uint64_t kMaxTensorFileBytes = 64ull << 30;
inline constexpr size_t kMaxRank = 16;

struct HostTensor {
  ElemType type = ElemType::kF32;
  std::vector<uint64_t> shape;
  std::vector<std::byte> data;  // exactly Elements() * ElemSize(type) bytes

  uint64_t Elements() const;
  std::string ShapeString() const;  // e.g. "[2, 32, 256, 8, 128] bf16"
};

// Product of dims with overflow and size checks (each dim and the byte total are
// bounded by kMaxTensorFileBytes). InvalidArgument on overflow.
absl::StatusOr<uint64_t> CheckedElements(const std::vector<uint64_t>& shape, size_t elem_size);

// Whole-file helpers with clear errors naming the path.
absl::StatusOr<std::vector<std::byte>> ReadFileBytes(const std::string& path);
absl::Status WriteFileBytes(const std::string& path, const void* data, size_t n);

}  // namespace adaptcache::client
