// CUDA timing helpers shared by the GPU benchmarks: a checked-call macro and the median of
// event-timed repetitions of enqueued work.
#ifndef ADAPTCACHE_BENCH_CUDA_TIMING_H_
#define ADAPTCACHE_BENCH_CUDA_TIMING_H_

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

// A benchmark has no way to go on after a CUDA error: print where, and exit 1.
#define CK(x)                                                                                 \
  do {                                                                                        \
    cudaError_t e_ = (x);                                                                     \
    if (e_ != cudaSuccess) {                                                                  \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                           \
    }                                                                                         \
  } while (0)

namespace adaptcache::bench {

inline double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Times `body` (enqueues work on `s`) with CUDA events: `warmups` untimed runs, then the
// median of `reps` (ms).
template <class F>
double EventMedianMs(cudaStream_t s, int warmups, int reps, F&& body) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  for (int i = 0; i < warmups; ++i) body();
  CK(cudaStreamSynchronize(s));
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    CK(cudaEventRecord(a, s));
    body();
    CK(cudaEventRecord(b, s));
    CK(cudaEventSynchronize(b));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  return Median(t);
}

}  // namespace adaptcache::bench

#endif  // ADAPTCACHE_BENCH_CUDA_TIMING_H_
