#!/usr/bin/env bash
# One device-machine session: GPU tests, GPU benchmarks and compute-sanitizer memcheck,
# against the packed daemon. Run from the repository root on the GPU machine:
#
#   bash tools/device/run_gpu.sh            # everything, ~5-8 min on an H100
#   ONLY=fetch_bench bash tools/device/run_gpu.sh
#
# The binaries come from tools/device/pack.sh (built on the development machine; the
# device image has no gRPC/Abseil/RocksDB/... libraries): .devcarry/carry.tar.xz is
# unpacked into .devcarry/ when present. Logs and results go under $OUT
# (default /tmp/ac_gpu_out): machine.txt, <step>.log, results/ (cuda_decode.{md,csv},
# gpu_fetch.{md,csv}), summary.txt.
#
# Environment:
#   OUT            output folder (default /tmp/ac_gpu_out)
#   CARRY          pack folder (default .devcarry)
#   SKIP_TESTS=1   skip the test steps       SKIP_BENCH=1    skip the benchmark steps
#   SKIP_MEMCHECK=1  skip compute-sanitizer  SKIP_VARIANTS=1 skip the rows-kernel variants
#   ONLY=a,b       run only these steps or groups (tests, bench, memcheck; steps below)
#   BUDGET_S       wall-clock budget of the whole run (default 470); a step gets at most
#                  what is left (minus the shutdown reserve), and is skipped under 15 s
#   POOL_SIZE      daemon DRAM pool (default 6GiB)    SSD_DIR  daemon SSD tier (default none)
#   CUDA_BENCH_REPS  cuda_decode_bench reps (20)      FETCH_REPS  gpu_fetch_bench reps (10)
#   FETCH_ARGS     extra gpu_fetch_bench arguments (e.g. "--codecs raw,fp8 --chunks 1,16")
# Steps (group): kernel_tests (one per kernels_cuda_*_tests), tile7, it_gpu (one per
#   it_gpu_* / *_gpu_*test* binary), py_tests (tests); cuda_bench, fetch_bench, py_fetch,
#   variants (bench); memcheck (memcheck); conn_quality, chunk_quality (quality: only
#   when ADAPTCACHE_GGUF names the model; also ADAPTCACHE_DATA_DIR, the gguf wheel in
#   $CARRY/wheels); e2e (group e2e, only with ONLY=e2e: bench/e2e.py, E2E_ARGS).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
OUT=${OUT:-/tmp/ac_gpu_out}
CARRY=${CARRY:-.devcarry}
BUDGET_S=${BUDGET_S:-470}
RESERVE_S=20  # kept for stopping the daemon and the summary
START=$(date +%s)
mkdir -p "$OUT/results"
: > "$OUT/summary.txt"

# --- the pack ---------------------------------------------------------------------------
if [ -f "$CARRY/carry.tar.xz" ] && { [ ! -f "$CARRY/.unpacked" ] || [ "$CARRY/carry.tar.xz" -nt "$CARRY/.unpacked" ]; }; then
  echo "unpacking $CARRY/carry.tar.xz"
  rm -rf "${CARRY:?}/bin" "${CARRY:?}/lib" "${CARRY:?}/python" "${CARRY:?}/data"
  if command -v xz >/dev/null; then
    tar -C "$CARRY" -xJf "$CARRY/carry.tar.xz"
  else  # Python's tarfile reads xz without the xz tool
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$CARRY/carry.tar.xz" "$CARRY"
  fi || { echo "cannot unpack $CARRY/carry.tar.xz"; exit 1; }
  touch "$CARRY/.unpacked"
fi
export BIN=$ROOT/$CARRY/bin
if [ ! -x "$BIN/adaptcached" ]; then
  echo "no $CARRY/bin/adaptcached: run tools/device/pack.sh on the build machine and carry $CARRY/carry.tar.xz"
  exit 1
fi
export LD_LIBRARY_PATH="$ROOT/$CARRY/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export ADAPTCACHE_SOURCE_DIR=$ROOT
[ -d "$CARRY/data" ] && [ ! -e tests/data/kv_books_0.npy ] && mkdir -p tests/data && cp -n "$CARRY"/data/* tests/data/
COMMIT=$(cat "$CARRY/COMMIT" 2>/dev/null || echo unknown)

# --- machine ----------------------------------------------------------------------------
{
  echo "date: $(date -u +%FT%TZ)"
  echo "pack commit: $COMMIT"
  timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,pstate \
    --format=csv || echo "nvidia-smi failed"
  (timeout 10 nvcc --version 2>/dev/null || echo "no nvcc") | tail -2
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) cores)"
  echo "python: $(python3 --version 2>&1); torch: $(timeout 60 python3 -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available())' 2>&1 | tail -1)"
  df -h /dev/shm | tail -1 | awk '{print "/dev/shm: " $2 " size, " $4 " free"}'
  echo "packed binaries:"; cat "$CARRY/MANIFEST" 2>/dev/null | grep '^built' || ls "$BIN"
  missing=$(for f in "$BIN"/*; do ldd "$f" | grep "not found" | sed "s|^|$(basename "$f"): |"; done)
  [ -z "$missing" ] && echo "libraries: all resolve" || echo "MISSING LIBRARIES: $missing"
  # Extension modules are built for the build machine's Python (Debian 12: 3.11).
  tag=$(python3 -c 'import sysconfig; print(sysconfig.get_config_var("SOABI"))' 2>/dev/null)
  for so in "$CARRY"/python/adaptcache/*.cpython-*.so; do
    [ -e "$so" ] && [[ "$so" != *"$tag"* ]] && echo "warning: $(basename "$so") is not for this python ($tag): it will not import"
  done
} 2>&1 | tee "$OUT/machine.txt"

HAVE_GPU=0
timeout 20 nvidia-smi -L >/dev/null 2>&1 && HAVE_GPU=1

# --- step bookkeeping -------------------------------------------------------------------
FAILED=0
declare -a SUMMARY
record() {  # step status seconds note
  SUMMARY+=("$(printf '%-40s %-10s %5ss  %s' "$1" "$2" "$3" "${4:-}")")
  printf '%-40s %-10s %5ss  %s\n' "$1" "$2" "$3" "${4:-}" >> "$OUT/summary.txt"
}
# want STEP GROUP: whether to run it under ONLY / SKIP_<GROUP>. A step "kind:name" is
# selected by its kind, its whole name or its group.
want() {
  if [ -n "${ONLY:-}" ]; then
    [[ ",$ONLY," == *",$1,"* || ",$ONLY," == *",${1%%:*},"* || ",$ONLY," == *",$2,"* ]]
    return
  fi
  case $2 in
    tests) [ "${SKIP_TESTS:-0}" != 1 ] ;;
    bench) [ "${SKIP_BENCH:-0}" != 1 ] && { [ "$1" != variants ] || [ "${SKIP_VARIANTS:-0}" != 1 ]; } ;;
    memcheck) [ "${SKIP_MEMCHECK:-0}" != 1 ] ;;
    quality) [ "${SKIP_QUALITY:-0}" != 1 ] && [ -n "${ADAPTCACHE_GGUF:-}" ] ;;  # only with a model carried
    e2e) false ;;  # long (5-8 min): only when ONLY names it
  esac
}
# run_step STEP GROUP TIMEOUT_S CMD...: runs CMD under a timeout (capped by what is left of
# the budget) with output in $OUT/STEP.log, and records the outcome. CMD may be a shell
# function of this script (run in a child bash; the variables it reads are exported).
run_step() {
  local step=$1 group=$2 limit=$3; shift 3
  local log=$OUT/${step//:/_}.log
  want "$step" "$group" || return 0
  local left=$(( BUDGET_S - RESERVE_S - ($(date +%s) - START) ))
  if [ "$left" -lt 15 ]; then
    record "$step" skipped 0 "budget of ${BUDGET_S}s spent"
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo; echo "=== $step (timeout ${limit}s) $(date -u +%TZ)"
  local t0 rc; t0=$(date +%s)
  if declare -F "$1" >/dev/null; then
    timeout -k 10 "$limit" bash -c "$(declare -f "$1"); $*" > "$log" 2>&1
  else
    timeout -k 10 "$limit" "$@" > "$log" 2>&1
  fi
  rc=$?
  local dt=$(( $(date +%s) - t0 )) status=ok
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then status=TIMEOUT; FAILED=1
  elif [ "$rc" != 0 ]; then status="FAIL($rc)"; FAILED=1; fi
  # gtest verdicts and failures, else the log's tail.
  if grep -qE '^\[  (PASSED|FAILED) ' "$log"; then
    grep -E '^\[  (FAILED|PASSED|SKIPPED) |^\[==========\]|Failure|Expected|Which is|first|note' "$log" | tail -n 40
  else
    tail -n 40 "$log"
  fi
  local note
  note=$(grep -E '^\[  PASSED  \]|^\[  FAILED  \] [0-9]|^\[  SKIPPED \] [0-9]' "$log" | tr '\n' ' ' | sed 's/  */ /g; s/, listed below://')
  # On a GPU machine a GPU test that skips everything did not test anything.
  if [ "$status" = ok ] && [ "$HAVE_GPU" = 1 ] && grep -q '^\[  PASSED  \] 0 tests' "$log" &&
     grep -q '^\[  SKIPPED \] [1-9]' "$log"; then
    status=ALL-SKIP; FAILED=1
  fi
  record "$step" "$status" "$dt" "$note"
}

# --- the daemon -------------------------------------------------------------------------
DAEMON_PID=""
SOCK_DIR=$(mktemp -d /tmp/ac_gpu.XXXXXX)
SOCK=$SOCK_DIR/adaptcached.sock
stop_daemon() {
  [ -n "$DAEMON_PID" ] || return 0
  kill -TERM "$DAEMON_PID" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$DAEMON_PID" 2>/dev/null && { echo "daemon did not stop on SIGTERM: SIGKILL"; kill -KILL "$DAEMON_PID"; }
  wait "$DAEMON_PID" 2>/dev/null
  echo "daemon stopped (log: $OUT/daemon.log)"
  DAEMON_PID=""
}
cleanup() { stop_daemon; rm -rf "$SOCK_DIR"; }
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

needs_daemon=0
for s in it_gpu:tests py_tests:tests fetch_bench:bench py_fetch:bench conn_quality:quality chunk_quality:quality; do
  want "${s%%:*}" "${s##*:}" && needs_daemon=1
done
if [ "$needs_daemon" = 1 ]; then
  POOL_SIZE=${POOL_SIZE:-6GiB}
  SHM_DIR=/dev/shm
  # A container's /dev/shm can be tiny; a pool file on /tmp still maps (page cache).
  need_kb=$(( $(numfmt --from=auto "${POOL_SIZE%B}" 2>/dev/null || echo 6442450944) / 1024 ))
  if [ "$(df -Pk /dev/shm 2>/dev/null | awk 'NR==2 {print $4}')" -lt "$need_kb" ] 2>/dev/null; then
    SHM_DIR=$SOCK_DIR; echo "warning: /dev/shm has less than $POOL_SIZE free: pool file in $SHM_DIR"
  fi
  "$BIN/adaptcached" --socket "$SOCK" --pool-size "$POOL_SIZE" --shm-dir "$SHM_DIR" \
    --ssd-dir "${SSD_DIR:-}" --metrics-listen "" --max-entry-bytes 64MiB --log-level info \
    --ready-file "$SOCK_DIR/ready" > "$OUT/daemon.log" 2>&1 &
  DAEMON_PID=$!
  up=0
  for _ in $(seq 120); do  # 30 s
    kill -0 "$DAEMON_PID" 2>/dev/null || break
    if timeout 5 "$BIN/adaptcache" --target "$SOCK" health > /dev/null 2>&1; then up=1; break; fi
    sleep 0.25
  done
  if [ "$up" = 1 ]; then
    echo "daemon up on $SOCK (pool $POOL_SIZE in $SHM_DIR, ssd '${SSD_DIR:-}'): $(timeout 5 "$BIN/adaptcache" --target "$SOCK" health 2>&1 | tr '\n' ' ')"
    record daemon ok 0 "pool $POOL_SIZE"
  else
    echo "daemon did not come up:"; tail -n 30 "$OUT/daemon.log"
    record daemon FAIL 0 "see daemon.log"
    FAILED=1
    stop_daemon
  fi
fi
export ADAPTCACHE_TARGET=$SOCK ADAPTCACHE_BIN_DIR=$BIN

# --- tests ------------------------------------------------------------------------------
shopt -s nullglob
for t in "$BIN"/kernels_cuda_*_tests; do
  run_step "kernel_tests:$(basename "$t")" tests 150 "$t"
done
# Staged tiles of 7 rows: tile edges off every group, sink and warp boundary.
[ -x "$BIN/kernels_cuda_decode_tests" ] && AC_CUDA_ROWS_TILE=7 run_step tile7 tests 150 \
  "$BIN/kernels_cuda_decode_tests" --gtest_filter='*EveryConfig*:*OddShapes*:*PagedRandomSlots*:*BatchedMixed*'
for t in $(printf '%s\n' "$BIN"/it_gpu_* "$BIN"/*_gpu_*test* | sort -u); do
  run_step "it_gpu:$(basename "$t")" tests 240 "$t"
done
py_tests=(tests/python/test_*gpu*.py tests/python/*gpu*_test.py)
shopt -u nullglob
if [ "${#py_tests[@]}" -gt 0 ]; then
  if python3 -c 'import pytest' 2>/dev/null; then
    PYTHONPATH="$ROOT/$CARRY/python" run_step py_tests tests 180 python3 -m pytest -q -x "${py_tests[@]}"
  else
    PYTHONPATH="$ROOT/$CARRY/python:$ROOT/tests/python" run_step py_tests tests 180 \
      python3 -m unittest -v $(for f in "${py_tests[@]}"; do basename "$f" .py; done)
  fi
fi

# --- benchmarks -------------------------------------------------------------------------
[ -x "$BIN/cuda_decode_bench" ] && RESULTS_DIR="$OUT/results" CUDA_BENCH_REPS=${CUDA_BENCH_REPS:-20} \
  run_step cuda_bench bench 240 bash bench/scripts/60_cuda.sh "$CARRY"
if [ -x "$BIN/gpu_fetch_bench" ] && [ -n "$DAEMON_PID" ]; then
  # shellcheck disable=SC2086  # FETCH_ARGS is a list of arguments
  run_step fetch_bench bench 240 "$BIN/gpu_fetch_bench" --target "$SOCK" --reps "${FETCH_REPS:-10}" \
    --results-dir "$OUT/results" --commit "$COMMIT" ${FETCH_ARGS:-}
fi
if [ -f bench/gpu_fetch.py ] && [ -n "$DAEMON_PID" ]; then
  py_args=()
  help=$(PYTHONPATH="$ROOT/$CARRY/python" timeout 60 python3 bench/gpu_fetch.py --help 2>&1 || true)
  grep -q -- '--target' <<<"$help" && py_args+=(--target "$SOCK")
  grep -q -- '--results-dir' <<<"$help" && py_args+=(--results-dir "$OUT/results")
  grep -q -- '--commit' <<<"$help" && py_args+=(--commit "$COMMIT")
  # Into the C++ bench's files: its cpp rows give the Python rows their limit.
  grep -q -- '--csv' <<<"$help" && py_args+=(--csv "$OUT/results/gpu_fetch.csv")
  grep -q -- '--md' <<<"$help" && py_args+=(--md "$OUT/results/gpu_fetch.md")
  PYTHONPATH="$ROOT/$CARRY/python" run_step py_fetch bench 180 python3 bench/gpu_fetch.py "${py_args[@]}"
fi
# Quality runs with SmolLM2-135M (bench/quality): the model file from $ADAPTCACHE_GGUF, the
# evaluation texts from $ADAPTCACHE_DATA_DIR, the gguf reader from $CARRY/wheels.
if [ -n "$DAEMON_PID" ] && { want conn_quality quality || want chunk_quality quality; }; then
  QSITE=/tmp/ac_site
  if ls "$CARRY"/wheels/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$QSITE" "$CARRY"/wheels/*.whl ||
      echo "warning: cannot install $CARRY/wheels"
  fi
  QPATH="$ROOT/$CARRY/python:$QSITE"
  PYTHONPATH=$QPATH run_step conn_quality quality 300 python3 bench/connector_quality.py --target "$SOCK" \
    --results-dir "$OUT/results" ${CONN_QUALITY_ARGS:-}
  PYTHONPATH=$QPATH run_step chunk_quality quality 480 python3 bench/chunk_quality.py --target "$SOCK" \
    --results-dir "$OUT/results" --commit "$COMMIT" ${CHUNK_QUALITY_ARGS:-}
fi
# The TTFT benchmark (bench/e2e.py) starts its own daemons; LMCache's wheels from
# $CARRY/wheels or $LMCACHE_WHEELS when carried. Only with ONLY=e2e.
if want e2e e2e; then
  ESITE=/tmp/ac_site
  for w in "$CARRY"/wheels/*.whl ${LMCACHE_WHEELS:+"$LMCACHE_WHEELS"/*.whl}; do
    [ -f "$w" ] && python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$ESITE" "$w"
  done
  # shellcheck disable=SC2086  # E2E_ARGS is a list of arguments
  PYTHONPATH="$ROOT/$CARRY/python:$ESITE" run_step e2e e2e 560 python3 bench/e2e.py --daemon-bin "$BIN" \
    --results-dir "$OUT/results" --commit "$COMMIT" ${E2E_ARGS:-}
fi
if [ -x "$BIN/cuda_decode_bench" ]; then
  # Variants of the rows kernel on the hot configs, same run (docs/cuda.md): v3 (no
  # staging), other register caps, other staged tile heights.
  export HOT=raw,fp8,quant-k4v4-g64,quant-k2v2-g64,quant-k4v2-g64-h,quant-k3v3-g64-h,drop-50+quant-k4v2-g64
  variants() {
    for v in ${VARIANTS:-AC_CUDA_ROWS_STAGE=0 AC_CUDA_ROWS_MIN_BLOCKS=2 AC_CUDA_ROWS_MIN_BLOCKS=4 AC_CUDA_ROWS_TILE=64}; do
      echo "variant $v:"
      env "$v" timeout 90 "$BIN/cuda_decode_bench" --reps 20 --only "$HOT" | grep -v '^csv' | tail -n 8 || return 1
    done
  }
  run_step variants bench 300 variants
fi
stop_daemon  # memcheck needs no daemon, and the pool's memory goes back

# --- memcheck ---------------------------------------------------------------------------
if command -v compute-sanitizer >/dev/null; then
  memcheck() {
    local rc=0
    compute-sanitizer --tool memcheck --error-exitcode 9 "$BIN/kernels_cuda_decode_tests" \
      --gtest_filter='*OddShapes*:*PagedRandomSlots*:*BatchedMixedEntries*:*Corrupt*' || rc=1
    echo "memcheck (decode) exit: $rc"
    if [ -x "$BIN/kernels_cuda_encode_tests" ]; then
      compute-sanitizer --tool memcheck --error-exitcode 9 "$BIN/kernels_cuda_encode_tests" --gtest_filter='*Edge*' || rc=1
      echo "memcheck (encode) exit: $rc"
    fi
    if [ -x "$BIN/kernels_cuda_verify_tests" ]; then
      compute-sanitizer --tool memcheck --error-exitcode 9 "$BIN/kernels_cuda_verify_tests" || rc=1
      echo "memcheck (verify) exit: $rc"
    fi
    return $rc
  }
  [ -x "$BIN/kernels_cuda_decode_tests" ] && run_step memcheck memcheck 180 memcheck
  [ -f "$OUT/memcheck.log" ] && grep -E "ERROR SUMMARY|Invalid|out of bounds" "$OUT/memcheck.log" | sort | uniq -c | head
elif want memcheck memcheck; then
  record memcheck skipped 0 "no compute-sanitizer on PATH"
fi

# --- summary ----------------------------------------------------------------------------
echo
echo "=== summary ($(( $(date +%s) - START ))s, pack $COMMIT, output in $OUT)"
printf '%s\n' "${SUMMARY[@]}"
ls "$OUT/results" 2>/dev/null | sed 's/^/results: /'
exit $FAILED
