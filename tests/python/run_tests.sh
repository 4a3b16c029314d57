#!/bin/sh
# Usage: run_tests.sh <venv python> <build>/python <source dir>
py="$1"; pkg="$2"; src="$3"
if [ ! -x "$py" ]; then
  echo "no profiler venv at $py (make quality-venv BUILD=...): skipped"
  exit 77
fi
if [ ! -d "$pkg/adaptcache" ]; then
  echo "adaptcache package not built under $pkg (target ac_python)"
  exit 1
fi
cd "$src/tests/python" || exit 1
PYTHONPATH="$pkg" ADAPTCACHE_SOURCE_DIR="$src" exec "$py" -m unittest -v test_quality
