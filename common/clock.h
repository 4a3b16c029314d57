// Monotonic time as a plain integer, for timestamps kept in atomics, and an injectable
// clock of the same kind (tests drive it by hand).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

namespace adaptcache {

inline int64_t SteadyNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Monotonic nanoseconds; an empty one means std::chrono::steady_clock (SteadyNanoClock).
using NanoClock = std::function<int64_t()>;
inline NanoClock SteadyNanoClock() { return [] { return SteadyNowNs(); }; }

}  // namespace adaptcache
