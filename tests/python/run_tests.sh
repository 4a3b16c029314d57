#!/bin/sh
# Usage: run_tests.sh <venv python> <build>/python <source dir> [test module ...]
# Runs the unittest modules (default: test_quality) with PYTHONPATH=<build>/python.
# Without the venv: exit 77 (skipped), unless $AC_PY_FALLBACK names an interpreter that
# imports numpy (the client tests need nothing else).
py="$1"; pkg="$2"; src="$3"
shift 3
[ $# -gt 0 ] || set -- test_quality
if [ ! -x "$py" ]; then
  if [ -n "$AC_PY_FALLBACK" ] && "$AC_PY_FALLBACK" -c "import numpy" 2>/dev/null; then
    echo "no venv at $py: running with $AC_PY_FALLBACK"
    py="$AC_PY_FALLBACK"
  else
    echo "no profiler venv at $py (make quality-venv BUILD=...): skipped"
    exit 77
  fi
fi
if [ ! -d "$pkg/adaptcache" ]; then
  echo "adaptcache package not built under $pkg (target ac_python)"
  exit 1
fi
cd "$src/tests/python" || exit 1
PYTHONPATH="$pkg" ADAPTCACHE_SOURCE_DIR="$src" ADAPTCACHE_BUILD_DIR="$(dirname "$pkg")" \
  exec "$py" -m unittest -v "$@"
