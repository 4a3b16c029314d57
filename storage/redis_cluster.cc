#include "storage/redis_cluster.h"

#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace adaptcache {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kMaxRounds = 5;  // first try plus redirects
constexpr auto kBackoffMin = std::chrono::milliseconds(250);
constexpr auto kBackoffMax = std::chrono::seconds(5);
constexpr auto kPeriodicRefresh = std::chrono::seconds(10);
constexpr auto kMinRefreshGap = std::chrono::milliseconds(100);

uint16_t Crc16(std::string_view s) {
  uint16_t crc = 0;
  for (unsigned char c : s) {
    crc ^= static_cast<uint16_t>(c) << 8;
    for (int i = 0; i < 8; ++i) crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021) : crc << 1;
  }
  return crc;
}

bool ParseInt(std::string_view s, int* out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

absl::Status SplitHostPort(std::string_view text, std::string* host, int* port) {
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return absl::InvalidArgumentError(absl::StrCat("'", std::string(text), "' is not host:port"));
  }
  std::string_view h = text.substr(0, colon);
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  int p = 0;
  if (!ParseInt(text.substr(colon + 1), &p) || p <= 0 || p > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("'", std::string(text), "': bad port"));
  }
  *host = std::string(h);
  *port = p;
  return absl::OkStatus();
}

timeval ToTimeval(uint32_t ms) {
  timeval tv;
  tv.tv_sec = ms / 1000;
  tv.tv_usec = static_cast<suseconds_t>(ms % 1000) * 1000;
  return tv;
}

}  // namespace

int RedisKeySlot(std::string_view key) {
  const size_t open = key.find('{');
  if (open != std::string_view::npos) {
    const size_t close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1) {
      key = key.substr(open + 1, close - open - 1);
    }
  }
  return Crc16(key) % kRedisSlots;
}

bool RedisResult::nil() const { return reply && reply->type == REDIS_REPLY_NIL; }
std::string_view RedisResult::str() const {
  if (!reply || (reply->type != REDIS_REPLY_STRING && reply->type != REDIS_REPLY_STATUS)) return {};
  return std::string_view(reply->str, reply->len);
}
long long RedisResult::integer() const {
  return reply && reply->type == REDIS_REPLY_INTEGER ? reply->integer : 0;
}

struct RedisCluster::Conn {
  redisContext* c = nullptr;
  ~Conn() {
    if (c) redisFree(c);
  }
};

struct RedisCluster::Node {
  std::string host;
  int port = 0;
  std::string addr;
  std::mutex mu;
  std::vector<std::unique_ptr<Conn>> idle;  // guarded by mu
  Clock::time_point down_until{};           // guarded by mu
  int fails = 0;                            // guarded by mu
};

RedisCluster::RedisCluster(RedisClusterOptions opts) : opts_(std::move(opts)) {
  slot_node_.fill(-1);
}

absl::StatusOr<std::unique_ptr<RedisCluster>> RedisCluster::Create(RedisClusterOptions opts) {
  if (opts.seeds.empty()) return absl::InvalidArgumentError("remote tier: no Redis nodes given");
  if (opts.timeout_ms == 0) return absl::InvalidArgumentError("remote tier: timeout_ms must be > 0");
  std::unique_ptr<RedisCluster> rc(new RedisCluster(std::move(opts)));
  for (const auto& s : rc->opts_.seeds) {
    std::string host;
    int port = 0;
    if (auto st = SplitHostPort(s, &host, &port); !st.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("remote tier node: ", st.message()));
    }
    rc->seed_nodes_.push_back(rc->NodeIndex(host, port));
  }
  if (auto st = rc->Refresh(); !st.ok()) {
    spdlog::warn("remote tier: no slot map yet ({}); serving local tiers until Redis answers",
                 std::string(st.message()));
  }
  RedisCluster* self = rc.get();
  rc->refresher_ = std::thread([self] {
    std::unique_lock<std::mutex> l(self->refresher_mu_);
    while (!self->stop_) {
      self->refresher_cv_.wait_for(l, kPeriodicRefresh,
                                   [self] { return self->stop_ || self->refresh_requested_; });
      if (self->stop_) break;
      self->refresh_requested_ = false;
      l.unlock();
      (void)self->Refresh();
      std::this_thread::sleep_for(kMinRefreshGap);
      l.lock();
    }
  });
  return rc;
}

RedisCluster::~RedisCluster() {
  if (refresher_.joinable()) {
    {
      std::lock_guard<std::mutex> l(refresher_mu_);
      stop_ = true;
    }
    refresher_cv_.notify_all();
    refresher_.join();
  }
}

int RedisCluster::NodeIndex(const std::string& host, int port) {
  const std::string addr = absl::StrCat(host, ":", port);
  {
    std::shared_lock<std::shared_mutex> l(map_mu_);
    if (auto it = node_index_.find(addr); it != node_index_.end()) return it->second;
  }
  std::unique_lock<std::shared_mutex> l(map_mu_);
  if (auto it = node_index_.find(addr); it != node_index_.end()) return it->second;
  auto n = std::make_unique<Node>();
  n->host = host;
  n->port = port;
  n->addr = addr;
  const int idx = static_cast<int>(nodes_.size());
  nodes_.push_back(std::move(n));
  node_index_.emplace(addr, idx);
  return idx;
}

absl::StatusOr<std::unique_ptr<RedisCluster::Conn>> RedisCluster::Acquire(int node) {
  Node* n;
  {
    std::shared_lock<std::shared_mutex> l(map_mu_);
    n = nodes_[node].get();
  }
  {
    std::lock_guard<std::mutex> l(n->mu);
    if (Clock::now() < n->down_until) {
      return absl::UnavailableError(absl::StrCat("Redis node ", n->addr, " is down (backing off)"));
    }
    if (!n->idle.empty()) {
      auto c = std::move(n->idle.back());
      n->idle.pop_back();
      return c;
    }
  }
  const timeval tv = ToTimeval(opts_.timeout_ms);
  auto conn = std::make_unique<Conn>();
  conn->c = redisConnectWithTimeout(n->host.c_str(), n->port, tv);
  if (conn->c == nullptr || conn->c->err) {
    const std::string why = conn->c ? conn->c->errstr : "out of memory";
    MarkDown(node, why);
    return absl::UnavailableError(absl::StrCat("Redis node ", n->addr, ": ", why));
  }
  redisSetTimeout(conn->c, tv);
  redisEnableKeepAlive(conn->c);
  if (!opts_.password.empty()) {
    auto* r = static_cast<redisReply*>(redisCommand(conn->c, "AUTH %b", opts_.password.data(),
                                                    opts_.password.size()));
    std::unique_ptr<redisReply, void (*)(void*)> hold(r, freeReplyObject);
    if (r == nullptr || r->type == REDIS_REPLY_ERROR) {
      const std::string why = r ? std::string(r->str, r->len) : conn->c->errstr;
      if (r == nullptr) MarkDown(node, why);
      return absl::PermissionDeniedError(absl::StrCat("Redis node ", n->addr, " AUTH: ", why));
    }
  }
  return conn;
}

void RedisCluster::Release(int node, std::unique_ptr<Conn> c) {
  Node* n;
  {
    std::shared_lock<std::shared_mutex> l(map_mu_);
    n = nodes_[node].get();
  }
  std::lock_guard<std::mutex> l(n->mu);
  n->fails = 0;
  if (n->idle.size() < opts_.max_idle_per_node) n->idle.push_back(std::move(c));
}

void RedisCluster::MarkDown(int node, const std::string& why) {
  node_failures_.fetch_add(1, std::memory_order_relaxed);
  Node* n;
  {
    std::shared_lock<std::shared_mutex> l(map_mu_);
    n = nodes_[node].get();
  }
  {
    std::lock_guard<std::mutex> l(n->mu);
    n->idle.clear();  // they share the node's fate
    auto backoff = kBackoffMin * (1 << std::min(n->fails, 5));
    if (backoff > kBackoffMax) backoff = kBackoffMax;
    n->down_until = Clock::now() + backoff;
    ++n->fails;
  }
  spdlog::debug("remote tier: Redis node {} failed ({})", n->addr, why);
  MaybeRefresh();
}

void RedisCluster::MaybeRefresh() {
  {
    std::lock_guard<std::mutex> l(refresher_mu_);
    refresh_requested_ = true;
  }
  refresher_cv_.notify_one();
}

absl::Status RedisCluster::Refresh() {
  std::lock_guard<std::mutex> rl(refresh_mu_);
  std::vector<int> order;
  {
    std::shared_lock<std::shared_mutex> l(map_mu_);
    for (int16_t s : slot_node_) {
      if (s >= 0 && std::find(order.begin(), order.end(), s) == order.end()) order.push_back(s);
    }
    for (int i = 0; i < static_cast<int>(nodes_.size()); ++i) {
      if (std::find(order.begin(), order.end(), i) == order.end()) order.push_back(i);
    }
  }
  absl::Status last = absl::UnavailableError("no Redis node answered");
  for (int node : order) {
    last = RefreshFrom(node);
    if (last.ok()) {
      map_ok_.store(true);
      refreshes_.fetch_add(1, std::memory_order_relaxed);
      return last;
    }
  }
  map_ok_.store(false);
  return last;
}

absl::Status RedisCluster::RefreshFrom(int node) {
  auto conn = Acquire(node);
  if (!conn.ok()) return conn.status();
  std::string queried_host;
  {
    std::shared_lock<std::shared_mutex> l(map_mu_);
    queried_host = nodes_[node]->host;
  }
  auto* r = static_cast<redisReply*>(redisCommand((*conn)->c, "CLUSTER SLOTS"));
  std::unique_ptr<redisReply, void (*)(void*)> hold(r, freeReplyObject);
  if (r == nullptr) {
    MarkDown(node, (*conn)->c->errstr);
    return absl::UnavailableError(absl::StrCat("CLUSTER SLOTS: ", (*conn)->c->errstr));
  }
  std::array<int16_t, kRedisSlots> map;
  map.fill(-1);
  if (r->type == REDIS_REPLY_ERROR) {
    const std::string msg(r->str, r->len);
    if (msg.find("cluster support disabled") == std::string::npos) {
      Release(node, std::move(*conn));
      return absl::FailedPreconditionError(absl::StrCat("CLUSTER SLOTS: ", msg));
    }
    map.fill(static_cast<int16_t>(node));  // a standalone Redis owns every slot
  } else if (r->type == REDIS_REPLY_ARRAY) {
    for (size_t i = 0; i < r->elements; ++i) {
      const redisReply* e = r->element[i];
      if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
          e->element[0]->type != REDIS_REPLY_INTEGER || e->element[1]->type != REDIS_REPLY_INTEGER ||
          e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2) {
        continue;
      }
      const redisReply* m = e->element[2];
      if (m->element[0]->type != REDIS_REPLY_STRING || m->element[1]->type != REDIS_REPLY_INTEGER) continue;
      std::string host(m->element[0]->str, m->element[0]->len);
      if (host.empty() || host == "?") host = queried_host;
      const int idx = NodeIndex(host, static_cast<int>(m->element[1]->integer));
      const long long lo = std::max(0LL, e->element[0]->integer);
      const long long hi = std::min<long long>(kRedisSlots - 1, e->element[1]->integer);
      for (long long s = lo; s <= hi; ++s) map[s] = static_cast<int16_t>(idx);
    }
  } else {
    Release(node, std::move(*conn));
    return absl::InternalError("CLUSTER SLOTS: unexpected reply");
  }
  Release(node, std::move(*conn));
  const bool complete = std::none_of(map.begin(), map.end(), [](int16_t s) { return s < 0; });
  {
    std::unique_lock<std::shared_mutex> l(map_mu_);
    slot_node_ = map;
  }
  if (!complete) return absl::UnavailableError("the cluster does not cover every slot");
  return absl::OkStatus();
}

std::vector<RedisResult> RedisCluster::Execute(std::span<const RedisCommand> cmds) {
  const size_t n = cmds.size();
  std::vector<RedisResult> out(n);
  struct Route {
    int node = -1;
    bool asking = false;
  };
  std::vector<Route> route(n);
  std::vector<size_t> pending(n);
  for (size_t i = 0; i < n; ++i) pending[i] = i;

  for (int round = 0; round < kMaxRounds && !pending.empty(); ++round) {
    // Group by node.
    std::vector<std::pair<int, std::vector<size_t>>> batches;
    {
      std::shared_lock<std::shared_mutex> l(map_mu_);
      for (size_t i : pending) {
        int node = route[i].node;
        if (node < 0) node = slot_node_[RedisKeySlot(cmds[i].key)];
        if (node < 0) {
          out[i].status = absl::UnavailableError("no Redis node serves this key's slot");
          continue;
        }
        route[i].node = node;
        auto it = std::find_if(batches.begin(), batches.end(), [&](auto& b) { return b.first == node; });
        if (it == batches.end()) {
          batches.emplace_back(node, std::vector<size_t>{});
          it = batches.end() - 1;
        }
        it->second.push_back(i);
      }
    }
    if (batches.empty()) MaybeRefresh();
    // Write every node's pipeline, then read them.
    std::vector<absl::StatusOr<std::unique_ptr<Conn>>> conns;
    conns.reserve(batches.size());
    std::vector<const char*> argv;
    std::vector<size_t> argl;
    for (auto& [node, idx] : batches) {
      conns.push_back(Acquire(node));
      auto& c = conns.back();
      if (!c.ok()) continue;
      bool failed = false;
      for (size_t i : idx) {
        if (route[i].asking) redisAppendCommand((*c)->c, "ASKING");
        argv.clear();
        argl.clear();
        for (auto a : cmds[i].argv) {
          argv.push_back(a.data());
          argl.push_back(a.size());
        }
        if (redisAppendCommandArgv((*c)->c, static_cast<int>(argv.size()), argv.data(), argl.data()) !=
            REDIS_OK) {
          failed = true;
          break;
        }
      }
      int done = 0;
      while (!failed && !done) {
        if (redisBufferWrite((*c)->c, &done) != REDIS_OK) failed = true;
      }
      if (failed) {
        std::string why = (*c)->c->errstr;
        MarkDown(node, why);
        c = absl::UnavailableError(absl::StrCat("Redis write: ", why));
      }
    }
    std::vector<size_t> next;
    for (size_t b = 0; b < batches.size(); ++b) {
      const int node = batches[b].first;
      auto& c = conns[b];
      if (!c.ok()) {
        for (size_t i : batches[b].second) out[i].status = c.status();
        continue;
      }
      bool broken = false;
      for (size_t i : batches[b].second) {
        if (broken) {
          out[i].status = absl::UnavailableError("Redis connection broke mid-pipeline");
          continue;
        }
        void* raw = nullptr;
        if (route[i].asking) {
          if (redisGetReply((*c)->c, &raw) != REDIS_OK) {
            broken = true;
          } else {
            freeReplyObject(raw);
          }
          raw = nullptr;
        }
        if (broken || redisGetReply((*c)->c, &raw) != REDIS_OK) {
          broken = true;
          out[i].status = absl::UnavailableError(absl::StrCat("Redis read: ", (*c)->c->errstr));
          continue;
        }
        std::shared_ptr<redisReply> reply(static_cast<redisReply*>(raw), freeReplyObject);
        if (reply->type != REDIS_REPLY_ERROR) {
          out[i].status = absl::OkStatus();
          out[i].reply = std::move(reply);
          continue;
        }
        const std::string_view msg(reply->str, reply->len);
        const bool moved = msg.starts_with("MOVED ");
        const bool ask = msg.starts_with("ASK ");
        if (moved || ask) {
          // "MOVED <slot> <host>:<port>"
          std::vector<std::string_view> parts;
          for (size_t at = 0; at <= msg.size();) {
            size_t sp = msg.find(' ', at);
            if (sp == std::string_view::npos) sp = msg.size();
            parts.push_back(msg.substr(at, sp - at));
            at = sp + 1;
          }
          std::string host;
          int port = 0;
          int slot = -1;
          if (parts.size() == 3 && ParseInt(parts[1], &slot) && slot >= 0 &&
              slot < kRedisSlots && SplitHostPort(parts[2], &host, &port).ok()) {
            {
              std::shared_lock<std::shared_mutex> l(map_mu_);
              if (host.empty()) host = nodes_[node]->host;
            }
            const int target = NodeIndex(host, port);
            redirects_.fetch_add(1, std::memory_order_relaxed);
            if (moved) {
              std::unique_lock<std::shared_mutex> l(map_mu_);
              slot_node_[slot] = static_cast<int16_t>(target);
            }
            route[i] = Route{target, ask};
            next.push_back(i);
            if (moved) MaybeRefresh();
            continue;
          }
        }
        out[i].status = msg.starts_with("CLUSTERDOWN") || msg.starts_with("TRYAGAIN") ||
                                msg.starts_with("LOADING")
                            ? absl::UnavailableError(std::string(msg))
                            : absl::InternalError(absl::StrCat("Redis: ", std::string(msg)));
      }
      if (broken) {
        MarkDown(node, (*c)->c->errstr);
      } else {
        Release(node, std::move(*c));
      }
    }
    pending = std::move(next);
  }
  for (size_t i : pending) out[i].status = absl::UnavailableError("Redis: too many redirects");
  return out;
}

RedisClusterStats RedisCluster::Stats() const {
  RedisClusterStats s;
  s.refreshes = refreshes_.load(std::memory_order_relaxed);
  s.redirects = redirects_.load(std::memory_order_relaxed);
  s.node_failures = node_failures_.load(std::memory_order_relaxed);
  bool any_down = false;
  std::vector<int16_t> masters;
  {
    std::shared_lock<std::shared_mutex> l(map_mu_);
    for (int16_t m : slot_node_) {
      if (m >= 0 && std::find(masters.begin(), masters.end(), m) == masters.end()) masters.push_back(m);
    }
    const auto now = Clock::now();
    for (int16_t m : masters) {
      std::lock_guard<std::mutex> nl(nodes_[m]->mu);
      any_down |= now < nodes_[m]->down_until;
    }
  }
  s.nodes = static_cast<uint32_t>(masters.size());
  s.up = map_ok_.load() && !any_down;
  return s;
}

}  // namespace adaptcache
