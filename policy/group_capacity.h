// Capacities of groups of entries (a tenant's quotas) applied to a plan.
//
// The optimizer prices the two tiers as wholes; a tenant's DRAM and SSD quotas bound a
// subset of the entries. FitGroupCapacities repairs a plan so that each group's planned
// bytes fit its capacities: entries of an over-capacity group move down, the smallest
// objective increase per byte freed first. A DRAM entry moves to SSD in the same config
// when the SSD (the tier's capacity and the group's) has room, else it is not stored; an
// SSD entry is not stored. Pinned entries never move (a group whose pinned entries alone
// exceed a capacity stays over it). Entries of no group (-1) are never touched, and the
// plan's moves and totals are recomputed (FinalizePlan).
//
// Thread safety: a pure function.
#pragma once

#include <cstdint>
#include <span>

#include "policy/types.h"

namespace adaptcache::policy {

struct GroupCapacity {
  uint64_t dram_bytes = 0;  // 0 = unbounded
  uint64_t ssd_bytes = 0;   // 0 = unbounded
};

// group_of_entry: one per in.entries, an index into caps or -1. Returns the number of
// entries moved.
size_t FitGroupCapacities(const PolicyInput& in, std::span<const int32_t> group_of_entry,
                          std::span<const GroupCapacity> caps, PlacementPlan* plan);

}  // namespace adaptcache::policy
