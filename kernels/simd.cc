#include "kernels/simd.h"

#include <atomic>

namespace adaptcache {
namespace {

bool DetectAvx2() {
#if AC_HAVE_AVX2_VARIANT
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2");
#else
  return false;
#endif
}

std::atomic<bool> g_avx2_allowed{true};

}  // namespace

bool UseAvx2() {
  static const bool kHas = DetectAvx2();
  return kHas && g_avx2_allowed.load(std::memory_order_relaxed);
}

void SetAvx2EnabledForTesting(bool enabled) {
  g_avx2_allowed.store(enabled, std::memory_order_relaxed);
}

}  // namespace adaptcache
