#include "storage/remote_tier.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "spdlog/spdlog.h"

namespace adaptcache {
namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kBatchOps = 64;               // writes per pipelined batch
constexpr uint64_t kBatchBytes = 16ull << 20;  // ... and their bytes
constexpr int64_t kLogEveryNs = 10'000'000'000;  // one warning per 10 s
constexpr char kStage[] = "remote tier";
const char* const kOpNames[4] = {"lookup", "get", "set", "del"};

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

std::string_view View(ConstByteSpan b) {
  return std::string_view(reinterpret_cast<const char*>(b.data()), b.size());
}

}  // namespace

std::string_view RemoteWriteModeName(RemoteWriteMode m) {
  switch (m) {
    case RemoteWriteMode::kOff: return "off";
    case RemoteWriteMode::kWriteThrough: return "write-through";
    case RemoteWriteMode::kOnEviction: return "on-eviction";
  }
  return "off";
}

absl::StatusOr<RemoteWriteMode> ParseRemoteWriteMode(std::string_view text) {
  for (auto m : {RemoteWriteMode::kOff, RemoteWriteMode::kWriteThrough, RemoteWriteMode::kOnEviction}) {
    if (text == RemoteWriteModeName(m)) return m;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("remote write mode '", std::string(text), "': expected off, write-through or on-eviction"));
}

RemoteTier::RemoteTier(RemoteTierOptions opts) : opts_(std::move(opts)) {}

absl::StatusOr<std::unique_ptr<RemoteTier>> RemoteTier::Create(RemoteTierOptions opts) {
  if (opts.max_value_bytes < kContainerHeaderBytes) {
    return absl::InvalidArgumentError("remote tier: max_value_bytes is smaller than a container header");
  }
  RedisClusterOptions co;
  co.seeds = opts.nodes;
  co.password = opts.password;
  co.timeout_ms = opts.timeout_ms;
  std::unique_ptr<RemoteTier> rt(new RemoteTier(std::move(opts)));
  auto cluster = RedisCluster::Create(std::move(co));
  if (!cluster.ok()) return cluster.status();
  rt->cluster_ = std::move(*cluster);
  if (rt->opts_.measure) rt->Measure();
  rt->writer_ = std::thread([p = rt.get()] { p->WriterLoop(); });
  return rt;
}

RemoteTier::~RemoteTier() {
  (void)Drain(std::chrono::seconds(2));
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
    dropped_.fetch_add(queue_.size(), std::memory_order_relaxed);
    queue_.clear();
    queued_keys_.clear();
    queued_bytes_ = 0;
  }
  cv_.notify_all();
  if (writer_.joinable()) writer_.join();
}

std::string RemoteTier::RedisKey(const EntryKey& key) const {
  return absl::StrFormat("%s%016x:%s", opts_.key_prefix, key.ns, key.key.ToHex());
}

void RemoteTier::NoteError(OpKind op, const absl::Status& st) {
  errors_[op].fetch_add(1, std::memory_order_relaxed);
  const int64_t now = NowNs();
  int64_t last = last_log_ns_.load(std::memory_order_relaxed);
  if (now - last >= kLogEveryNs && last_log_ns_.compare_exchange_strong(last, now)) {
    spdlog::warn("{}: Redis {} failed ({}); serving the local tiers (next such line in 10 s at "
                 "the earliest)",
                 kStage, kOpNames[op], std::string(st.message()));
  }
}

void RemoteTier::Measure() {
  // Round trip: the median of a few PINGs to the node of the probe key.
  std::mt19937_64 rng(std::random_device{}());
  const std::string probe = absl::StrFormat("%sprobe:%016x", opts_.key_prefix, rng());
  std::vector<double> rtt;
  for (int i = 0; i < 7; ++i) {
    RedisCommand c{{"EXISTS", probe}, probe};
    const auto t0 = Clock::now();
    auto r = cluster_->Execute(std::span<const RedisCommand>(&c, 1));
    if (!r[0].ok()) return;
    rtt.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::sort(rtt.begin(), rtt.end());
  const std::string value(1 << 20, 'p');
  double best = 0;
  for (int i = 0; i < 3; ++i) {
    RedisCommand set{{"SET", probe, value}, probe};
    if (!cluster_->Execute(std::span<const RedisCommand>(&set, 1))[0].ok()) break;
    RedisCommand get{{"GET", probe}, probe};
    const auto t0 = Clock::now();
    auto r = cluster_->Execute(std::span<const RedisCommand>(&get, 1));
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (!r[0].ok() || r[0].str().size() != value.size()) break;
    const double bps = value.size() / std::max(1e-9, s - rtt[rtt.size() / 2]);
    best = std::max(best, bps);
  }
  RedisCommand del{{"DEL", probe}, probe};
  (void)cluster_->Execute(std::span<const RedisCommand>(&del, 1));
  if (best <= 0) return;
  link_.latency_s = rtt[rtt.size() / 2];
  link_.bandwidth_Bps = best;
  link_.measured = true;
  spdlog::info("{}: round trip {:.0f} us, {:.2f} GB/s for 1 MiB values (measured at start-up)",
               kStage, link_.latency_s * 1e6, link_.bandwidth_Bps / 1e9);
}

std::vector<std::optional<ContainerHeader>> RemoteTier::Heads(std::span<const EntryKey> keys) {
  std::vector<std::optional<ContainerHeader>> out(keys.size());
  if (keys.empty()) return out;
  std::vector<std::string> names;
  names.reserve(keys.size());
  for (const auto& k : keys) names.push_back(RedisKey(k));
  static const std::string kEnd = std::to_string(kContainerHeaderBytes - 1);
  std::vector<RedisCommand> cmds;
  cmds.reserve(keys.size());
  for (const auto& n : names) cmds.push_back(RedisCommand{{"GETRANGE", n, "0", kEnd}, n});
  auto res = cluster_->Execute(cmds);
  bool failed = false;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (!res[i].ok()) {
      if (!failed) NoteError(kLookup, res[i].status);
      failed = true;
      lookup_misses_.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    const std::string_view head = res[i].str();
    if (head.empty()) {  // GETRANGE of a missing key
      lookup_misses_.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    auto h = CheckContainerHeader(ConstByteSpan(reinterpret_cast<const std::byte*>(head.data()), head.size()));
    if (!h.ok() || h->total_bytes > opts_.max_value_bytes) {
      checksum_failures_.fetch_add(1, std::memory_order_relaxed);
      lookup_misses_.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    lookup_hits_.fetch_add(1, std::memory_order_relaxed);
    out[i] = *h;
  }
  return out;
}

absl::StatusOr<uint64_t> RemoteTier::Get(
    const EntryKey& key, const std::function<absl::StatusOr<ByteSpan>(uint64_t)>& sink) {
  const std::string name = RedisKey(key);
  RedisCommand c{{"GET", name}, name};
  auto r = cluster_->Execute(std::span<const RedisCommand>(&c, 1));
  if (!r[0].ok()) {
    NoteError(kGet, r[0].status);
    misses_.fetch_add(1, std::memory_order_relaxed);
    return absl::NotFoundError(absl::StrCat("remote miss: ", r[0].status.message()));
  }
  if (r[0].nil()) {
    misses_.fetch_add(1, std::memory_order_relaxed);
    return absl::NotFoundError("remote miss");
  }
  const std::string_view v = r[0].str();
  const ConstByteSpan bytes(reinterpret_cast<const std::byte*>(v.data()), v.size());
  auto parsed = ParseContainer(bytes, /*verify_payload_crc=*/true);
  if (!parsed.ok() || v.size() > opts_.max_value_bytes) {
    checksum_failures_.fetch_add(1, std::memory_order_relaxed);
    misses_.fetch_add(1, std::memory_order_relaxed);
    spdlog::debug("{}: value of {} failed its check ({})", kStage, name,
                  parsed.ok() ? "too large" : std::string(parsed.status().message()));
    return absl::NotFoundError("remote miss: value failed its check");
  }
  auto dst = sink(v.size());
  if (!dst.ok()) return dst.status();
  if (dst->size() < v.size()) return absl::InternalError("remote tier: sink buffer too small");
  std::memcpy(dst->data(), v.data(), v.size());
  hits_.fetch_add(1, std::memory_order_relaxed);
  read_bytes_.fetch_add(v.size(), std::memory_order_relaxed);
  return static_cast<uint64_t>(v.size());
}

size_t RemoteTier::UnqueueLocked(const EntryKey& key) {
  auto q = queued_keys_.find(key);
  if (q == queued_keys_.end()) return 0;
  size_t superseded = 0;
  for (auto it = queue_.begin(); it != queue_.end();) {
    if (it->key == key) {
      queued_bytes_ -= it->value.size();
      if (!it->del) ++superseded;
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
  queued_keys_.erase(q);
  return superseded;
}

bool RemoteTier::EnqueueLocked(Op op) {
  // A newer write of the key supersedes queued ones.
  dropped_.fetch_add(UnqueueLocked(op.key), std::memory_order_relaxed);
  queued_bytes_ += op.value.size();
  queued_keys_[op.key] += 1;
  queue_.push_back(std::move(op));
  cv_.notify_all();
  return true;
}

bool RemoteTier::Enqueue(const EntryKey& key, ConstByteSpan container) {
  std::lock_guard<std::mutex> l(mu_);
  if (stop_) return false;
  const bool too_large = container.size() > opts_.max_value_bytes;
  const bool full = queue_.size() >= opts_.queue_entries ||
                    queued_bytes_ + container.size() > opts_.queue_bytes;
  if (too_large || full) {
    (too_large ? too_large_ : dropped_).fetch_add(1, std::memory_order_relaxed);
    Op del;
    del.key = key;
    del.del = true;
    EnqueueLocked(std::move(del));  // DELs carry no bytes: always admitted
    return false;
  }
  Op op;
  op.key = key;
  op.value.assign(container.begin(), container.end());
  return EnqueueLocked(std::move(op));
}

std::vector<bool> RemoteTier::Delete(std::span<const EntryKey> keys) {
  std::vector<bool> out(keys.size(), false);
  if (keys.empty()) return out;
  {
    std::unique_lock<std::mutex> l(mu_);
    for (const auto& k : keys) (void)UnqueueLocked(k);
    // A SET of these keys already sent must land before our DELs do.
    const auto deadline = Clock::now() + std::chrono::milliseconds(4 * opts_.timeout_ms + 1000);
    const bool drained = cv_.wait_until(l, deadline, [&] {
      return std::none_of(keys.begin(), keys.end(), [&](const EntryKey& k) { return in_flight_.contains(k); });
    });
    if (!drained) {
      // The writer sends queued ops after the batch in flight: DELs queued now land after
      // that SET, so the deleted value cannot stay in the cluster.
      NoteError(kDel, absl::DeadlineExceededError("a write of a deleted key is still in flight; DELs queued"));
      for (const auto& k : keys) {
        Op del;
        del.key = k;
        del.del = true;
        EnqueueLocked(std::move(del));
      }
      return out;
    }
  }
  std::vector<std::string> names;  // own the strings the commands view
  names.reserve(keys.size());
  for (const auto& k : keys) names.push_back(RedisKey(k));
  std::vector<RedisCommand> cmds;
  cmds.reserve(keys.size());
  for (const auto& n : names) cmds.push_back(RedisCommand{{"DEL", n}, n});
  auto res = cluster_->Execute(cmds);
  bool logged = false;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (res[i].ok()) {
      out[i] = res[i].integer() > 0;
    } else if (!logged) {
      NoteError(kDel, res[i].status);
      logged = true;
    }
  }
  return out;
}

bool RemoteTier::Drain(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> l(mu_);
  return cv_.wait_for(l, timeout, [&] { return queue_.empty() && in_flight_.empty(); });
}

void RemoteTier::WriterLoop() {
  std::vector<Op> batch;
  std::vector<std::string> names;
  std::vector<RedisCommand> cmds;
  std::unique_lock<std::mutex> l(mu_);
  while (true) {
    cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    batch.clear();
    uint64_t bytes = 0;
    while (!queue_.empty() && batch.size() < kBatchOps && (batch.empty() || bytes < kBatchBytes)) {
      bytes += queue_.front().value.size();
      queued_bytes_ -= queue_.front().value.size();
      in_flight_[queue_.front().key] += 1;
      if (auto q = queued_keys_.find(queue_.front().key); q != queued_keys_.end() && --q->second == 0) {
        queued_keys_.erase(q);
      }
      batch.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    l.unlock();
    names.clear();
    cmds.clear();
    for (const auto& op : batch) names.push_back(RedisKey(op.key));
    for (size_t i = 0; i < batch.size(); ++i) {
      if (batch[i].del) {
        cmds.push_back(RedisCommand{{"DEL", names[i]}, names[i]});
      } else {
        cmds.push_back(RedisCommand{{"SET", names[i], View(batch[i].value)}, names[i]});
      }
    }
    auto res = cluster_->Execute(cmds);
    bool logged = false;
    for (size_t i = 0; i < batch.size(); ++i) {
      if (res[i].ok()) {
        if (!batch[i].del) {
          written_.fetch_add(1, std::memory_order_relaxed);
          write_bytes_.fetch_add(batch[i].value.size(), std::memory_order_relaxed);
        }
        continue;
      }
      if (!logged) NoteError(batch[i].del ? kDel : kSet, res[i].status);
      logged = true;
      if (!batch[i].del) write_failed_.fetch_add(1, std::memory_order_relaxed);
    }
    l.lock();
    for (const auto& op : batch) {
      auto it = in_flight_.find(op.key);
      if (it != in_flight_.end() && --it->second == 0) in_flight_.erase(it);
    }
    cv_.notify_all();
  }
}

RemoteTierStats RemoteTier::Stats() const {
  RemoteTierStats s;
  const auto cs = cluster_->Stats();
  s.up = cs.up;
  s.nodes = cs.nodes;
  s.refreshes = cs.refreshes;
  s.redirects = cs.redirects;
  s.hits = hits_.load(std::memory_order_relaxed);
  s.misses = misses_.load(std::memory_order_relaxed);
  s.lookup_hits = lookup_hits_.load(std::memory_order_relaxed);
  s.lookup_misses = lookup_misses_.load(std::memory_order_relaxed);
  s.checksum_failures = checksum_failures_.load(std::memory_order_relaxed);
  for (int i = 0; i < 4; ++i) s.errors[i] = errors_[i].load(std::memory_order_relaxed);
  s.written = written_.load(std::memory_order_relaxed);
  s.write_bytes = write_bytes_.load(std::memory_order_relaxed);
  s.dropped = dropped_.load(std::memory_order_relaxed);
  s.too_large = too_large_.load(std::memory_order_relaxed);
  s.write_failed = write_failed_.load(std::memory_order_relaxed);
  s.read_bytes = read_bytes_.load(std::memory_order_relaxed);
  std::lock_guard<std::mutex> l(mu_);
  s.queue_bytes = queued_bytes_;
  s.queue_entries = queue_.size();
  return s;
}

}  // namespace adaptcache
