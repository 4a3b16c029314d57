#!/usr/bin/env bash
# Runs every fuzz_* binary in $1 for FUZZ_SECONDS each, starting from the committed
# corpus tests/fuzz/corpus/<name>/ (crash reproducers found earlier live there too and
# must keep passing). Fails on the first crash.
set -euo pipefail
BIN=${1:?usage: run_fuzzers.sh BIN_DIR}
SECS=${FUZZ_SECONDS:-20}
HERE="$(cd "$(dirname "$0")" && pwd)"
shopt -s nullglob
n=0
for f in "$BIN"/fuzz_*; do
  name=$(basename "$f")
  corpus="$HERE/corpus/$name"
  work=$(mktemp -d)
  mkdir -p "$corpus"
  echo "fuzz: $name for ${SECS}s (corpus $(ls "$corpus" | wc -l) files)"
  "$f" -max_total_time="$SECS" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=0 \
       -artifact_prefix="$work/" "$work" "$corpus" >"$work/log" 2>&1 || {
    tail -50 "$work/log"; echo "fuzz: $name FAILED (artifacts in $work)"; exit 1; }
  rm -rf "$work"
  n=$((n+1))
done
echo "fuzz: $n targets passed"
