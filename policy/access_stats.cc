#include "policy/access_stats.h"

#include <cmath>
#include <mutex>

#include "absl/container/flat_hash_map.h"

namespace adaptcache::policy {

struct AccessStats::Shard {
  mutable std::mutex mu;
  absl::flat_hash_map<EntryKey, AccessRecord> map;
};

absl::StatusOr<std::unique_ptr<AccessStats>> AccessStats::Create(const AccessStatsOptions& o) {
  if (o.half_life_ns <= 0) return absl::InvalidArgumentError("half_life_ns must be > 0");
  if (o.shards == 0 || o.shards > 4096) {
    return absl::InvalidArgumentError("shards must be in [1, 4096]");
  }
  return std::unique_ptr<AccessStats>(new AccessStats(o));
}

AccessStats::AccessStats(const AccessStatsOptions& o) : options_(o) {
  uint32_t n = 1;
  while (n < o.shards) n <<= 1;
  shards_.reserve(n);
  for (uint32_t i = 0; i < n; ++i) shards_.push_back(std::make_unique<Shard>());
  shard_mask_ = n - 1;
}

AccessStats::~AccessStats() = default;

AccessStats::Shard& AccessStats::ShardFor(const EntryKey& key) const {
  // Keys are uniform hashes already; mix in the namespace so each namespace spreads too.
  const uint64_t h = key.key.hi ^ (key.ns * 0x9E3779B97F4A7C15ull);
  return *shards_[(h >> 40) & shard_mask_];
}

float AccessStats::Decay(float freq, int64_t from_ns, int64_t to_ns, int64_t half_life_ns) {
  if (to_ns <= from_ns || freq == 0.f) return freq;
  const double halves = static_cast<double>(to_ns - from_ns) / static_cast<double>(half_life_ns);
  return static_cast<float>(freq * std::exp2(-halves));
}

bool AccessStats::Record(const EntryKey& key, int64_t now_ns) {
  Shard& s = ShardFor(key);
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.map.find(key);
  if (it == s.map.end()) {
    if (options_.max_entries > 0) {
      // Reserve a slot first so concurrent inserts cannot overshoot the bound.
      if (size_.fetch_add(1, std::memory_order_relaxed) >= options_.max_entries) {
        size_.fetch_sub(1, std::memory_order_relaxed);
        return false;
      }
    } else {
      size_.fetch_add(1, std::memory_order_relaxed);
    }
    s.map.emplace(key, AccessRecord{1.f, now_ns});
    return true;
  }
  AccessRecord& r = it->second;
  r.freq = Decay(r.freq, r.last_access_ns, now_ns, options_.half_life_ns) + 1.f;
  if (now_ns > r.last_access_ns) r.last_access_ns = now_ns;
  return true;
}

std::optional<AccessRecord> AccessStats::Get(const EntryKey& key, int64_t now_ns) const {
  Shard& s = ShardFor(key);
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.map.find(key);
  if (it == s.map.end()) return std::nullopt;
  AccessRecord r = it->second;
  r.freq = Decay(r.freq, r.last_access_ns, now_ns, options_.half_life_ns);
  return r;
}

float AccessStats::Frequency(const EntryKey& key, int64_t now_ns) const {
  auto r = Get(key, now_ns);
  return r ? r->freq : 0.f;
}

bool AccessStats::Erase(const EntryKey& key) {
  Shard& s = ShardFor(key);
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.map.erase(key) == 0) return false;
  size_.fetch_sub(1, std::memory_order_relaxed);
  return true;
}

uint64_t AccessStats::size() const { return size_.load(std::memory_order_relaxed); }

void AccessStats::ForEach(int64_t now_ns,
                          const std::function<void(const EntryKey&, const AccessRecord&)>& fn) const {
  for (const auto& s : shards_) {
    std::lock_guard<std::mutex> lock(s->mu);
    for (const auto& [key, rec] : s->map) {
      AccessRecord r = rec;
      r.freq = Decay(r.freq, r.last_access_ns, now_ns, options_.half_life_ns);
      fn(key, r);
    }
  }
}

double AccessStats::BytesPerEntry() const {
  uint64_t entries = 0, bytes = sizeof(*this);
  for (const auto& s : shards_) {
    std::lock_guard<std::mutex> lock(s->mu);
    entries += s->map.size();
    // A flat_hash_map keeps one slot and one control byte per bucket.
    bytes += sizeof(Shard) +
             s->map.bucket_count() * (sizeof(std::pair<const EntryKey, AccessRecord>) + 1);
  }
  return entries == 0 ? 0 : static_cast<double>(bytes) / static_cast<double>(entries);
}

}  // namespace adaptcache::policy
