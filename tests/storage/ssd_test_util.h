// Helpers shared by the SSD tier tests (and the storage benchmarks): deterministic
// containers and temp directories.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "common/key.h"
#include "kernels/container.h"
#include "storage/ssd_tier.h"
#include "tests/storage/temp_dir.h"

namespace adaptcache::testing {

// A container whose single section holds `payload` bytes derived from `seed` (xorshift,
// 8 bytes a step: the benchmarks build large ones with it too).
inline std::vector<std::byte> MakeContainer(uint64_t seed, uint64_t payload,
                                            CodecId codec = CodecId::kRaw,
                                            KvShape shape = KvShape{1, 1, 1, 8, DType::kBF16}) {
  ContainerWriter w(codec, shape);
  w.AddSection(0, payload);
  std::vector<std::byte> out(w.TotalBytes());
  if (!w.Layout(ByteSpan(out)).ok()) std::abort();
  ByteSpan s = w.SectionData(0);
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (size_t i = 0; i < s.size(); i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(s.data() + i, &x, std::min<size_t>(8, s.size() - i));
  }
  w.Seal();
  return out;
}

inline EntryKey KeyOf(uint64_t i, uint64_t ns = 7) { return EntryKey{ns, Key128{i * 0x51ed27ull + 3, i}}; }

inline SsdTierOptions SmallOptions(const std::string& dir) {
  SsdTierOptions o;
  o.dir = dir;
  o.segment_bytes = 4ull << 20;
  o.segment_count = 6;
  o.io_bytes = 256 << 10;
  o.write_buffers = 8;
  o.read_buffers = 4;
  o.max_batch_bytes = 1 << 20;
  return o;
}

}  // namespace adaptcache::testing
