// Evaluation traces (docs/evaluation.md): the request streams of three workloads, as the
// chunk keys an engine would look up and put, with token counts.
//
// A chunk id names one chunk's content *with its prefix* (DESIGN.md §3: keys are chained),
// so two requests share an id only when they share the whole prefix up to that chunk.
// A request reads `context` in order (the engine reuses only the leading run of hits), then
// prefills `new_tokens` (never cacheable: the question, the new user message), then puts
// the chunks in `puts` (context it created, read back by later requests).
//
// Text format, one record per line (blank lines and lines starting with '#' ignored):
//   adaptcache-trace 1
//   workload <chat|docqa|code>
//   seed <uint64>
//   chunk_tokens <uint32>
//   request <time_s> <new_tokens> ctx <id:tokens>... put <id:tokens>...
// Ids are decimal uint64, tokens 1..chunk_tokens. Generation is deterministic in
// (workload, seed, options): the generator draws only from its own SplitMix64 stream.
//
// Thread safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace adaptcache::eval {

enum class Workload { kChat, kDocQa, kCode };
const char* WorkloadName(Workload w);
absl::StatusOr<Workload> ParseWorkload(std::string_view name);

// "a,b,c" of numbers > 0 (command-line lists of the eval tools); false on anything else.
bool ParsePositiveList(std::string_view s, std::vector<double>* out);

struct TraceChunk {
  uint64_t id = 0;
  uint32_t tokens = 0;
  friend bool operator==(const TraceChunk&, const TraceChunk&) = default;
};

struct TraceRequest {
  double time_s = 0;
  uint32_t new_tokens = 0;
  std::vector<TraceChunk> context;
  std::vector<TraceChunk> puts;
  friend bool operator==(const TraceRequest&, const TraceRequest&) = default;
};

struct Trace {
  Workload workload = Workload::kChat;
  uint64_t seed = 0;
  uint32_t chunk_tokens = 256;
  std::vector<TraceRequest> requests;
};

struct TraceOptions {
  Workload workload = Workload::kChat;
  uint64_t seed = 1;
  uint32_t requests = 3000;
  uint32_t chunk_tokens = 256;  // multiple of 32, 32..4096
  // Multiplies population sizes (sessions, documents, repositories).
  double scale = 1.0;
};

absl::StatusOr<Trace> GenerateTrace(const TraceOptions& options);

std::string FormatTrace(const Trace& trace);
// Strict: any malformed line is an error naming its line number; a chunk's token count
// must be 1..chunk_tokens and an id must keep one token count throughout.
absl::StatusOr<Trace> ParseTrace(std::string_view text);

struct TraceSummary {
  uint64_t requests = 0;
  uint64_t distinct_chunks = 0;
  uint64_t distinct_tokens = 0;
  uint64_t context_chunk_reads = 0;
  uint64_t reuse_reads = 0;  // context reads of a chunk put or read before
};
TraceSummary Summarize(const Trace& trace);

}  // namespace adaptcache::eval
