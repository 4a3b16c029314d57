#!/usr/bin/env bash
# Packs what the GPU device machine needs to run the daemon, the CLI, the GPU tests and
# benchmarks into .devcarry/ (ignored by git), so they run on a host without the Debian
# -dev/runtime packages (gRPC, Protobuf, Abseil, RocksDB, liburing, spdlog, fmt, xxhash).
#
#   .devcarry/bin/     adaptcached, adaptcache, kernels_cuda_*_tests, it_gpu_* / *_gpu_*
#                      test binaries, cuda_decode_bench, gpu_fetch_bench (those built)
#   .devcarry/lib/     every shared library they (and python/'s .so files) load per ldd,
#                      except what the target has itself: glibc, libstdc++, libgcc_s,
#                      libcuda / libnvidia-* (the driver)
#   .devcarry/python/  a copy of <build>/python/adaptcache
#   .devcarry/data/    with --data: tests/data/kv_*.npy (the real KV samples)
#   .devcarry/COMMIT   git commit (+dirty) of the tree that was packed
#   .devcarry/carry.tar.xz   all of the above in one archive: THE FILE TO CARRY
#
# The unpacked tree is ~90 MB (each CUDA binary holds a 7 MB fatbin) and a device call
# carries at most 64 MiB, so carry only the archive (carry: [".devcarry/carry.tar.xz"]);
# tools/device/run_gpu.sh unpacks it on the device. Binaries are `strip -g`-ed.
#
# Checks, here: every carried binary and .so resolves all its libraries with
# LD_LIBRARY_PATH=.devcarry/lib, each from the pack or from the excluded system set, and
# the packed adaptcached / adaptcache start with `env -i LD_LIBRARY_PATH=.devcarry/lib`.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: tools/device/pack.sh [--build DIR] [--make] [--data] [--no-archive] [--max-mb N]
  --build DIR    build directory to pack from (default: build)
  --make         first build the packed targets (under flock /tmp/ac_build.lock)
  --data         also copy tests/data/kv_*.npy (real KV samples) into .devcarry/data
  --no-archive   skip .devcarry/carry.tar.xz (local checks only)
  --max-mb N     fail when the archive exceeds N MB (default 40)
Then carry ".devcarry/carry.tar.xz" and run tools/device/run_gpu.sh on the device.
EOF
}

BUILD=build
MAKE=0
DATA=0
ARCHIVE=1
MAX_MB=40
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --make) MAKE=1; shift ;;
    --data) DATA=1; shift ;;
    --no-archive) ARCHIVE=0; shift ;;
    --max-mb) MAX_MB=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "pack.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/../.."
ROOT=$PWD
DEST=.devcarry
die() { echo "pack.sh: $*" >&2; exit 1; }
[ -d "$BUILD/bin" ] || die "no $BUILD/bin (configure and build first, or --build DIR)"

# Binaries packed when built; adaptcached and adaptcache are required.
REQUIRED=(adaptcached adaptcache)
OPTIONAL_FIXED=(cuda_decode_bench gpu_fetch_bench)

if [ "$MAKE" = 1 ]; then
  # Only targets this build defines (the CUDA ones exist only with nvcc).
  known=$(cmake --build "$BUILD" --target help 2>/dev/null | sed -n 's/^\([A-Za-z0-9_]*\): .*/\1/p')
  targets=()
  for t in "${REQUIRED[@]}" "${OPTIONAL_FIXED[@]}" ac_python ac_python_client; do
    grep -qx "$t" <<<"$known" && targets+=("$t")
  done
  for t in $(grep -E '^(kernels_cuda_.*_tests|it_gpu_.*|.*_gpu_.*test.*)$' <<<"$known" || true); do
    targets+=("$t")
  done
  echo "building: ${targets[*]}"
  flock /tmp/ac_build.lock cmake --build "$BUILD" -j2 --target "${targets[@]}"
fi

bins=()
for b in "${REQUIRED[@]}"; do
  [ -x "$BUILD/bin/$b" ] || die "$BUILD/bin/$b is missing (build it, or pass --make)"
  bins+=("$b")
done
shopt -s nullglob
for f in "$BUILD"/bin/kernels_cuda_*_tests "$BUILD"/bin/it_gpu_* "$BUILD"/bin/*_gpu_*test*; do
  [ -x "$f" ] && bins+=("$(basename "$f")")
done
for b in "${OPTIONAL_FIXED[@]}"; do
  if [ -x "$BUILD/bin/$b" ]; then bins+=("$b"); else echo "note: $BUILD/bin/$b not built: not packed"; fi
done
mapfile -t bins < <(printf '%s\n' "${bins[@]}" | awk '!seen[$0]++')
rm -rf "$DEST"
mkdir -p "$DEST/bin" "$DEST/lib"
echo "binaries: ${bins[*]}"
for b in "${bins[@]}"; do strip -g -o "$DEST/bin/$b" "$BUILD/bin/$b"; done

# The Python package (codec extension, ctypes client library when built).
sos=()
if [ -d "$BUILD/python/adaptcache" ]; then
  mkdir -p "$DEST/python"
  cp -r "$BUILD/python/adaptcache" "$DEST/python/"
  find "$DEST/python" -name __pycache__ -prune -exec rm -rf {} +
  while IFS= read -r -d '' so; do
    strip -g "$so"
    sos+=("$so")
  done < <(find "$DEST/python" -name '*.so*' -type f -print0)
  [ -f "$DEST/python/adaptcache/libadaptcache_client.so" ] ||
    echo "note: $BUILD/python/adaptcache/libadaptcache_client.so not built: python client not packed"
else
  echo "note: no $BUILD/python/adaptcache: python package not packed"
fi

# Libraries the target provides itself (glibc family, the GCC runtime, the CUDA driver).
SYSTEM_RE='^(linux-vdso\.so|linux-gate\.so|ld-linux.*|libc\.so|libm\.so|libmvec\.so|libdl\.so|librt\.so|libpthread\.so|libutil\.so|libresolv\.so|libanl\.so|libnsl\.so|libstdc\+\+\.so|libgcc_s\.so|libcuda\.so|libnvidia.*)'
copy_deps() {  # $1: an ELF file; copies its non-system libraries into lib/
  local line name path
  while IFS= read -r line; do
    name=$(awk '{print $1}' <<<"$line")
    path=$(awk '$2 == "=>" {print $3}' <<<"$line")
    [[ "$name" =~ $SYSTEM_RE || "$(basename "$name")" =~ $SYSTEM_RE ]] && continue
    [[ "$line" == *"not found"* ]] && die "$1 needs $name, which is not found here either"
    [ -n "$path" ] || continue
    [ -f "$DEST/lib/$name" ] || cp -L "$path" "$DEST/lib/$name"
  done < <(ldd "$1")
}
for b in "${bins[@]}"; do copy_deps "$DEST/bin/$b"; done
for so in "${sos[@]}"; do copy_deps "$so"; done
for l in "$DEST"/lib/*; do chmod u+w "$l"; strip -g "$l" 2>/dev/null || true; done

if [ "$DATA" = 1 ]; then
  mkdir -p "$DEST/data"
  cp tests/data/kv_*.npy tests/data/PROVENANCE.md "$DEST/data/"
fi

commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
[ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || commit="$commit+dirty"
echo "$commit" > "$DEST/COMMIT"
# Size and build time of each file: a stale binary is the usual surprise on the device.
(cd "$DEST" && find . -type f ! -name carry.tar.xz ! -name MANIFEST -printf '%P %s\n' | sort) > "$DEST/MANIFEST"
for b in "${bins[@]}"; do echo "built $(date -u -r "$BUILD/bin/$b" +%FT%TZ) $b"; done >> "$DEST/MANIFEST"

# Check: every carried ELF resolves, each library from the pack or the system set.
bad=0
for f in "$DEST"/bin/* "${sos[@]}" "$DEST"/lib/*; do
  out=$(env -i LD_LIBRARY_PATH="$ROOT/$DEST/lib" ldd "$f" 2>&1) || { echo "ldd failed on $f: $out"; bad=1; continue; }
  if grep -q "not found" <<<"$out"; then
    echo "MISSING for $f:"; grep "not found" <<<"$out"; bad=1
  fi
  while read -r name _ path _; do
    [ -n "${path:-}" ] && [[ "$path" == /* ]] || continue
    [[ "$name" =~ $SYSTEM_RE ]] && continue
    [[ "$path" == "$ROOT/$DEST/lib/"* ]] || { echo "$f: $name resolves outside the pack ($path)"; bad=1; }
  done <<<"$out"
done
[ "$bad" = 0 ] || die "library check failed"
env -i LD_LIBRARY_PATH="$ROOT/$DEST/lib" "$DEST/bin/adaptcached" --help >/dev/null ||
  die "the packed adaptcached does not start from the pack"
env -i LD_LIBRARY_PATH="$ROOT/$DEST/lib" "$DEST/bin/adaptcached" --version
env -i LD_LIBRARY_PATH="$ROOT/$DEST/lib" "$DEST/bin/adaptcache" --help >/dev/null ||
  die "the packed adaptcache does not start from the pack"
echo "checked: ${#bins[@]} binaries, ${#sos[@]} python .so, $(ls "$DEST/lib" | wc -l) libraries resolve from $DEST/lib"

du -sh "$DEST/bin" "$DEST/lib" ${sos[0]:+"$DEST/python"} 2>/dev/null
echo "unpacked: $(du -sm "$DEST" | cut -f1) MB (commit $commit)"
if [ "$ARCHIVE" = 1 ]; then
  echo "compressing (xz)..."
  members=(bin lib COMMIT MANIFEST)
  [ -d "$DEST/python" ] && members+=(python)
  [ -d "$DEST/data" ] && members+=(data)
  tar -C "$DEST" -cf - "${members[@]}" | xz -T0 -6 > "$DEST/carry.tar.xz"
  bytes=$(stat -c %s "$DEST/carry.tar.xz")
  mb=$(( (bytes + 999999) / 1000000 ))
  echo "archive: $DEST/carry.tar.xz $mb MB ($bytes bytes)"
  [ "$mb" -le "$MAX_MB" ] || die "archive is $mb MB, over --max-mb $MAX_MB (a device call carries 64 MiB)"
  echo "carry: [\"$DEST/carry.tar.xz\"]   then on the device: bash tools/device/run_gpu.sh"
fi
