#include "bench/eval/trace.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace adaptcache::eval {
namespace {

// SplitMix64: tiny, and identical on every platform (std:: distributions are not).
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull) {}
  uint64_t Next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double Uniform() { return (Next() >> 11) * 0x1.0p-53; }
  uint64_t Below(uint64_t n) { return n ? Next() % n : 0; }
  // Uniform in [lo, max(lo, hi)]: an empty range gives lo instead of wrapping around.
  uint32_t Range(uint32_t lo, uint32_t hi) {
    return hi <= lo ? lo : lo + static_cast<uint32_t>(Below(hi - lo + 1));
  }
  double Exp(double mean) { return -mean * std::log(1.0 - Uniform()); }
  double Normal() {
    const double u = std::max(Uniform(), 1e-300), v = Uniform();
    return std::sqrt(-2 * std::log(u)) * std::cos(2 * M_PI * v);
  }
  uint32_t Geometric(double mean) {  // >= 1
    return 1 + static_cast<uint32_t>(std::floor(Exp(mean - 1 + 1e-9)));
  }

 private:
  uint64_t s_;
};

// Zipf(s) over ranks 0..n-1 by inverse CDF on precomputed weights.
class Zipf {
 public:
  Zipf(size_t n, double s) : cdf_(n) {
    double acc = 0;
    for (size_t i = 0; i < n; ++i) cdf_[i] = acc += 1.0 / std::pow(i + 1.0, s);
    for (double& c : cdf_) c /= acc;
  }
  size_t Draw(Rng& rng) const {
    return std::min<size_t>(std::lower_bound(cdf_.begin(), cdf_.end(), rng.Uniform()) - cdf_.begin(),
                            cdf_.size() - 1);
  }

 private:
  std::vector<double> cdf_;
};

uint32_t Scaled(double base, double scale) {
  return std::max<uint32_t>(1, static_cast<uint32_t>(std::lround(base * scale)));
}

// Splits `tokens` into full chunks plus a partial last chunk rounded up to 32 tokens.
std::vector<TraceChunk> MakeChunks(uint64_t* next_id, uint32_t tokens, uint32_t chunk_tokens) {
  std::vector<TraceChunk> out;
  while (tokens > 0) {
    uint32_t t = std::min(tokens, chunk_tokens);
    tokens -= t;
    t = std::min(chunk_tokens, (t + 31) / 32 * 32);
    out.push_back({(*next_id)++, t});
  }
  return out;
}

// Multi-turn chat: a shared system prompt, sessions that start, return (recently active
// ones more likely) and end. Each turn reads the system prompt and the session's full
// chunks, prefills the unchunked tail + the new user message, and puts the chunks the
// turn completed (message + reply).
Trace Chat(const TraceOptions& o, Rng& rng) {
  Trace tr;
  uint64_t next_id = 1;
  const std::vector<TraceChunk> system = MakeChunks(&next_id, 2 * o.chunk_tokens, o.chunk_tokens);
  bool system_put = false;
  struct Session {
    std::vector<TraceChunk> chunks;
    uint32_t tail = 0;  // tokens not yet in a full chunk
    uint32_t turns_left = 0;
    double last = 0;
  };
  std::vector<Session> live;
  const uint32_t max_live = Scaled(60, o.scale);
  const Zipf recency(max_live, 1.0);
  double t = 0;
  for (uint32_t r = 0; r < o.requests; ++r) {
    t += rng.Exp(0.5);
    TraceRequest req;
    req.time_s = t;
    size_t si;
    if (live.empty() || (live.size() < max_live && rng.Uniform() < 0.2)) {
      Session s;
      s.turns_left = rng.Geometric(10);
      // Some sessions open with a pasted document.
      s.tail = rng.Uniform() < 0.3 ? rng.Range(512, std::max(512u, 6 * o.chunk_tokens)) : rng.Range(32, 256);
      live.push_back(std::move(s));
      si = live.size() - 1;
    } else {
      std::vector<size_t> order(live.size());
      std::iota(order.begin(), order.end(), 0);
      std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return live[a].last > live[b].last; });
      size_t k;
      do k = recency.Draw(rng); while (k >= order.size());
      si = order[k];
      live[si].tail += rng.Range(32, 256);  // the user's new message
    }
    Session& s = live[si];
    req.context = system;
    req.context.insert(req.context.end(), s.chunks.begin(), s.chunks.end());
    req.new_tokens = s.tail;
    if (!system_put) {
      req.puts = system;
      system_put = true;
    }
    s.tail += rng.Range(64, 512);  // the model's reply, stored for the next turn
    const uint32_t full = s.tail / o.chunk_tokens * o.chunk_tokens;
    for (const TraceChunk& c : MakeChunks(&next_id, full, o.chunk_tokens)) {
      s.chunks.push_back(c);
      req.puts.push_back(c);
    }
    s.tail -= full;
    s.last = t;
    if (--s.turns_left == 0) live.erase(live.begin() + si);
    tr.requests.push_back(std::move(req));
  }
  return tr;
}

// Document QA: Zipf(0.9)-popular documents whose popularity drifts (every 100 requests
// 5% of the ranks are swapped, and a cold document jumps to the top). A request reads a
// document's chunks and prefills a short question.
Trace DocQa(const TraceOptions& o, Rng& rng) {
  Trace tr;
  uint64_t next_id = 1;
  const uint32_t docs = Scaled(300, o.scale);
  std::vector<std::vector<TraceChunk>> doc(docs);
  for (auto& d : doc) {
    const double len = std::exp(std::log(6.0 * o.chunk_tokens) + 0.7 * rng.Normal());
    const uint32_t tokens = std::clamp<uint32_t>(static_cast<uint32_t>(len), o.chunk_tokens, 40 * o.chunk_tokens);
    d = MakeChunks(&next_id, tokens, o.chunk_tokens);
  }
  std::vector<uint32_t> by_rank(docs);
  std::iota(by_rank.begin(), by_rank.end(), 0);
  for (size_t i = docs; i > 1; --i) std::swap(by_rank[i - 1], by_rank[rng.Below(i)]);
  const Zipf zipf(docs, 0.9);
  std::vector<bool> seen(docs, false);
  double t = 0;
  for (uint32_t r = 0; r < o.requests; ++r) {
    if (r > 0 && r % 100 == 0) {
      for (uint32_t k = 0; k < docs / 20; ++k) std::swap(by_rank[rng.Below(docs)], by_rank[rng.Below(docs)]);
      const size_t cold = docs / 2 + rng.Below(docs - docs / 2);
      std::rotate(by_rank.begin(), by_rank.begin() + cold, by_rank.begin() + cold + 1);
    }
    t += rng.Exp(0.5);
    const uint32_t d = by_rank[zipf.Draw(rng)];
    TraceRequest req;
    req.time_s = t;
    req.context = doc[d];
    req.new_tokens = rng.Range(16, 128);
    if (!seen[d]) req.puts = doc[d], seen[d] = true;
    tr.requests.push_back(std::move(req));
  }
  return tr;
}

// Code assistants: repositories with a shared context prefix (4..24 chunks) and files
// (1..6 chunks each, chained after the prefix). Requests come in bursts on one repository
// (Zipf(1.1) over repositories, geometric burst length, mean 20), files Zipf(1.0) within
// it; 3% of bursts follow a commit that changes the prefix (every id of that repository
// is new).
Trace Code(const TraceOptions& o, Rng& rng) {
  Trace tr;
  uint64_t next_id = 1;
  struct Repo {
    uint32_t prefix_tokens = 0;
    std::vector<uint32_t> file_tokens;
    std::vector<TraceChunk> prefix;
    std::vector<std::vector<TraceChunk>> files;
    bool prefix_put = false;
    std::vector<bool> file_put;
  };
  const uint32_t repos = Scaled(40, o.scale);
  std::vector<Repo> repo(repos);
  auto materialize = [&](Repo& p) {
    p.prefix = MakeChunks(&next_id, p.prefix_tokens, o.chunk_tokens);
    p.files.clear();
    for (uint32_t ft : p.file_tokens) p.files.push_back(MakeChunks(&next_id, ft, o.chunk_tokens));
    p.prefix_put = false;
    p.file_put.assign(p.files.size(), false);
  };
  for (Repo& p : repo) {
    p.prefix_tokens = rng.Range(4, 24) * o.chunk_tokens;
    p.file_tokens.resize(rng.Range(10, 60));
    for (uint32_t& ft : p.file_tokens) ft = rng.Range(o.chunk_tokens / 2, 6 * o.chunk_tokens);
    materialize(p);
  }
  std::vector<uint32_t> by_rank(repos);
  std::iota(by_rank.begin(), by_rank.end(), 0);
  for (size_t i = repos; i > 1; --i) std::swap(by_rank[i - 1], by_rank[rng.Below(i)]);
  const Zipf repo_zipf(repos, 1.1);
  double t = 0;
  uint32_t burst_left = 0;
  uint32_t cur = 0;
  uint32_t bursts = 0;
  for (uint32_t r = 0; r < o.requests; ++r) {
    if (burst_left == 0) {
      burst_left = rng.Geometric(20);
      cur = by_rank[repo_zipf.Draw(rng)];
      t += rng.Exp(20);
      if (rng.Uniform() < 0.03) materialize(repo[cur]);
      if (++bursts % 10 == 0) std::swap(by_rank[rng.Below(repos)], by_rank[rng.Below(repos)]);
    }
    --burst_left;
    t += rng.Exp(0.3);
    Repo& p = repo[cur];
    const Zipf file_zipf(p.files.size(), 1.0);
    const size_t f = file_zipf.Draw(rng);
    TraceRequest req;
    req.time_s = t;
    req.context = p.prefix;
    req.context.insert(req.context.end(), p.files[f].begin(), p.files[f].end());
    req.new_tokens = rng.Range(32, 512);
    if (!p.prefix_put) req.puts = p.prefix, p.prefix_put = true;
    if (!p.file_put[f]) {
      req.puts.insert(req.puts.end(), p.files[f].begin(), p.files[f].end());
      p.file_put[f] = true;
    }
    tr.requests.push_back(std::move(req));
  }
  return tr;
}

}  // namespace

const char* WorkloadName(Workload w) {
  switch (w) {
    case Workload::kChat: return "chat";
    case Workload::kDocQa: return "docqa";
    case Workload::kCode: return "code";
  }
  return "?";
}

bool ParsePositiveList(std::string_view s, std::vector<double>* out) {
  out->clear();
  for (absl::string_view p : absl::StrSplit(absl::string_view(s.data(), s.size()), ',')) {
    double v;
    if (!absl::SimpleAtod(p, &v) || !(v > 0) || !std::isfinite(v)) return false;
    out->push_back(v);
  }
  return !out->empty();
}

absl::StatusOr<Workload> ParseWorkload(std::string_view name) {
  if (name == "chat") return Workload::kChat;
  if (name == "docqa") return Workload::kDocQa;
  if (name == "code") return Workload::kCode;
  return absl::InvalidArgumentError(absl::StrCat("unknown workload '", std::string(name),
                                                 "' (chat, docqa, code)"));
}

absl::StatusOr<Trace> GenerateTrace(const TraceOptions& o) {
  if (o.chunk_tokens < 32 || o.chunk_tokens > 4096 || o.chunk_tokens % 32 != 0) {
    return absl::InvalidArgumentError("chunk_tokens must be a multiple of 32 in 32..4096");
  }
  if (!(o.scale > 0 && o.scale <= 100)) return absl::InvalidArgumentError("scale must be in (0, 100]");
  Rng rng(o.seed ^ (static_cast<uint64_t>(o.workload) << 56));
  Trace tr;
  switch (o.workload) {
    case Workload::kChat: tr = Chat(o, rng); break;
    case Workload::kDocQa: tr = DocQa(o, rng); break;
    case Workload::kCode: tr = Code(o, rng); break;
  }
  tr.workload = o.workload;
  tr.seed = o.seed;
  tr.chunk_tokens = o.chunk_tokens;
  return tr;
}

std::string FormatTrace(const Trace& tr) {
  std::string out = absl::StrCat("adaptcache-trace 1\nworkload ", WorkloadName(tr.workload), "\nseed ",
                                 tr.seed, "\nchunk_tokens ", tr.chunk_tokens, "\n");
  for (const TraceRequest& r : tr.requests) {
    absl::StrAppend(&out, "request ", absl::SixDigits(r.time_s), " ", r.new_tokens, " ctx");
    for (const TraceChunk& c : r.context) absl::StrAppend(&out, " ", c.id, ":", c.tokens);
    absl::StrAppend(&out, " put");
    for (const TraceChunk& c : r.puts) absl::StrAppend(&out, " ", c.id, ":", c.tokens);
    out += "\n";
  }
  return out;
}

absl::StatusOr<Trace> ParseTrace(std::string_view text) {
  Trace tr;
  bool have_magic = false, have_workload = false;
  absl::flat_hash_map<uint64_t, uint32_t> tokens_of;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(absl::string_view(text.data(), text.size()), '\n')) {
    ++line_no;
    auto err = [&](const std::string& what) {
      return absl::InvalidArgumentError(absl::StrCat("trace line ", line_no, ": ", what));
    };
    if (line.empty() || line[0] == '#') continue;
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (!have_magic) {
      if (f.size() != 2 || f[0] != "adaptcache-trace" || f[1] != "1") return err("expected 'adaptcache-trace 1'");
      have_magic = true;
      continue;
    }
    if (f[0] == "workload" && f.size() == 2) {
      auto w = ParseWorkload(std::string(f[1]));
      if (!w.ok()) return err(std::string(w.status().message()));
      tr.workload = *w;
      have_workload = true;
    } else if (f[0] == "seed" && f.size() == 2) {
      if (!absl::SimpleAtoi(f[1], &tr.seed)) return err("bad seed");
    } else if (f[0] == "chunk_tokens" && f.size() == 2) {
      if (!absl::SimpleAtoi(f[1], &tr.chunk_tokens) || tr.chunk_tokens == 0 || tr.chunk_tokens > 65536) {
        return err("bad chunk_tokens");
      }
    } else if (f[0] == "request" && f.size() >= 5) {
      TraceRequest r;
      if (!absl::SimpleAtod(f[1], &r.time_s) || !std::isfinite(r.time_s) || r.time_s < 0) return err("bad time");
      if (!absl::SimpleAtoi(f[2], &r.new_tokens)) return err("bad new_tokens");
      if (f[3] != "ctx") return err("expected 'ctx'");
      std::vector<TraceChunk>* dst = &r.context;
      bool saw_put = false;
      for (size_t i = 4; i < f.size(); ++i) {
        if (f[i] == "put") {
          if (saw_put) return err("two 'put' markers");
          saw_put = true;
          dst = &r.puts;
          continue;
        }
        std::pair<absl::string_view, absl::string_view> p = absl::StrSplit(f[i], absl::MaxSplits(':', 1));
        TraceChunk c;
        if (!absl::SimpleAtoi(p.first, &c.id) || !absl::SimpleAtoi(p.second, &c.tokens)) {
          return err(absl::StrCat("bad chunk '", std::string(f[i]), "'"));
        }
        if (c.tokens == 0 || c.tokens > tr.chunk_tokens) return err("chunk tokens out of range");
        auto [it, inserted] = tokens_of.try_emplace(c.id, c.tokens);
        if (!inserted && it->second != c.tokens) return err(absl::StrCat("chunk ", c.id, " changed its size"));
        dst->push_back(c);
      }
      if (!saw_put) return err("missing 'put'");
      if (!tr.requests.empty() && r.time_s < tr.requests.back().time_s) return err("time goes backwards");
      tr.requests.push_back(std::move(r));
    } else {
      return err(absl::StrCat("unknown record '", std::string(f[0]), "'"));
    }
  }
  if (!have_magic || !have_workload) return absl::InvalidArgumentError("trace: missing header");
  return tr;
}

TraceSummary Summarize(const Trace& tr) {
  TraceSummary s;
  absl::flat_hash_set<uint64_t> known;
  s.requests = tr.requests.size();
  auto add = [&](const TraceChunk& c) {
    if (known.insert(c.id).second) ++s.distinct_chunks, s.distinct_tokens += c.tokens;
  };
  for (const TraceRequest& r : tr.requests) {
    for (const TraceChunk& c : r.context) {
      ++s.context_chunk_reads;
      if (known.contains(c.id)) ++s.reuse_reads;
      add(c);
    }
    for (const TraceChunk& c : r.puts) add(c);
  }
  return s;
}

}  // namespace adaptcache::eval
