#include "kernels/bitpack.h"

#include <cstring>

#include "kernels/simd.h"

namespace adaptcache {
namespace {

// Generic tail: packs codes[first..n) into a zeroed region starting at bit first*bits.
void PackTail(const uint8_t* codes, size_t first, size_t n, int bits, uint8_t* dst) {
  const size_t begin = (first * bits) / 8;
  std::memset(dst + begin, 0, PackedBytes(n, bits) - begin);
  for (size_t j = first; j < n; ++j) {
    const size_t bit = j * bits;
    const uint32_t v = uint32_t{codes[j]} << (bit % 8);
    dst[bit / 8] |= static_cast<uint8_t>(v);
    if ((bit % 8) + bits > 8) dst[bit / 8 + 1] |= static_cast<uint8_t>(v >> 8);
  }
}

void UnpackTail(const uint8_t* src, size_t first, size_t n, int bits, uint8_t* codes) {
  const uint32_t mask = (1u << bits) - 1;
  const size_t nbytes = PackedBytes(n, bits);
  for (size_t j = first; j < n; ++j) {
    const size_t bit = j * bits;
    uint32_t v = src[bit / 8];
    if (bit / 8 + 1 < nbytes) v |= uint32_t{src[bit / 8 + 1]} << 8;
    codes[j] = static_cast<uint8_t>((v >> (bit % 8)) & mask);
  }
}

AC_ALWAYS_INLINE void PackBody(const uint8_t* codes, size_t n, int bits, uint8_t* dst) {
  if (n == 0) return;  // pointers may be null
  size_t done = 0;
  switch (bits) {
    case 8:
      std::memcpy(dst, codes, n);
      return;
    case 4:
      done = n / 2 * 2;
      for (size_t i = 0; i < n / 2; ++i) {
        dst[i] = static_cast<uint8_t>(codes[2 * i] | (codes[2 * i + 1] << 4));
      }
      break;
    case 2:
      done = n / 4 * 4;
      for (size_t i = 0; i < n / 4; ++i) {
        const uint8_t* c = codes + 4 * i;
        dst[i] = static_cast<uint8_t>(c[0] | (c[1] << 2) | (c[2] << 4) | (c[3] << 6));
      }
      break;
    case 3:
      done = n / 8 * 8;
      for (size_t i = 0; i < n / 8; ++i) {
        const uint8_t* c = codes + 8 * i;
        const uint32_t w = uint32_t{c[0]} | (uint32_t{c[1]} << 3) | (uint32_t{c[2]} << 6) |
                           (uint32_t{c[3]} << 9) | (uint32_t{c[4]} << 12) |
                           (uint32_t{c[5]} << 15) | (uint32_t{c[6]} << 18) |
                           (uint32_t{c[7]} << 21);
        dst[3 * i] = static_cast<uint8_t>(w);
        dst[3 * i + 1] = static_cast<uint8_t>(w >> 8);
        dst[3 * i + 2] = static_cast<uint8_t>(w >> 16);
      }
      break;
    default:
      break;
  }
  if (done < n) PackTail(codes, done, n, bits, dst);
}

AC_ALWAYS_INLINE void UnpackBody(const uint8_t* src, size_t n, int bits, uint8_t* codes) {
  if (n == 0) return;  // pointers may be null
  size_t done = 0;
  switch (bits) {
    case 8:
      std::memcpy(codes, src, n);
      return;
    case 4:
      done = n / 2 * 2;
      for (size_t i = 0; i < n / 2; ++i) {
        codes[2 * i] = src[i] & 0xf;
        codes[2 * i + 1] = src[i] >> 4;
      }
      break;
    case 2:
      done = n / 4 * 4;
      for (size_t i = 0; i < n / 4; ++i) {
        const uint8_t b = src[i];
        codes[4 * i] = b & 3;
        codes[4 * i + 1] = (b >> 2) & 3;
        codes[4 * i + 2] = (b >> 4) & 3;
        codes[4 * i + 3] = b >> 6;
      }
      break;
    case 3:
      done = n / 8 * 8;
      for (size_t i = 0; i < n / 8; ++i) {
        const uint32_t w = uint32_t{src[3 * i]} | (uint32_t{src[3 * i + 1]} << 8) |
                           (uint32_t{src[3 * i + 2]} << 16);
        for (int k = 0; k < 8; ++k) codes[8 * i + k] = static_cast<uint8_t>((w >> (3 * k)) & 7);
      }
      break;
    default:
      break;
  }
  if (done < n) UnpackTail(src, done, n, bits, codes);
}

}  // namespace

AC_DISPATCH(void, PackBits, (const uint8_t* codes, size_t n, int bits, uint8_t* dst), PackBody,
            (codes, n, bits, dst))
AC_DISPATCH(void, UnpackBits, (const uint8_t* src, size_t n, int bits, uint8_t* codes),
            UnpackBody, (src, n, bits, codes))

}  // namespace adaptcache
