// Per-tier metrics (DRAM and SSD hits, bytes, entries; SSD I/O, latency, reclaim;
// demotions and promotions), refreshed from TierManager::Stats() at scrape time. Names
// are documented in docs/operations.md ("SSD tier").
//
// Thread safety: Register once; the collector runs under the registry's render lock.
#pragma once

#include "absl/status/status.h"
#include "server/auth.h"
#include "server/metrics.h"
#include "storage/tier_manager.h"

namespace adaptcache::server {

// Registers the families and a collector on `registry`; `tm` must outlive it.
absl::Status RegisterTierMetrics(MetricsRegistry* registry, const TierManager* tm);
// Per-tenant DRAM usage and quotas (adaptcache_tenant_*); `auth` must outlive it.
absl::Status RegisterTenantMetrics(MetricsRegistry* registry, const TierManager* tm, const Auth* auth);

}  // namespace adaptcache::server
