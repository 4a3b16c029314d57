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

AC_ALWAYS_INLINE void HadamardBody(float* x, size_t n, size_t count) {
  const float scale = HadamardScale(n);
  for (size_t v = 0; v < count; ++v, x += n) {
    for (size_t len = 1; len < n; len <<= 1) {
      for (size_t i = 0; i < n; i += 2 * len) {
        for (size_t j = i; j < i + len; ++j) {
          const float a = x[j];
          const float b = x[j + len];
          x[j] = a + b;
          x[j + len] = a - b;
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
