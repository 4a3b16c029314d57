// Monotonic time as a plain integer, for timestamps kept in atomics.
#pragma once

#include <chrono>
#include <cstdint>

namespace adaptcache {

inline int64_t SteadyNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace adaptcache
