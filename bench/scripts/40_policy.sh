#!/usr/bin/env bash
# Optimizer benchmark: re-plan time for 10k/100k/1M entries x 20 configs (full, after the
# mover applied the plan, incremental after 1% of frequencies changed), memory per entry,
# and every policy's objective on one 100k instance. One thread (pinned with taskset when
# allowed); CPU time is the headline because the machine may be shared, wall time is
# reported beside it. Writes bench/results/policy.md and policy.csv. Usage: 40_policy.sh BUILD_DIR
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/../.."
BIN="$BUILD/bin/policy_bench"
[ -x "$BIN" ] || { echo "missing $BIN (build the policy_bench target)"; exit 1; }
REPS=${POLICY_BENCH_REPS:-5}
ARGS=(--entries 10000,100000,1000000 --reps "$REPS" --compare 100000 --csv bench/results/policy.csv)
mkdir -p bench/results
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
TABLE=$(taskset -c 0 "$BIN" "${ARGS[@]}" 2>&1 || "$BIN" "${ARGS[@]}")
echo "$TABLE"
{
  echo "# Optimizer benchmark"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- command: \`$BIN ${ARGS[*]}\` (pinned to one CPU with taskset)"
  echo "- machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs; $(uname -srm)"
  echo "- load average at start: $LOAD (shared machine: wall times include waiting for the CPU)"
  echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
  echo "Instance (bench/policy_bench.cc): 20 configs with the codec families' size ratios, 8 size"
  echo "classes (chunks of 32..256 tokens of a Llama-3.1-8B-like model, 128 KiB/token), Zipf(0.9)"
  echo "frequencies, per-entry losses drawn around per-config means, all entries stored raw with a"
  echo "master copy, DRAM = 10% and SSD = 60% of the raw total, alpha = 0.2 s per unit loss."
  echo "\"after mover applied\": the state set to the previous plan (hulls of moved entries rebuilt);"
  echo "\"incremental\": then 1% of frequencies changed (no hull rebuilt, prices warm-started)."
  echo
  echo "$TABLE"
} > bench/results/policy.md
