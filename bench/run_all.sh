#!/usr/bin/env bash
# `make bench`: runs every bench/scripts/*.sh in order with the build dir as $1.
# Each script prints its table and appends results (machine, date, command) under
# bench/results/.
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/.."
for s in bench/scripts/*.sh; do
  [ -e "$s" ] || continue
  echo "== $s"
  bash "$s" "$BUILD"
done
