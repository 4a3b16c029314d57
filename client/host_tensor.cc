#include "client/host_tensor.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace adaptcache::client {

size_t ElemSize(ElemType t) {
  switch (t) {
    case ElemType::kI8:
    case ElemType::kU8:
      return 1;
    case ElemType::kF16:
    case ElemType::kBF16:
    case ElemType::kI16:
    case ElemType::kU16:
      return 2;
    case ElemType::kF32:
    case ElemType::kI32:
    case ElemType::kU32:
      return 4;
    case ElemType::kF64:
    case ElemType::kI64:
    case ElemType::kU64:
      return 8;
  }
  return 0;
}

std::string_view ElemTypeName(ElemType t) {
  switch (t) {
    case ElemType::kF16: return "f16";
    case ElemType::kBF16: return "bf16";
    case ElemType::kF32: return "f32";
    case ElemType::kF64: return "f64";
    case ElemType::kI8: return "i8";
    case ElemType::kI16: return "i16";
    case ElemType::kI32: return "i32";
    case ElemType::kI64: return "i64";
    case ElemType::kU8: return "u8";
    case ElemType::kU16: return "u16";
    case ElemType::kU32: return "u32";
    case ElemType::kU64: return "u64";
  }
  return "invalid";
}

bool IsFloat(ElemType t) {
  return t == ElemType::kF16 || t == ElemType::kBF16 || t == ElemType::kF32 || t == ElemType::kF64;
}

absl::StatusOr<DType> ToKvDType(ElemType t) {
  switch (t) {
    case ElemType::kF16: return DType::kFP16;
    case ElemType::kBF16: return DType::kBF16;
    case ElemType::kF32: return DType::kFP32;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "element type ", std::string(ElemTypeName(t)), " is not a KV dtype (need f16, bf16 or f32)"));
  }
}

ElemType FromKvDType(DType d) {
  switch (d) {
    case DType::kFP16: return ElemType::kF16;
    case DType::kBF16: return ElemType::kBF16;
    case DType::kFP32: return ElemType::kF32;
  }
  return ElemType::kF32;
}

uint64_t HostTensor::Elements() const {
  uint64_t n = 1;
  for (uint64_t d : shape) n *= d;
  return n;
}

std::string HostTensor::ShapeString() const {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "] ", std::string(ElemTypeName(type)));
}

absl::StatusOr<uint64_t> CheckedElements(const std::vector<uint64_t>& shape, size_t elem_size) {
  if (shape.size() > kMaxRank) {
    return absl::InvalidArgumentError(absl::StrCat("rank ", shape.size(), " exceeds ", kMaxRank));
  }
  uint64_t n = 1;
  for (uint64_t d : shape) {
    if (d > kMaxTensorFileBytes) {
      return absl::InvalidArgumentError(absl::StrCat("dimension ", d, " is too large"));
    }
    if (d != 0 && n > kMaxTensorFileBytes / d) {
      return absl::InvalidArgumentError("tensor shape overflows the size limit");
    }
    n *= d;
  }
  if (elem_size != 0 && n > kMaxTensorFileBytes / elem_size) {
    return absl::InvalidArgumentError("tensor is larger than the size limit");
  }
  return n;
}

absl::StatusOr<std::vector<std::byte>> ReadFileBytes(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot open ", path));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a regular file"));
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxTensorFileBytes) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, " is larger than ", kMaxTensorFileBytes, " bytes"));
  }
  std::vector<std::byte> out(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::read(fd, out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      return absl::DataLossError(
          absl::StrCat("short read of ", path, ": ", n == 0 ? "file shrank" : std::strerror(err)));
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return out;
}

absl::Status WriteFileBytes(const std::string& path, const void* data, size_t n) {
  // Write to a temporary name and rename, so a failed write never leaves a torn file.
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot create ", tmp));
  }
  const auto* p = static_cast<const char*>(data);
  size_t done = 0;
  while (done < n) {
    ssize_t w = ::write(fd, p + done, n - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return absl::DataLossError(absl::StrCat("write to ", tmp, " failed: ", std::strerror(err)));
    }
    done += static_cast<size_t>(w);
  }
  if (::close(fd) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return absl::DataLossError(absl::StrCat("cannot write ", path, ": ", std::strerror(err)));
  }
  return absl::OkStatus();
}

}  // namespace adaptcache::client
