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
  echo "  the delay model (docs/evaluation.md). Not yet a replay against the running daemon."
  if [ ${#CAL[@]} -gt 0 ]; then
    echo "- quality: proxies mapped through bench/results/calibration.json"
  else
    echo "- quality: no calibration file; the quality figure is the attention-output proxy itself"
  fi
  echo "- delay model: DelayModel defaults (H100 host: DRAM 20 us + 25 GB/s, SSD 100 us + 5 GB/s,"
  echo "  GPU decode fp8/quant/drop/lowrank 1000/600/800/150 GB/s + 10 us, recompute 50 us/token);"
  echo "  no bench/results/cuda_decode.md yet, so GPU decode speeds are the documented assumption."
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
RARGS=(--daemon "$BUILD/bin/adaptcached" --requests "$RREQ" --out-csv "$OUT/eval_daemon.csv" ${REPLAY_ARGS:-})
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
START=$(date +%s)
"$BUILD/bin/eval_replay" "${RARGS[@]}" 2> "$TRACES/replay.log" || { cat "$TRACES/replay.log"; exit 1; }
SECS=$(( $(date +%s) - START ))
RTABLE=$(python3 bench/eval/replay_table.py "$OUT/eval_daemon.csv")
echo "$RTABLE"
# Paced: docqa at 20x the trace's own request times, so the mover gets ~10x more cycles
# per request than back to back.
PARGS=(--daemon "$BUILD/bin/adaptcached" --requests "$RREQ" --workloads docqa --speedup 20
       --out-csv "$OUT/eval_daemon_paced.csv" ${REPLAY_ARGS:-})
PSTART=$(date +%s)
"$BUILD/bin/eval_replay" "${PARGS[@]}" 2> "$TRACES/replay_paced.log" || { cat "$TRACES/replay_paced.log"; exit 1; }
PSECS=$(( $(date +%s) - PSTART ))
PTABLE=$(python3 bench/eval/replay_table.py "$OUT/eval_daemon_paced.csv")
echo "$PTABLE"
{
  echo "# Evaluation, daemon-replay mode: policies in a running adaptcached"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- command: \`bench/scripts/60_eval.sh $BUILD\` -> \`eval_replay ${RARGS[*]}\` (${SECS} s)"
  echo "- machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs; $(uname -srm); load at start $LOAD"
  echo "- **mode: daemon replay** (bench/eval/replay_daemon.cc): one adaptcached per (workload, policy),"
  echo "  DRAM pool 15% and SSD tier ~35% (4 MiB segments, at least 3) of the trace's distinct raw KV,"
  echo "  SSD under /var/tmp, --policy-interval-ms 200, alpha 0.01 (adaptive@A: alpha A);"
  echo "  first 30% of requests are warm-up (not measured), then"
  echo "  1.5 s for the mover. Entries scaled down to [2 layers][128 tokens][2 heads][64] bf16 = 128 KiB,"
  echo "  synthetic KV (bench/eval/profile.h); traces at scale 0.1, chunk_tokens 128."
  echo "- delay per request = measured Lookup + GetShm + CopyOut + CPU Decode of the reused prefix"
  echo "  + GPU decode modelled from bench/results/cuda_decode.csv (H100 GB/s per config, scaled to the"
  echo "  entry size, + 10 us launch) + recompute of reused-but-missed chunks (DelayModel 50 us/token)."
  echo "  Never-seen (cold) chunks are recomputed by every policy and reported apart (mean_cold_ms)."
  echo "- quality loss = token-weighted est_quality_loss the daemon reports (EntryInfo) for the served"
  echo "  entries; recomputed chunks count as lossless. Oracle = same daemon, pool holding everything, no policy (raw)."
  echo "- Per-request fetch times include this 2-CPU machine's load (the daemon, its mover and the replay"
  echo "  share the 2 cores); they are not H100-host figures."
  echo
  echo "## Back-to-back replay (all workloads)"
  echo
  echo "$RTABLE"
  echo
  echo "## Paced replay (docqa, requests at trace time / 20 after warm-up)"
  echo
  echo "\`eval_replay ${PARGS[*]}\` (${PSECS} s)"
  echo
  echo "$PTABLE"
  echo
  echo "Every column, and the daemon's mover counters (/metrics) at the end of each run:"
  echo "eval_daemon.csv, eval_daemon_paced.csv. Single runs; see docs/evaluation.md for how to read them."
} > "$OUT/eval_daemon.md"
