#!/usr/bin/env bash
# Builds the LMCache peer's wheel for the GPU machine: lmcache 0.5.6 from its PyPI sdist,
# compiled against torch 2.11.0 (PyPI's default wheel, CUDA 13.0) with this machine's nvcc
# for sm_90. PyPI's binary lmcache 0.5.6 wheel was compiled against torch 2.13 (its sdist's
# pyproject pins torch==2.13.0 for the build), so its cuda_ops does not load against the
# GPU machine's torch 2.11 (undefined c10::NotImplementedError constructor) and crashed in
# multi_layer_kv_transfer with a shim. No LMCache source is changed.
#
#   bash tools/device/build_lmcache_wheel.sh [OUT_DIR]   (default .devcarry/lmc2; ~10 min on 2 cores)
#
# OUT_DIR gets the wheel plus LMCache's pure-Python dependency wheels that the GPU
# machine lacks; carry it and `pip install --no-index --no-deps --target DIR OUT_DIR/*.whl`.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-.devcarry/lmc2}
PY=${PYTHON:-python3.12}
WORK=${WORK:-/tmp/lmcbuild}
NVCC_DIR=${CUDA_HOME:-/usr/local/cuda}
command -v "$PY" >/dev/null || PY=/root/.pyenv/versions/3.12.1/bin/python3.12
[ -x "$NVCC_DIR/bin/nvcc" ] || { echo "no nvcc under $NVCC_DIR" >&2; exit 1; }
mkdir -p "$WORK" "$OUT"
[ -x "$WORK/venv/bin/python" ] || "$PY" -m venv "$WORK/venv"
V=$WORK/venv/bin
echo "== torch 2.11.0 (headers and libraries to build against)"
"$V/pip" install -q torch==2.11.0 'setuptools>=77.0.3,<81' 'packaging>=24.2' 'setuptools_scm>=8' \
  grpcio==1.78.0 grpcio-tools==1.78.0 wheel ninja numpy
"$V/python" -c 'import torch; assert torch.__version__.startswith("2.11.0") and torch.version.cuda.startswith("13"), torch.__version__'
echo "== lmcache 0.5.6 sdist"
mkdir -p "$WORK/sd"
if [ ! -d "$WORK/sd/lmcache-0.5.6" ]; then
  "$V/pip" download -q --no-deps --no-binary :all: --no-build-isolation lmcache==0.5.6 -d "$WORK/sd" 2>/dev/null || true
  if [ ! -f "$WORK/sd/lmcache-0.5.6.tar.gz" ]; then  # pip would build it to read its metadata
    url=$("$V/python" - <<'PY'
import json, urllib.request
req = urllib.request.Request("https://pypi.org/simple/lmcache/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
files = json.load(urllib.request.urlopen(req))["files"]
print(next(f["url"] for f in files if f["filename"] == "lmcache-0.5.6.tar.gz"))
PY
)
    "$V/python" -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' "$url" "$WORK/sd/lmcache-0.5.6.tar.gz"
  fi
  tar -C "$WORK/sd" -xzf "$WORK/sd/lmcache-0.5.6.tar.gz"
fi
echo "== building (sm_90, MAX_JOBS=${MAX_JOBS:-2})"
PATH=$V:$NVCC_DIR/bin:$PATH CUDA_HOME=$NVCC_DIR LD_LIBRARY_PATH=$NVCC_DIR/lib64 TORCH_CUDA_ARCH_LIST=9.0 \
  MAX_JOBS=${MAX_JOBS:-2} NVCC_THREADS=1 BUILD_WITH_CUDA=1 ENABLE_CXX11_ABI=1 \
  "$V/pip" wheel --no-build-isolation --no-deps -w "$OUT" "$WORK/sd/lmcache-0.5.6"
echo "== dependencies the GPU machine lacks"
"$V/pip" download -q --only-binary :all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
  --platform manylinux2014_x86_64 --no-deps -d "$OUT" aiofile==3.12.3 cachetools==8.0.3 caio==0.12.10 \
  cffi==2.1.1 cryptography==51.0.1 msgspec==0.23.0 pyzmq==27.3.0 gguf==0.17.1
ls -la "$OUT"
