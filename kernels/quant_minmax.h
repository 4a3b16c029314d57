// The V quantizer's per-group min and max, shared by the CPU encoder (kernels/quant.cc)
// and the GPU encoder (kernels/cuda/encode_kernels.cu). The lane order decides which of
// two values that compare equal (+0 and -0) or unordered (NaN) survives, and with it the
// group's scale and minimum: both encoders run this one code so their bytes match.
#pragma once

#if defined(__CUDACC__)
#define AC_QUANT_HD __host__ __device__ __forceinline__
#else
#define AC_QUANT_HD inline __attribute__((always_inline))
#endif

namespace adaptcache::quant_math {

// Min and max of xs[0, n), n >= 1: eight lanes over the whole blocks of eight, the tail
// in lane 0, then the lanes folded in order.
template <typename Size>
AC_QUANT_HD void GroupMinMax(const float* xs, Size n, float* mn_out, float* mx_out) {
  float lo[8], hi[8];
  for (int j = 0; j < 8; ++j) lo[j] = hi[j] = xs[0];
  Size i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) {
      lo[j] = xs[i + j] < lo[j] ? xs[i + j] : lo[j];
      hi[j] = xs[i + j] > hi[j] ? xs[i + j] : hi[j];
    }
  }
  for (; i < n; ++i) {
    lo[0] = xs[i] < lo[0] ? xs[i] : lo[0];
    hi[0] = xs[i] > hi[0] ? xs[i] : hi[0];
  }
  float mn = lo[0], mx = hi[0];
  for (int j = 1; j < 8; ++j) {
    mn = lo[j] < mn ? lo[j] : mn;
    mx = hi[j] > mx ? hi[j] : mx;
  }
  *mn_out = mn;
  *mx_out = mx;
}

}  // namespace adaptcache::quant_math
