// Normalized Walsh-Hadamard transform over n = 2^k contiguous fp32 values, in place.
// The transform is its own inverse (H/sqrt(n) is symmetric and orthogonal), so the
// same function rotates on encode and un-rotates on decode.
//
// Arithmetic (pinned for bit-exact GPU decoders, docs/format.md "Hadamard"): stages
// len = 1, 2, 4, ..., n/2; in each stage, for every i with (i & len) == 0:
//   a = x[i], b = x[i + len]; x[i] = a + b; x[i + len] = a - b   (fp32, round to nearest)
// then every element is multiplied by HadamardScale(n) (one fp32 rounding).
// Thread safe (pure functions).
#pragma once

#include <cstddef>

namespace adaptcache {

inline constexpr bool IsPowerOfTwo(size_t n) { return n != 0 && (n & (n - 1)) == 0; }

// fp32 nearest to 1/sqrt(n) for n = 2^k: exactly 2^(-k/2) for even k, and
// fp32(0.70710678118654752) * 2^(-(k-1)/2) for odd k.
float HadamardScale(size_t n);

// Transforms `count` consecutive vectors of n values each (n a power of two).
void HadamardInPlace(float* x, size_t n, size_t count);

}  // namespace adaptcache
