#!/usr/bin/env bash
# Evaluation (docs/evaluation.md): traces for chat / docqa / code, every policy replayed
# across DRAM sizes, quality-versus-delay curves and the headline figures against the best
# static config and the greedy downgrader. Writes bench/results/eval.md, eval_points.csv,
# eval_profile.csv, eval_headline.csv, eval_<workload>.png and eval_traces/ summaries.
# Usage: 60_eval.sh BUILD_DIR   (EVAL_REQUESTS, EVAL_ARGS override the defaults)
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/../.."
for b in eval_sim eval_tracegen; do
  [ -x "$BUILD/bin/$b" ] || { echo "missing $BUILD/bin/$b (build the eval_sim and eval_tracegen targets)"; exit 1; }
done
REQ=${EVAL_REQUESTS:-3000}
OUT=bench/results
TRACES=$(mktemp -d)
trap 'rm -rf "$TRACES"' EXIT
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
