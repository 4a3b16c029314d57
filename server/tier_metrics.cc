#include "server/tier_metrics.h"

#include <string>
#include <utility>
#include <vector>

namespace adaptcache::server {
namespace {

// The children the collector sets, resolved once at registration.
struct TierGauges {
  Counter* hits[3];
  Gauge* entries[2];
  Gauge* bytes[2];
  Gauge* capacity[2];
  Counter* demotions[5];  // queued, done, failed, clean, refused
  Counter* promotions;
  Counter* anonymous;
  Counter* lost;
  Counter* misses;
  Gauge* demoting_bytes;
  Gauge* masters;
  Counter* ssd_read_bytes;
  Counter* ssd_user_written;
  Counter* ssd_device_written;
  Counter* ssd_device_read;
  Gauge* lat[4];  // write p50, p99, read p50, p99 (seconds)
  Counter* reclaimed;
  Counter* reinserted;
  Counter* dropped_on_reclaim;
  Counter* checksum_failures;
  Counter* io_errors;
  Counter* rejected[3];  // cold, budget, queue_full
  Gauge* segments[3];    // total, in_use, failed
  Gauge* write_amp;
  // remote tier
  Gauge* r_enabled;
  Gauge* r_up;
  Gauge* r_nodes;
  Gauge* r_queue_bytes;
  Counter* r_hits;
  Counter* r_misses;
  Counter* r_lookups[2];  // hit, miss
  Counter* r_errors[4];   // lookup, get, set, del
  Counter* r_checksum;
  Counter* r_writes[4];   // written, dropped, too_large, failed
  Counter* r_write_bytes;
  Counter* r_read_bytes;
  Counter* r_refreshes;
};

}  // namespace

absl::Status RegisterTierMetrics(MetricsRegistry* r, const TierManager* tm) {
  auto g = std::make_shared<TierGauges>();
  const char* tiers[3] = {"dram", "ssd", "remote"};
  auto counter = [&](const char* name, const char* help, std::vector<std::string> labels,
                     std::vector<std::vector<std::string>> values,
                     std::vector<Counter**> out) -> absl::Status {
    auto f = r->AddCounter(name, help, std::move(labels));
    if (!f.ok()) return f.status();
    for (size_t i = 0; i < out.size(); ++i) {
      auto c = (*f)->WithLabels(values.empty() ? std::vector<std::string>{} : values[i]);
      if (!c.ok()) return c.status();
      *out[i] = *c;
    }
    return absl::OkStatus();
  };
  auto gauge = [&](const char* name, const char* help, std::vector<std::string> labels,
                   std::vector<std::vector<std::string>> values,
                   std::vector<Gauge**> out) -> absl::Status {
    auto f = r->AddGauge(name, help, std::move(labels));
    if (!f.ok()) return f.status();
    for (size_t i = 0; i < out.size(); ++i) {
      auto c = (*f)->WithLabels(values.empty() ? std::vector<std::string>{} : values[i]);
      if (!c.ok()) return c.status();
      *out[i] = *c;
    }
    return absl::OkStatus();
  };
#define AC_TRY(expr)                      \
  if (auto st = (expr); !st.ok()) return st
  AC_TRY(counter("adaptcache_tier_hits_total", "Gets served, by the tier the entry was found in.",
                 {"tier"}, {{tiers[0]}, {tiers[1]}, {tiers[2]}},
                 {&g->hits[0], &g->hits[1], &g->hits[2]}));
  AC_TRY(counter("adaptcache_tier_misses_total", "Gets that found the entry in no tier.", {}, {},
                 {&g->misses}));
  AC_TRY(gauge("adaptcache_tier_entries", "Entries per tier (an entry may be in both).", {"tier"},
               {{tiers[0]}, {tiers[1]}}, {&g->entries[0], &g->entries[1]}));
  AC_TRY(gauge("adaptcache_tier_bytes", "Container bytes stored per tier.", {"tier"},
               {{tiers[0]}, {tiers[1]}}, {&g->bytes[0], &g->bytes[1]}));
  AC_TRY(gauge("adaptcache_tier_capacity_bytes", "Usable capacity per tier.", {"tier"},
               {{tiers[0]}, {tiers[1]}}, {&g->capacity[0], &g->capacity[1]}));
  AC_TRY(counter("adaptcache_tier_demotions_total",
                 "DRAM LRU victims by outcome: queued to SSD, done (durable), failed, clean "
                 "(already on SSD), refused (admission, budget or queue: evicted).",
                 {"result"}, {{"queued"}, {"done"}, {"failed"}, {"clean"}, {"refused"}},
                 {&g->demotions[0], &g->demotions[1], &g->demotions[2], &g->demotions[3],
                  &g->demotions[4]}));
  AC_TRY(counter("adaptcache_tier_promotions_total", "SSD entries committed back into DRAM.", {},
                 {}, {&g->promotions}));
  AC_TRY(counter("adaptcache_tier_ssd_temp_leases_total",
                 "SSD hits served from a temporary DRAM extent (not promoted).", {}, {},
                 {&g->anonymous}));
  AC_TRY(counter("adaptcache_tier_evictions_lost_total",
                 "DRAM victims dropped with no SSD copy (SSD off or demotion disabled).", {}, {},
                 {&g->lost}));
  AC_TRY(gauge("adaptcache_tier_demoting_bytes", "Bytes of demotions in flight to SSD.", {}, {},
               {&g->demoting_bytes}));
  AC_TRY(gauge("adaptcache_tier_master_entries",
               "Entries with a lossy DRAM copy and a master copy on SSD.", {}, {}, {&g->masters}));
  AC_TRY(counter("adaptcache_ssd_read_bytes_total", "Container bytes read from SSD by Gets and "
                 "promotions.", {}, {}, {&g->ssd_read_bytes}));
  AC_TRY(counter("adaptcache_ssd_written_bytes_total",
                 "Bytes written to SSD: user = container bytes committed, device = everything "
                 "written to segment files (headers, padding, reinsertions).",
                 {"kind"}, {{"user"}, {"device"}}, {&g->ssd_user_written, &g->ssd_device_written}));
  AC_TRY(counter("adaptcache_ssd_device_read_bytes_total", "Bytes read from segment files.", {},
                 {}, {&g->ssd_device_read}));
  AC_TRY(gauge("adaptcache_ssd_latency_seconds",
               "SSD write (queued to durable and indexed) and read latency quantiles "
               "(power-of-two bucket upper bounds).",
               {"op", "quantile"}, {{"write", "0.5"}, {"write", "0.99"}, {"read", "0.5"}, {"read", "0.99"}},
               {&g->lat[0], &g->lat[1], &g->lat[2], &g->lat[3]}));
  AC_TRY(counter("adaptcache_ssd_segments_reclaimed_total", "Segments reclaimed (FIFO).", {}, {},
                 {&g->reclaimed}));
  AC_TRY(counter("adaptcache_ssd_reinserted_entries_total",
                 "Hot entries rewritten before their segment was reclaimed.", {}, {},
                 {&g->reinserted}));
  AC_TRY(counter("adaptcache_ssd_dropped_on_reclaim_total",
                 "Entries lost when their segment was reclaimed.", {}, {}, {&g->dropped_on_reclaim}));
  AC_TRY(counter("adaptcache_ssd_checksum_failures_total",
                 "SSD reads or scans whose checksum failed (served as misses).", {}, {},
                 {&g->checksum_failures}));
  AC_TRY(counter("adaptcache_ssd_io_errors_total", "SSD I/O errors (segment taken out of service).",
                 {}, {}, {&g->io_errors}));
  AC_TRY(counter("adaptcache_ssd_rejected_total", "SSD writes refused, by reason.", {"reason"},
                 {{"cold"}, {"budget"}, {"queue_full"}},
                 {&g->rejected[0], &g->rejected[1], &g->rejected[2]}));
  AC_TRY(gauge("adaptcache_ssd_segments", "SSD segment files by state.", {"state"},
               {{"total"}, {"in_use"}, {"failed"}},
               {&g->segments[0], &g->segments[1], &g->segments[2]}));
  AC_TRY(gauge("adaptcache_ssd_write_amplification",
               "Device bytes written per user byte committed.", {}, {}, {&g->write_amp}));
  AC_TRY(gauge("adaptcache_remote_enabled", "1 when a remote tier (Redis) is configured.", {}, {},
               {&g->r_enabled}));
  AC_TRY(gauge("adaptcache_remote_up",
               "1 when the remote tier's slot map is complete and no master is backing off.", {},
               {}, {&g->r_up}));
  AC_TRY(gauge("adaptcache_remote_nodes", "Redis masters in the remote tier's slot map.", {}, {},
               {&g->r_nodes}));
  AC_TRY(gauge("adaptcache_remote_queue_bytes", "Bytes of remote writes queued.", {}, {},
               {&g->r_queue_bytes}));
  AC_TRY(counter("adaptcache_remote_hits_total", "Gets served from the remote tier.", {}, {},
                 {&g->r_hits}));
  AC_TRY(counter("adaptcache_remote_misses_total",
                 "Gets that missed every local tier and the remote tier.", {}, {}, {&g->r_misses}));
  AC_TRY(counter("adaptcache_remote_lookups_total", "Keys looked up in the remote tier.",
                 {"result"}, {{"hit"}, {"miss"}}, {&g->r_lookups[0], &g->r_lookups[1]}));
  AC_TRY(counter("adaptcache_remote_errors_total",
                 "Remote calls that failed (timeout, unreachable, error reply), by operation.",
                 {"op"}, {{"lookup"}, {"get"}, {"set"}, {"del"}},
                 {&g->r_errors[0], &g->r_errors[1], &g->r_errors[2], &g->r_errors[3]}));
  AC_TRY(counter("adaptcache_remote_checksum_failures_total",
                 "Remote values whose container check failed (served as misses).", {}, {},
                 {&g->r_checksum}));
  AC_TRY(counter("adaptcache_remote_writes_total",
                 "Remote writes by outcome: written, dropped (queue full or superseded), "
                 "too_large, failed.",
                 {"result"}, {{"written"}, {"dropped"}, {"too_large"}, {"failed"}},
                 {&g->r_writes[0], &g->r_writes[1], &g->r_writes[2], &g->r_writes[3]}));
  AC_TRY(counter("adaptcache_remote_write_bytes_total", "Container bytes written to the remote tier.",
                 {}, {}, {&g->r_write_bytes}));
  AC_TRY(counter("adaptcache_remote_read_bytes_total", "Container bytes read from the remote tier.",
                 {}, {}, {&g->r_read_bytes}));
  AC_TRY(counter("adaptcache_remote_topology_refreshes_total",
                 "Slot-map refreshes (start-up, MOVED, failed nodes, every 10 s).", {}, {},
                 {&g->r_refreshes}));
#undef AC_TRY

  r->AddCollector([g, tm] {
    const TierManagerStats s = tm->Stats();
    g->hits[0]->Set(s.dram_hits);
    g->hits[1]->Set(s.ssd_hits);
    g->misses->Set(s.misses);
    g->entries[0]->Set(static_cast<double>(s.dram.entries));
    g->bytes[0]->Set(static_cast<double>(s.dram.entry_bytes));
    g->capacity[0]->Set(static_cast<double>(s.dram.capacity_bytes));
    const uint64_t dem[5] = {s.demotions_queued, s.demotions_done, s.demotions_failed,
                             s.demotions_clean, s.demotions_refused};
    for (int i = 0; i < 5; ++i) g->demotions[i]->Set(dem[i]);
    g->promotions->Set(s.promotions);
    g->anonymous->Set(s.anonymous_leases);
    g->lost->Set(s.evictions_lost);
    g->demoting_bytes->Set(static_cast<double>(s.demoting_bytes));
    g->masters->Set(static_cast<double>(s.master_entries));
    g->ssd_read_bytes->Set(s.ssd_read_bytes);
    g->hits[2]->Set(s.remote_hits);
    g->r_enabled->Set(s.remote ? 1 : 0);
    if (s.remote) {
      const RemoteTierStats& rs = *s.remote;
      g->r_up->Set(rs.up ? 1 : 0);
      g->r_nodes->Set(rs.nodes);
      g->r_queue_bytes->Set(static_cast<double>(rs.queue_bytes));
      g->r_hits->Set(rs.hits);
      g->r_misses->Set(rs.misses);
      g->r_lookups[0]->Set(rs.lookup_hits);
      g->r_lookups[1]->Set(rs.lookup_misses);
      for (int i = 0; i < 4; ++i) g->r_errors[i]->Set(rs.errors[i]);
      g->r_checksum->Set(rs.checksum_failures);
      const uint64_t w[4] = {rs.written, rs.dropped, rs.too_large, rs.write_failed};
      for (int i = 0; i < 4; ++i) g->r_writes[i]->Set(w[i]);
      g->r_write_bytes->Set(rs.write_bytes);
      g->r_read_bytes->Set(rs.read_bytes);
      g->r_refreshes->Set(rs.refreshes);
    }
    if (!s.ssd) return;
    const SsdTierStats& d = *s.ssd;
    g->entries[1]->Set(static_cast<double>(d.entries));
    g->bytes[1]->Set(static_cast<double>(d.live_payload_bytes));
    g->capacity[1]->Set(static_cast<double>(d.capacity_bytes));
    g->ssd_user_written->Set(d.user_bytes_written);
    g->ssd_device_written->Set(d.device_bytes_written);
    g->ssd_device_read->Set(d.device_bytes_read);
    const uint64_t lat[4] = {d.write_p50_us, d.write_p99_us, d.read_p50_us, d.read_p99_us};
    for (int i = 0; i < 4; ++i) g->lat[i]->Set(static_cast<double>(lat[i]) * 1e-6);
    g->reclaimed->Set(d.segments_reclaimed);
    g->reinserted->Set(d.reinserted_entries);
    g->dropped_on_reclaim->Set(d.dropped_on_reclaim);
    g->checksum_failures->Set(d.checksum_failures);
    g->io_errors->Set(d.io_errors);
    g->rejected[0]->Set(d.rejected_cold);
    g->rejected[1]->Set(d.rejected_budget);
    g->rejected[2]->Set(d.rejected_queue_full);
    g->segments[0]->Set(static_cast<double>(d.slots));
    g->segments[1]->Set(static_cast<double>(d.slots_in_use));
    g->segments[2]->Set(static_cast<double>(d.slots_failed));
    g->write_amp->Set(d.write_amplification);
  });
  return absl::OkStatus();
}

absl::Status RegisterTenantMetrics(MetricsRegistry* r, const TierManager* tm, const Auth* auth) {
  struct Children {
    std::vector<Gauge*> bytes, entries, quota_bytes, quota_entries, ssd_bytes, ssd_quota;
  };
  auto c = std::make_shared<Children>();
  const std::pair<const char*, const char*> families[] = {
      {"adaptcache_tenant_dram_bytes", "DRAM pool bytes held by the tenant's entries."},
      {"adaptcache_tenant_entries", "DRAM entries of the tenant."},
      {"adaptcache_tenant_dram_quota_bytes", "The tenant's DRAM quota in bytes (0 = none)."},
      {"adaptcache_tenant_entry_quota", "The tenant's DRAM entry quota (0 = none)."},
      {"adaptcache_tenant_ssd_bytes", "SSD container bytes held by the tenant's entries."},
      {"adaptcache_tenant_ssd_quota_bytes", "The tenant's SSD quota in bytes (0 = none)."},
  };
  std::vector<Gauge*>* outs[] = {&c->bytes, &c->entries, &c->quota_bytes, &c->quota_entries, &c->ssd_bytes,
                                 &c->ssd_quota};
  for (size_t f = 0; f < std::size(outs); ++f) {
    auto fam = r->AddGauge(families[f].first, families[f].second, {"tenant"});
    if (!fam.ok()) return fam.status();
    for (const auto& t : auth->tenants()) {
      auto g = (*fam)->WithLabels({t->name});
      if (!g.ok()) return g.status();
      outs[f]->push_back(*g);
    }
  }
  r->AddCollector([c, tm, auth] {
    for (size_t i = 0; i < auth->tenants().size(); ++i) {
      const auto ids = auth->NamespaceIdsOf(static_cast<int>(i));
      const NamespaceUsage u = tm->DramUsageOf(ids);
      c->bytes[i]->Set(static_cast<double>(u.bytes));
      c->entries[i]->Set(static_cast<double>(u.entries));
      c->quota_bytes[i]->Set(static_cast<double>(auth->tenants()[i]->dram_bytes));
      c->quota_entries[i]->Set(static_cast<double>(auth->tenants()[i]->max_entries));
      c->ssd_bytes[i]->Set(static_cast<double>(tm->SsdUsageOf(ids).bytes));
      c->ssd_quota[i]->Set(static_cast<double>(auth->tenants()[i]->ssd_bytes));
    }
  });
  return absl::OkStatus();
}

}  // namespace adaptcache::server
