#!/usr/bin/env bash
# One device-machine session for the CUDA codec work (docs/cuda.md): GPU tests, one
# benchmark (bench/scripts/60_cuda.sh) and its variants, then compute-sanitizer memcheck.
#
# The binaries are built on the development machine (x86-64, CUDA 13 nvcc; the device
# image has no gRPC/absl/GTest -dev packages) and carried with their Abseil shared
# libraries: kernels/cuda/pack_for_device.sh fills .cudacarry/{bin,lib}. Run from the
# repository root; writes logs and results under $OUT (default /tmp/ac_cuda_out).
set -uo pipefail
OUT=${OUT:-/tmp/ac_cuda_out}
CARRY=${CARRY:-.cudacarry}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$PWD/$CARRY/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
  nvcc --version | tail -2
  lscpu | sed -n 's/^Model name: *//p'
  ldd "$CARRY/bin/kernels_cuda_decode_tests" | grep "not found" || true
} 2>&1 | tee "$OUT/machine.txt"

rc=0
for t in kernels_cuda_decode_tests kernels_cuda_encode_tests; do
  timeout 150 "$CARRY/bin/$t" 2>&1 | tee -a "$OUT/tests.log" | grep -E "^\[  (FAILED|PASSED|SKIPPED) |^\[ seed|note|Failure|error|Expected|Which is|first"
  [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
done
# Staged tiles of 7 rows: tile edges off every group, sink and warp boundary.
AC_CUDA_ROWS_TILE=7 timeout 150 "$CARRY/bin/kernels_cuda_decode_tests" \
  --gtest_filter='*EveryConfig*:*OddShapes*:*PagedRandomSlots*:*BatchedMixed*' 2>&1 \
  | tee -a "$OUT/tests.log" | grep -E "^\[  (FAILED|PASSED|SKIPPED) |Failure|first" | sed 's/^/tile7: /'
[ "${PIPESTATUS[0]}" -eq 0 ] || rc=1

if [ "${SKIP_BENCH:-0}" != 1 ]; then
  RESULTS_DIR="$OUT" CUDA_BENCH_REPS=${CUDA_BENCH_REPS:-20} timeout 240 bash bench/scripts/60_cuda.sh "$CARRY" \
    > "$OUT/bench.log" 2>&1
  echo "bench exit: $?"
  tail -n 60 "$OUT/bench.log"
  # Variants of the rows kernel on the hot configs, same run (docs/cuda.md): v3 (no
  # staging), other register caps, other staged tile heights.
  HOT=raw,fp8,quant-k4v4-g64,quant-k2v2-g64,quant-k4v2-g64-h,quant-k3v3-g64-h,drop-50+quant-k4v2-g64
  for v in ${VARIANTS:-AC_CUDA_ROWS_STAGE=0 AC_CUDA_ROWS_MIN_BLOCKS=2 AC_CUDA_ROWS_MIN_BLOCKS=4 AC_CUDA_ROWS_TILE=64}; do
    env "$v" timeout 90 "$CARRY/bin/cuda_decode_bench" --reps 20 --only "$HOT" > /tmp/variant.log 2>&1
    echo "variant $v:" | tee -a "$OUT/variants.txt"; grep -v '^csv' /tmp/variant.log | tail -n 8 | tee -a "$OUT/variants.txt"
  done
fi
if [ "${SKIP_MEMCHECK:-0}" != 1 ]; then
  timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 \
    "$CARRY/bin/kernels_cuda_decode_tests" \
    --gtest_filter='*OddShapes*:*PagedRandomSlots*:*BatchedMixedEntries*:*Corrupt*' > "$OUT/memcheck.log" 2>&1
  echo "memcheck (decode) exit: $?" | tee -a "$OUT/memcheck.log"
  timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 \
    "$CARRY/bin/kernels_cuda_encode_tests" --gtest_filter='*Edge*' >> "$OUT/memcheck.log" 2>&1
  echo "memcheck (encode) exit: $?" | tee -a "$OUT/memcheck.log"
  grep -E "ERROR SUMMARY|Invalid|out of bounds" "$OUT/memcheck.log" | sort | uniq -c | head
fi

exit $rc
