// Runtime CPU dispatch for the codec hot loops. Each hot loop is written once as an
// always-inline body in plain C++ (so the compiler auto-vectorizes it) and compiled
// twice: for the build's baseline ISA and for AVX2. Both variants do the same IEEE
// operations in the same order, so they produce identical bytes (tested). No FMA is
// enabled in either variant: the formats specify separately rounded multiply and add.
// Thread safe: the level is read with relaxed atomics.
#pragma once

namespace adaptcache {

#define AC_ALWAYS_INLINE inline __attribute__((always_inline))
#if defined(__x86_64__)
#define AC_HAVE_AVX2_VARIANT 1
#define AC_TARGET_AVX2 __attribute__((target("avx2")))
#else
#define AC_HAVE_AVX2_VARIANT 0
#define AC_TARGET_AVX2
#endif

// True when the AVX2 variants run (CPU supports AVX2 and not disabled for testing).
bool UseAvx2();
// Forces the baseline variants (false) or restores auto-detection (true). For tests
// and benchmarks that compare the two variants.
void SetAvx2EnabledForTesting(bool enabled);

// Defines `ret name params` dispatching to `body args` compiled for AVX2 or baseline.
#if AC_HAVE_AVX2_VARIANT
#define AC_DISPATCH(ret, name, params, body, args)        \
  namespace {                                             \
  AC_TARGET_AVX2 ret name##Avx2 params { return body args; } \
  ret name##Base params { return body args; }             \
  }                                                       \
  ret name params { return UseAvx2() ? name##Avx2 args : name##Base args; }
#else
#define AC_DISPATCH(ret, name, params, body, args) \
  ret name params { return body args; }
#endif

}  // namespace adaptcache
