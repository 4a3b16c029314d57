#!/usr/bin/env bash
# Copies the CUDA test and benchmark binaries of build dir $1 (default build-cuda), with
# the Abseil shared libraries they load, into .cudacarry/ for kernels/cuda/run_on_device.sh.
# .cudacarry/ must be ignored (.git/info/exclude) and named in the device call's carry.
set -euo pipefail
BUILD=${1:-build-cuda}
cd "$(dirname "$0")/../.."
rm -rf .cudacarry && mkdir -p .cudacarry/bin .cudacarry/lib
for b in kernels_cuda_decode_tests kernels_cuda_encode_tests cuda_decode_bench; do
  strip -g -o ".cudacarry/bin/$b" "$BUILD/bin/$b"
  ldd "$BUILD/bin/$b" | awk '/libabsl/ {print $3}' | xargs -r cp -L -t .cudacarry/lib
done
du -sh .cudacarry
