#!/usr/bin/env bash
# Quality profile (bench/quality/profile.py, docs/quality-profiling.md) with the build dir
# as $1. Default: quick mode (2 contexts, 7 configs, a few minutes) into
# bench/results/quality_quick.{md,csv,png}. QUALITY_FULL=1: the full run (about an hour on
# 2 cores) into bench/results/quality.{md,csv,png} and bench/results/calibration.json.
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/../.."
make -s quality-venv BUILD="$BUILD"
cmake --build "$BUILD" --target ac_python >/dev/null
mode=quick
[ "${QUALITY_FULL:-0}" = 1 ] && mode=full
PYTHONPATH="$BUILD/python" "$BUILD/venv/bin/python" bench/quality/profile.py --mode "$mode"
