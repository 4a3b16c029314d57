// eval_tracegen: writes an evaluation trace (bench/eval/trace.h, docs/evaluation.md).
//   eval_tracegen --workload chat|docqa|code [--requests N] [--seed S] [--chunk-tokens T]
//                 [--scale X] --out FILE
#include <cstdio>
#include <fstream>
#include <string>

#include "absl/strings/numbers.h"
#include "bench/eval/trace.h"

int main(int argc, char** argv) {
  using namespace adaptcache::eval;
  TraceOptions o;
  std::string out;
  for (int a = 1; a < argc; ++a) {
    const std::string arg = argv[a];
    const char* v = a + 1 < argc ? argv[a + 1] : "";
    bool ok = true;
    if (arg == "--workload") {
      auto w = ParseWorkload(v);
      ok = w.ok();
      if (ok) o.workload = *w;
    } else if (arg == "--requests") {
      ok = absl::SimpleAtoi(v, &o.requests) && o.requests > 0;
    } else if (arg == "--seed") {
      ok = absl::SimpleAtoi(v, &o.seed);
    } else if (arg == "--chunk-tokens") {
      ok = absl::SimpleAtoi(v, &o.chunk_tokens);
    } else if (arg == "--scale") {
      ok = absl::SimpleAtod(v, &o.scale);
    } else if (arg == "--out") {
      out = v;
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr, "bad argument %s %s\nusage: eval_tracegen --workload chat|docqa|code "
                           "[--requests N] [--seed S] [--chunk-tokens T] [--scale X] --out FILE\n",
                   arg.c_str(), v);
      return 2;
    }
    ++a;
  }
  if (out.empty()) return std::fprintf(stderr, "--out is required\n"), 2;
  auto tr = GenerateTrace(o);
  if (!tr.ok()) return std::fprintf(stderr, "%s\n", tr.status().ToString().c_str()), 1;
  std::ofstream f(out, std::ios::trunc);
  f << FormatTrace(*tr);
  if (!f.good()) return std::fprintf(stderr, "cannot write %s\n", out.c_str()), 1;
  const TraceSummary s = Summarize(*tr);
  std::printf("%s: %lu requests, %lu distinct chunks (%lu tokens), %lu context reads, %.1f%% reuse\n",
              WorkloadName(o.workload), s.requests, s.distinct_chunks, s.distinct_tokens,
              s.context_chunk_reads, 100.0 * s.reuse_reads / std::max<uint64_t>(s.context_chunk_reads, 1));
  return 0;
}
