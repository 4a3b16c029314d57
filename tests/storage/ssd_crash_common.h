// Shared by ssd_crash_test and its child: options, keys and deterministic contents.
#pragma once

#include <string>
#include <vector>

#include "storage/ssd_tier.h"
#include "tests/storage/ssd_test_util.h"

namespace adaptcache::crash {

inline SsdTierOptions Options(const std::string& dir) {
  SsdTierOptions o;
  o.dir = dir;
  o.segment_bytes = 16ull << 20;
  o.segment_count = 12;  // large enough that no round reclaims: every ack must survive
  o.io_bytes = 256 << 10;
  o.write_buffers = 16;
  o.read_buffers = 8;
  o.max_batch_bytes = 512 << 10;
  return o;
}

inline EntryKey Key(uint64_t id) { return testing::KeyOf(id, /*ns=*/99); }
inline uint64_t SizeOf(uint64_t id) { return 500 + (id * 7919) % 40000; }
inline std::vector<std::byte> Content(uint64_t id) { return testing::MakeContainer(id, SizeOf(id)); }
inline bool IdOf(const EntryKey& k, uint64_t* id) {
  *id = k.key.hi;
  return k.ns == 99 && Key(*id) == k;
}

}  // namespace adaptcache::crash
