// The storage tiers an entry can be in, as the tier manager, the planner and the client
// name them. The values are the wire API's (proto EntryInfo.tier).
#pragma once

#include <cstdint>
#include <string_view>

namespace adaptcache {

enum class Tier : uint8_t { kNone = 0, kDram = 1, kSsd = 2 };

// "none", "dram", "ssd"; "unknown" for a value outside the enum.
constexpr std::string_view TierName(Tier t) {
  switch (t) {
    case Tier::kNone: return "none";
    case Tier::kDram: return "dram";
    case Tier::kSsd: return "ssd";
  }
  return "unknown";
}

}  // namespace adaptcache
