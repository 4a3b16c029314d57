#!/usr/bin/env bash
# Server benchmark: metrics hot-path cost and /metrics render time vs entries.
# Prints a table and writes bench/results/server.md.
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/../.."
BIN="$BUILD/bin/server_bench"
[ -x "$BIN" ] || { echo "missing $BIN (build it first)"; exit 1; }
TABLE=$("$BIN" | grep "^|")  # the pool logs its set-up on stdout
echo "$TABLE"
mkdir -p bench/results
{
  echo "# Server benchmark (metrics cost)"
  echo
  echo "Command: \`bench/scripts/50_server.sh $BUILD\` ($BIN), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $(uname -sr)"
  echo
  echo "$TABLE"
} > bench/results/server.md
