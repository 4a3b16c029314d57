#include "kernels/hadamard.h"

#include <cmath>

#include "kernels/simd.h"

namespace adaptcache {

float HadamardScale(size_t n) {
  int k = 0;
  while ((size_t{1} << k) < n) ++k;
  if (k % 2 == 0) return std::ldexp(1.0f, -k / 2);
  return std::ldexp(0.70710678118654752f, -(k - 1) / 2);
}

namespace {

// Stages len = 1, 2, 4 on one block of 8. Every butterfly of a stage is independent, so
// doing the first three stages block by block gives the same bits as stage by stage.
AC_ALWAYS_INLINE void FirstThreeStages(float* x) {
  float a[8], b[8];
  for (int i = 0; i < 8; i += 2) {
    a[i] = x[i] + x[i + 1];
    a[i + 1] = x[i] - x[i + 1];
  }
  for (int i = 0; i < 8; i += 4) {
    for (int j = 0; j < 2; ++j) {
      b[i + j] = a[i + j] + a[i + j + 2];
      b[i + j + 2] = a[i + j] - a[i + j + 2];
    }
  }
  for (int j = 0; j < 4; ++j) {
    x[j] = b[j] + b[j + 4];
    x[j + 4] = b[j] - b[j + 4];
  }
}

AC_ALWAYS_INLINE void HadamardBody(float* x, size_t n, size_t count) {
  const float scale = HadamardScale(n);
  for (size_t v = 0; v < count; ++v, x += n) {
    size_t len = 1;
    if (n >= 8) {
      for (size_t i = 0; i < n; i += 8) FirstThreeStages(x + i);
      len = 8;
    }
    for (; len < n; len <<= 1) {
      for (size_t i = 0; i < n; i += 2 * len) {
        float* __restrict lo = x + i;
        float* __restrict hi = x + i + len;
        for (size_t j = 0; j < len; ++j) {
          const float a = lo[j];
          const float b = hi[j];
          lo[j] = a + b;
          hi[j] = a - b;
        }
      }
    }
    for (size_t i = 0; i < n; ++i) x[i] *= scale;
  }
}

}  // namespace

AC_DISPATCH(void, HadamardInPlace, (float* x, size_t n, size_t count), HadamardBody,
            (x, n, count))

}  // namespace adaptcache
