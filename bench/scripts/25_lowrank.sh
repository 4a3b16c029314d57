#!/usr/bin/env bash
# lowrank codec + quality proxies: encode/decode time (one core, median of N), achieved
# ratio and K/V relative error per target ratio on synthetic KV with realistic structure
# (Llama-3.1-8B and Qwen2.5-7B chunk shapes), then the quality proxy of every default config
# and its evaluation cost. Writes bench/results/lowrank.md and lowrank.csv.
# Usage: 25_lowrank.sh BUILD_DIR
set -euo pipefail
BUILD=${1:-build}
BIN="$BUILD/bin/lowrank_bench"
REPS=${LOWRANK_BENCH_REPS:-5}
cd "$(dirname "$0")/../.."
[ -x "$BIN" ] || { echo "missing $BIN (build the lowrank_bench target)"; exit 1; }
OUT=bench/results/lowrank.md
CSV=bench/results/lowrank.csv
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
CMD="$BIN --reps $REPS --quality --csv $CSV"
$CMD | tee "$tmp"
{
  echo "# lowrank codec and quality proxies"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs; $(uname -srm)"
  echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- command: \`$CMD\`"
  echo "- data: synthetic KV (tests/kernels/kv_synth.h): keys = smooth rank-8 process per head +"
  echo "  per-head offset with outlier channels; values = rank-24 process + noise. Not real model KV."
  echo "- times: one thread, median of $REPS; K_err/V_err = ||X-X'||_F/||X||_F; shared = fraction of"
  echo "  slabs that chose one basis for all heads"
  echo
  echo '```'
  cat "$tmp"
  echo '```'
} > "$OUT"
echo "wrote $OUT and $CSV"
