#!/usr/bin/env bash
# Evaluation (docs/evaluation.md): traces for chat / docqa / code, every policy replayed
# across DRAM sizes, quality-versus-delay curves and the headline figures against the best
# static config and the greedy downgrader. Writes bench/results/eval.md, eval_points.csv,
# eval_profile.csv, eval_headline.csv, eval_<workload>.png and eval_traces/ summaries.
# Then the daemon-replay mode (eval_replay, a real adaptcached per policy) writes
# bench/results/eval_daemon.md and eval_daemon.csv (skipped with a note when eval_replay or
# adaptcached is not built).
# Usage: 60_eval.sh BUILD_DIR   (EVAL_REQUESTS, EVAL_ARGS override the defaults;
#        REPLAY_REQUESTS, REPLAY_ARGS those of the daemon replay; EVAL_ONLY=replay skips
#        the simulation part)
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/../.."
ONLY=${EVAL_ONLY:-all}
OUT=bench/results
TRACES=$(mktemp -d)
trap 'rm -rf "$TRACES"' EXIT
if [ "$ONLY" != replay ]; then
for b in eval_sim eval_tracegen; do
  [ -x "$BUILD/bin/$b" ] || { echo "missing $BUILD/bin/$b (build the eval_sim and eval_tracegen targets)"; exit 1; }
done
REQ=${EVAL_REQUESTS:-3000}
mkdir -p "$OUT"
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
SUMMARY=""
for w in chat docqa code; do
  SUMMARY+=$("$BUILD/bin/eval_tracegen" --workload "$w" --requests "$REQ" --seed 1 --out "$TRACES/$w.trace")$'\n'
done
CAL=()
[ -f bench/results/calibration.json ] && CAL=(--calibration bench/results/calibration.json)
ARGS=(--trace-dir "$TRACES" --out-dir "$OUT" "${CAL[@]}" ${EVAL_ARGS:-})
START=$(date +%s)
"$BUILD/bin/eval_sim" "${ARGS[@]}" 2> "$TRACES/sim.log" || { cat "$TRACES/sim.log"; exit 1; }
SECS=$(( $(date +%s) - START ))
TABLE=$(python3 bench/eval/plot.py "$OUT/eval_points.csv" "$OUT")
echo "$TABLE"
{
  echo "# Evaluation: adaptive placement vs static compression"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- command: \`bench/scripts/60_eval.sh $BUILD\` -> \`eval_sim ${ARGS[*]}\` (${SECS} s)"
  echo "- machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs; $(uname -srm); load at start $LOAD"
  echo "- **mode: simulation** (bench/eval/sim.h): the policy library the daemon uses, entry sizes and"
  echo "  per-entry quality proxies measured with the real codecs on synthetic KV templates, delays from"
  echo "  the delay model (docs/evaluation.md). The daemon replay is in eval_daemon.md."
  if [ ${#CAL[@]} -gt 0 ]; then
    echo "- quality: proxies mapped through bench/results/calibration.json"
  else
    echo "- quality: no calibration file; the quality figure is the attention-output proxy itself"
  fi
  echo "- delay model: DelayModel defaults for an H100 host (DRAM 20 us + 25 GB/s, SSD 100 us + 5 GB/s,"
  echo "  recompute 50 us/token, decode launch 10 us) with the GPU decode speeds measured on the H100"
  echo "  (bench/results/cuda_decode.csv, median per codec family: $(grep -o 'GPU decode GB/s.*' "$TRACES/sim.log" | head -1))."
  echo "- admission: new entries are stored in the last plan's put config (Policy::PutConfigs)."
  echo
  echo "Traces (seed 1):"
  echo
  echo '```'
  echo -n "$SUMMARY"
  echo '```'
  echo
  echo "## Headline figures (definitions in docs/evaluation.md)"
  echo
  echo "$TABLE"
  echo
  echo "Plots: eval_chat.png, eval_docqa.png, eval_code.png. Every point: eval_points.csv. Per-config"
  echo "ratios, CPU decode speeds and proxies: eval_profile.csv. What the figures mean and do not"
  echo "mean: docs/evaluation.md (\"Results so far\")."
} > "$OUT/eval.md"
fi

# ---- daemon-replay mode (docs/evaluation.md) ----
if [ ! -x "$BUILD/bin/eval_replay" ] || [ ! -x "$BUILD/bin/adaptcached" ]; then
  echo "daemon replay skipped: build the eval_replay and adaptcached targets"
  exit 0
fi
RREQ=${REPLAY_REQUESTS:-300}
RCAL=()
[ -f bench/results/calibration.json ] && RCAL=(--calibration "$PWD/bench/results/calibration.json")
RARGS=(--daemon "$BUILD/bin/adaptcached" --requests "$RREQ" --dram-fracs 0.1,0.2
       --policies oracle,lru-raw,static:fp8,static:quant-k8v8-g128,static:quant-k4v4-g64,static:quant-k2v2-g64,static:drop-50+quant-k4v4-g64,greedy-downgrade,adaptive
       --sweep-alphas 0.001,0.01,0.1,1 "${RCAL[@]}"
       --out-csv "$OUT/eval_daemon.csv" --points-csv "$OUT/eval_points_replay.csv" ${REPLAY_ARGS:-})
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
START=$(date +%s)
"$BUILD/bin/eval_replay" "${RARGS[@]}" 2> "$TRACES/replay.log" || { cat "$TRACES/replay.log"; exit 1; }
SECS=$(( $(date +%s) - START ))
RTABLE=$(python3 bench/eval/replay_table.py "$OUT/eval_daemon.csv")
HTABLE=$(python3 bench/eval/plot.py "$OUT/eval_points_replay.csv" "$OUT" eval_headline_replay.csv)
echo "$HTABLE"
{
  echo "# Evaluation, daemon-replay mode: policies in a running adaptcached"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- command: \`bench/scripts/60_eval.sh $BUILD\` -> \`eval_replay ${RARGS[*]}\` (${SECS} s)"
  echo "- machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs; $(uname -srm); load at start $LOAD"
  echo "- **mode: daemon replay** (bench/eval/replay_daemon.cc): one adaptcached per (workload, DRAM size, policy),"
  echo "  DRAM pool 10% or 20% and SSD tier ~35% (4 MiB segments) of the trace's distinct raw KV,"
  echo "  SSD under /var/tmp, --policy-interval-ms 200, daemon defaults otherwise (admission on, no master copies);"
  echo "  first 30% of requests are warm-up (not measured), then 1.5 s for the mover."
  echo "  Entries scaled down to [2 layers][128 tokens][2 heads][64] bf16 = 128 KiB (synthetic KV,"
  echo "  bench/eval/profile.h); traces at scale 0.1, chunk_tokens 128. A replay entry stands for a"
  echo "  full-size chunk S = 128 times larger (Llama-3.1-8B: 16 MiB per 128 tokens); the daemons plan"
  echo "  with their delay model's bandwidths and decode speeds divided by S."
  echo "- **modelled full-scale delay** (the headline and the curves): per request, the default delay model"
  echo "  (DRAM 20 us + 25 GB/s, SSD 100 us + 5 GB/s, H100 decode speeds from bench/results/cuda_decode.csv,"
  echo "  recompute 50 us/token) applied to what the daemon actually served: the tier, codec and S x stored"
  echo "  bytes of every hit, and recompute of reused chunks that missed. Free of this machine's load."
  echo "- measured delay (also in the table): wall-clock Lookup + GetShm + CopyOut + CPU Decode at the scaled-down"
  echo "  size on this shared 2-CPU box, + modelled GPU decode + recompute; it carries the machine's load."
  echo "- quality loss = token-weighted est_quality_loss the daemon reports (EntryInfo) for the served entries"
  if [ ${#RCAL[@]} -gt 0 ]; then echo "  (the daemons run with --policy-calibration bench/results/calibration.json)."; else echo "  (no calibration file: the proxy)."; fi
  echo "  Oracle = same daemon, pool holding everything, no policy (raw)."
  echo
  echo "## Headline figures (daemon replay, modelled full-scale delay)"
  echo
  echo "$HTABLE"
  echo
  echo "Plots: eval_chat_replay.png, eval_docqa_replay.png, eval_code_replay.png. Every point:"
  echo "eval_points_replay.csv (measured_x_oracle holds the wall-clock ratio)."
  echo
  echo "## Every run"
  echo
  echo "$RTABLE"
  echo
  echo "Every column, and the daemon's mover counters (/metrics) at the end of each run: eval_daemon.csv."
  echo "Single runs; see docs/evaluation.md for how to read them."
} > "$OUT/eval_daemon.md"
