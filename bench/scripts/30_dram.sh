#!/usr/bin/env bash
# DRAM tier benchmark: prints a table and writes bench/results/dram.{md,csv}.
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/../.."
ARGS=(--pool_mib 1024 --entries 200000 --ops 200000 --reps 5)
BIN="$BUILD/bin/dram_bench"
mkdir -p bench/results
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
TABLE=$("$BIN" "${ARGS[@]}" --csv bench/results/dram.csv | grep '^|')
echo "$TABLE"
{
  echo "# DRAM tier benchmark"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- command: \`$BIN ${ARGS[*]}\`"
  echo "- machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs; $(uname -srm)"
  echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- load average before/after: $LOAD0 / $(cut -d' ' -f1-3 /proc/loadavg) (other work shares the CPUs: compare ratios, not absolutes)"
  echo
  echo "$TABLE"
  echo
  echo "Medians of 5 runs, one thread unless noted; metadata path only (no payload copy)."
} > bench/results/dram.md
