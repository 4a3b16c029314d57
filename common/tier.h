// The storage tiers an entry can be in, as the tier manager, the planner and the client
// name them. The values are the wire API's (proto EntryInfo.tier).
#pragma once

#include <cstdint>
#include <string_view>

namespace adaptcache {

enum class Tier : uint8_t { kNone = 0, kDram = 1, kSsd = 2, kRemote = 3 };

// "none", "dram", "ssd", "remote"; "unknown" for a value outside the enum.
constexpr std::string_view TierName(Tier t) {
  switch (t) {
    case Tier::kNone: return "none";
    case Tier::kDram: return "dram";
    case Tier::kSsd: return "ssd";
    case Tier::kRemote: return "remote";
  }
  return "unknown";
}

}  // namespace adaptcache
