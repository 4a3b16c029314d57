// Dense little-endian bit packing of small unsigned codes (docs/format.md "Bit packing").
//
// A packed row of n codes of b bits (b in {2,3,4,8}) is ceil(n*b/8) bytes: code j
// occupies stream bits [j*b, j*b+b), where stream bit k is bit (k % 8) of byte k / 8
// (LSB first). Unused high bits of the last byte are zero when written and ignored when
// read. Thread safe (pure functions).
#pragma once

#include <cstddef>
#include <cstdint>

namespace adaptcache {

inline constexpr size_t PackedBytes(size_t n, int bits) { return (n * bits + 7) / 8; }

// Packs codes[0..n) (each < 2^bits) into dst[0..PackedBytes(n, bits)).
void PackBits(const uint8_t* codes, size_t n, int bits, uint8_t* dst);
// Unpacks n codes from src[0..PackedBytes(n, bits)) into codes[0..n).
void UnpackBits(const uint8_t* src, size_t n, int bits, uint8_t* codes);

}  // namespace adaptcache
