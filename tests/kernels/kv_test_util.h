// Test helpers for the codec tests: container surgery (re-sealing a modified container
// so that only semantic checks can catch it) and dtype precision. The KV tensors they
// encode come from tests/testing/kv_data.h.
#pragma once

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "common/crc32c.h"
#include "common/half.h"
#include "common/kv_shape.h"
#include "kernels/container.h"
#include "tests/testing/kv_data.h"

namespace adaptcache::testing {

inline float At(const std::vector<std::byte>& t, DType d, uint64_t i) {
  return LoadAsFloat(t.data(), d, i);
}

// Recomputes both CRCs of a container after a test modified it.
inline void Reseal(std::vector<std::byte>& blob) {
  ContainerHeader h;
  std::memcpy(&h, blob.data(), sizeof(h));
  h.payload_crc32c = Crc32c(blob.data() + sizeof(h), blob.size() - sizeof(h));
  std::memcpy(blob.data(), &h, sizeof(h));
  h.header_crc32c = Crc32c(blob.data(), offsetof(ContainerHeader, header_crc32c));
  std::memcpy(blob.data(), &h, sizeof(h));
}

inline ContainerHeader HeaderOf(const std::vector<std::byte>& blob) {
  ContainerHeader h;
  std::memcpy(&h, blob.data(), sizeof(h));
  return h;
}

inline void SetHeader(std::vector<std::byte>& blob, const ContainerHeader& h) {
  std::memcpy(blob.data(), &h, sizeof(h));
  Reseal(blob);
}

inline SectionEntry SectionAt(const std::vector<std::byte>& blob, size_t i) {
  SectionEntry e;
  std::memcpy(&e, blob.data() + sizeof(ContainerHeader) + i * sizeof(SectionEntry), sizeof(e));
  return e;
}

inline void SetSection(std::vector<std::byte>& blob, size_t i, const SectionEntry& e) {
  std::memcpy(blob.data() + sizeof(ContainerHeader) + i * sizeof(SectionEntry), &e, sizeof(e));
  Reseal(blob);
}

// Relative precision of a dtype (half an ulp at 1.0).
inline float HalfUlp(DType d) {
  switch (d) {
    case DType::kBF16:
      return 1.f / 256;
    case DType::kFP16:
      return 1.f / 2048;
    case DType::kFP32:
      return 1.f / (1 << 24);
  }
  return 0;
}

}  // namespace adaptcache::testing
