// CRC32C (Castagnoli), as used by iSCSI, ext4 and RocksDB. Hardware (SSE4.2) on x86-64,
// portable table otherwise. Thread safe.
#pragma once

#include <cstddef>
#include <cstdint>

namespace adaptcache {

// Extends `crc` (0 to start) over `n` bytes. Crc32c("123456789") == 0xE3069283.
uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t n);
// Crc32c(A || B) from Crc32c(A), Crc32c(B) and |B|.
uint32_t Crc32cCombine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);
inline uint32_t Crc32c(const void* data, size_t n) { return Crc32cExtend(0, data, n); }

}  // namespace adaptcache
