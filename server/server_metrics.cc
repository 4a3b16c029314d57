#include "server/server_metrics.h"

#include "absl/strings/str_cat.h"

namespace adaptcache::server {
namespace {

// Unwraps a registration result inside Create().
#define AC_ASSIGN_OR_RETURN_METRIC(lhs, expr) \
  do {                                        \
    auto _r = (expr);                         \
    if (!_r.ok()) return _r.status();         \
    lhs = *_r;                                \
  } while (0)

}  // namespace

const char* OpName(Op op) {
  switch (op) {
    case Op::kLookup: return "lookup";
    case Op::kPut: return "put";
    case Op::kReservePut: return "reserve_put";
    case Op::kCommitPut: return "commit_put";
    case Op::kGet: return "get";
    case Op::kRelease: return "release";
    case Op::kDelete: return "delete";
    case Op::kPoolInfo: return "pool_info";
    case Op::kStats: return "stats";
    case Op::kHealth: return "health";
    case Op::kLeasePrefix: return "lease_prefix";
    case Op::kCount: break;
  }
  return "unknown";
}

const char* GrpcCodeName(grpc::StatusCode code) {
  static const char* kNames[] = {"OK",
                                 "CANCELLED",
                                 "UNKNOWN",
                                 "INVALID_ARGUMENT",
                                 "DEADLINE_EXCEEDED",
                                 "NOT_FOUND",
                                 "ALREADY_EXISTS",
                                 "PERMISSION_DENIED",
                                 "RESOURCE_EXHAUSTED",
                                 "FAILED_PRECONDITION",
                                 "ABORTED",
                                 "OUT_OF_RANGE",
                                 "UNIMPLEMENTED",
                                 "INTERNAL",
                                 "UNAVAILABLE",
                                 "DATA_LOSS",
                                 "UNAUTHENTICATED"};
  int c = static_cast<int>(code);
  return c >= 0 && c < 17 ? kNames[c] : "UNKNOWN";
}

absl::StatusOr<std::unique_ptr<ServerMetrics>> ServerMetrics::Create(MetricsRegistry* registry,
                                                                     TierManager* tm) {
  std::unique_ptr<ServerMetrics> m(new ServerMetrics());
  m->registry_ = registry;
  m->tm_ = tm;
  MetricsRegistry& r = *registry;
  AC_ASSIGN_OR_RETURN_METRIC(m->requests_,
                             r.AddCounter("adaptcache_requests_total",
                                          "RPCs by operation and gRPC status code.", {"op", "code"}));
  Family<Histogram>* latency = nullptr;
  AC_ASSIGN_OR_RETURN_METRIC(latency, r.AddHistogram("adaptcache_request_duration_seconds",
                                                     "RPC latency by operation.", {"op"},
                                                     DefaultLatencyBuckets()));
  for (int i = 0; i < static_cast<int>(Op::kCount); ++i) {
    AC_ASSIGN_OR_RETURN_METRIC(m->latency_[i], latency->WithLabels({OpName(static_cast<Op>(i))}));
  }
  Family<Counter>* lookups = nullptr;
  AC_ASSIGN_OR_RETURN_METRIC(lookups, r.AddCounter("adaptcache_lookup_keys_total",
                                                   "Keys probed by Lookup, by result.",
                                                   {"result", "tier"}));
  AC_ASSIGN_OR_RETURN_METRIC(m->key_hits_, lookups->WithLabels({"hit", "dram"}));
  AC_ASSIGN_OR_RETURN_METRIC(m->key_misses_, lookups->WithLabels({"miss", "none"}));
  Family<Counter>* gets = nullptr;
  AC_ASSIGN_OR_RETURN_METRIC(gets, r.AddCounter("adaptcache_gets_total", "Get requests by result.",
                                                {"result", "tier"}));
  AC_ASSIGN_OR_RETURN_METRIC(m->get_hits_, gets->WithLabels({"hit", "dram"}));
  AC_ASSIGN_OR_RETURN_METRIC(m->get_misses_, gets->WithLabels({"miss", "none"}));
  Family<Counter>* put_bytes = nullptr;
  AC_ASSIGN_OR_RETURN_METRIC(put_bytes, r.AddCounter("adaptcache_put_bytes_total",
                                                     "Bytes of committed puts: raw tensor bytes "
                                                     "received and container bytes stored.",
                                                     {"kind"}));
  AC_ASSIGN_OR_RETURN_METRIC(m->put_raw_bytes_, put_bytes->WithLabels({"raw"}));
  AC_ASSIGN_OR_RETURN_METRIC(m->put_stored_bytes_, put_bytes->WithLabels({"stored"}));
  Family<Counter>* get_bytes = nullptr;
  AC_ASSIGN_OR_RETURN_METRIC(get_bytes, r.AddCounter("adaptcache_get_bytes_total",
                                                     "Container bytes handed out by Get.",
                                                     {"transfer"}));
  AC_ASSIGN_OR_RETURN_METRIC(m->get_shm_bytes_, get_bytes->WithLabels({"shm"}));
  AC_ASSIGN_OR_RETURN_METRIC(m->get_stream_bytes_, get_bytes->WithLabels({"stream"}));
  Family<Counter>* data_loss = nullptr;
  AC_ASSIGN_OR_RETURN_METRIC(data_loss, r.AddCounter("adaptcache_data_loss_total",
                                                     "Entries dropped because their bytes failed "
                                                     "a checksum."));
  m->data_loss_ = data_loss->Get();
  Family<Counter>* refusals = nullptr;
  AC_ASSIGN_OR_RETURN_METRIC(refusals, r.AddCounter("adaptcache_auth_refusals_total",
                                                    "Calls refused: no tenant identified "
                                                    "(unauthenticated) or a namespace not the "
                                                    "tenant's (permission).",
                                                    {"reason"}));
  AC_ASSIGN_OR_RETURN_METRIC(m->unauthenticated_, refusals->WithLabels({"unauthenticated"}));
  AC_ASSIGN_OR_RETURN_METRIC(m->denied_, refusals->WithLabels({"permission"}));
  Family<Gauge>* inflight = nullptr;
  AC_ASSIGN_OR_RETURN_METRIC(inflight, r.AddGauge("adaptcache_inflight_puts",
                                                  "Put/CommitPut requests being processed."));
  m->inflight_puts_ = inflight->Get();

  AC_ASSIGN_OR_RETURN_METRIC(m->entries_by_codec_,
                             r.AddGauge("adaptcache_pool_entries_by_codec",
                                        "Entries in the DRAM pool by codec config.", {"codec"}));
  AC_ASSIGN_OR_RETURN_METRIC(m->bytes_by_codec_,
                             r.AddGauge("adaptcache_pool_entry_bytes_by_codec",
                                        "Container bytes in the DRAM pool by codec config.",
                                        {"codec"}));
  struct G {
    Gauge** slot;
    const char* name;
    const char* help;
  };
  const G gauges[] = {
      {&m->capacity_, "adaptcache_pool_capacity_bytes", "DRAM pool size."},
      {&m->used_, "adaptcache_pool_used_bytes",
       "Allocated pool bytes (entries, reservations, puts in flight)."},
      {&m->entry_bytes_, "adaptcache_pool_entry_bytes", "Pool bytes held by committed entries."},
      {&m->entries_, "adaptcache_pool_entries", "Committed entries in the DRAM pool."},
      {&m->leases_, "adaptcache_leases_outstanding", "Leases not yet released or expired."},
      {&m->reservations_, "adaptcache_reservations_outstanding",
       "ReservePut reservations not yet committed or expired."},
      {&m->reserved_bytes_, "adaptcache_reserved_bytes", "Pool bytes held by reservations."},
      {&m->largest_free_, "adaptcache_pool_largest_free_extent_bytes",
       "Largest free extent in the pool."},
      {&m->fragmentation_, "adaptcache_pool_fragmentation",
       "1 - largest free extent / free bytes."},
      {&m->mlocked_, "adaptcache_pool_mlocked", "1 if the whole pool is locked in memory."},
      {&m->huge_pages_, "adaptcache_pool_huge_pages",
       "1 if huge pages were advised and the host honours the advice."},
      {&m->uptime_, "adaptcache_uptime_seconds", "Seconds since the daemon started."},
  };
  for (const auto& g : gauges) {
    Family<Gauge>* f = nullptr;
    AC_ASSIGN_OR_RETURN_METRIC(f, r.AddGauge(g.name, g.help));
    *g.slot = f->Get();
  }
  struct C {
    Counter** slot;
    const char* name;
    const char* help;
  };
  const C counters[] = {
      {&m->evictions_, "adaptcache_evictions_total", "Entries evicted from the DRAM pool."},
      {&m->expired_leases_, "adaptcache_expired_leases_total", "Leases that expired unreleased."},
      {&m->expired_reservations_, "adaptcache_expired_reservations_total",
       "Reservations that expired uncommitted."},
      {&m->alloc_failures_, "adaptcache_pool_allocation_failures_total",
       "Pool allocations refused (pool full of leased or reserved extents)."},
  };
  for (const auto& c : counters) {
    Family<Counter>* f = nullptr;
    AC_ASSIGN_OR_RETURN_METRIC(f, r.AddCounter(c.name, c.help));
    *c.slot = f->Get();
  }
  ServerMetrics* raw = m.get();
  r.AddCollector([raw] { raw->Collect(); });
  return m;
}

void ServerMetrics::Record(Op op, grpc::StatusCode code, double seconds) {
  const int o = static_cast<int>(op);
  int c = static_cast<int>(code);
  if (c < 0 || c >= kCodes) c = static_cast<int>(grpc::StatusCode::UNKNOWN);
  Counter* counter = by_code_[o][c].load(std::memory_order_acquire);
  if (counter == nullptr) {
    // First request with this (op, code): create the child once, then cache it.
    auto child = requests_->WithLabels({OpName(op), GrpcCodeName(static_cast<grpc::StatusCode>(c))});
    if (!child.ok()) return;
    counter = *child;
    by_code_[o][c].store(counter, std::memory_order_release);
  }
  counter->Inc();
  latency_[o]->Observe(seconds);
}

uint64_t ServerMetrics::requests(Op op) const {
  uint64_t total = 0;
  for (const auto& slot : by_code_[static_cast<int>(op)]) {
    if (Counter* c = slot.load(std::memory_order_acquire)) total += c->Value();
  }
  return total;
}

uint64_t ServerMetrics::puts_ok() const {
  uint64_t total = 0;
  for (Op op : {Op::kPut, Op::kCommitPut}) {
    Counter* c = by_code_[static_cast<int>(op)][0].load(std::memory_order_acquire);
    if (c != nullptr) total += c->Value();
  }
  return total;
}

std::map<std::string, ServerMetrics::CodecUsage> ServerMetrics::UsageByCodec() const {
  std::map<std::string, CodecUsage> usage;
  tm_->ForEachInDram([&](const EntryKey&, const EntryMeta& meta) {
    auto& u = usage[meta.codec];
    ++u.entries;
    u.bytes += meta.stored_bytes;
  });
  return usage;
}

void ServerMetrics::Collect() {
  const DramTierStats s = tm_->DramStats();
  capacity_->Set(static_cast<double>(s.capacity_bytes));
  used_->Set(static_cast<double>(s.used_bytes));
  entry_bytes_->Set(static_cast<double>(s.entry_bytes));
  entries_->Set(static_cast<double>(s.entries));
  leases_->Set(static_cast<double>(s.leases_outstanding));
  reservations_->Set(static_cast<double>(s.reservations_outstanding));
  reserved_bytes_->Set(static_cast<double>(s.reserved_bytes));
  largest_free_->Set(static_cast<double>(s.largest_free_extent));
  fragmentation_->Set(s.fragmentation);
  evictions_->Set(s.evictions);
  expired_leases_->Set(s.expired_leases);
  expired_reservations_->Set(s.expired_reservations);
  alloc_failures_->Set(s.allocation_failures);
  mlocked_->Set(tm_->pool_status().mlocked ? 1 : 0);
  huge_pages_->Set(tm_->pool_status().huge_pages_effective ? 1 : 0);
  uptime_->Set(std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());

  auto usage = UsageByCodec();
  for (const auto& [codec, u] : usage) codecs_seen_.insert(codec);
  for (const auto& codec : codecs_seen_) {
    auto it = usage.find(codec);
    auto e = entries_by_codec_->WithLabels({codec});
    auto b = bytes_by_codec_->WithLabels({codec});
    if (!e.ok() || !b.ok()) continue;
    (*e)->Set(it == usage.end() ? 0.0 : static_cast<double>(it->second.entries));
    (*b)->Set(it == usage.end() ? 0.0 : static_cast<double>(it->second.bytes));
  }
}

}  // namespace adaptcache::server
