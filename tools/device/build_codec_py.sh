#!/usr/bin/env bash
# Builds the codec module adaptcache._codec for another CPython than the build's (the GPU
# machine runs 3.12; the build makes it for Debian's 3.11), next to the existing one in
# <build>/python/adaptcache/ (each named by its EXT_SUFFIX, so both import where they fit;
# tools/device/pack.sh then carries both). Same source, compile flags and static codec
# library as the build's own module (compile_commands.json, build.ninja); only the Python
# headers and pybind11 change. pybind11 must be >= 2.12 for numpy 2 (the GPU machine's):
# Debian's 2.10 reads numpy 2 descriptors wrongly ("kv size mismatch").
#
#   tools/device/build_codec_py.sh [--build DIR] [--python PY]
#     --python PY   interpreter to build for (default: python3.12 on PATH or under ~/.pyenv)
# pybind11 comes from PY's site-packages when it has >= 2.12, else it is pip-installed
# (pybind11==2.13.6) into <build>/codec-py<ver>-venv.
set -euo pipefail

BUILD=build
PY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --python) PY=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "build_codec_py.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/../.."
die() { echo "build_codec_py.sh: $*" >&2; exit 1; }
if [ -z "$PY" ]; then
  PY=$(command -v python3.12 || ls -1d "$HOME"/.pyenv/versions/3.12*/bin/python3.12 2>/dev/null | tail -1 || true)
fi
[ -n "$PY" ] && [ -x "$PY" ] || die "no interpreter (pass --python PY)"
BUILD=$(cd "$BUILD" && pwd)
[ -f "$BUILD/compile_commands.json" ] && [ -f "$BUILD/build.ninja" ] ||
  die "$BUILD needs compile_commands.json and build.ninja (a Ninja build with ADAPTCACHE_PYTHON)"
[ -f "$BUILD/lib/libac_kernels.a" ] || die "$BUILD/lib/libac_kernels.a is missing: build ac_python first"

ver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
suffix=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
pyinc=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
[ -f "$pyinc/Python.h" ] || die "$PY has no Python.h under $pyinc"

pb_of() { "$1" -c 'import pybind11, sys
v = tuple(int(x) for x in pybind11.__version__.split(".")[:2])
sys.exit(0 if v >= (2, 12) else 1)
print()' 2>/dev/null && "$1" -c 'import pybind11; print(pybind11.get_include())'; }
pbinc=$(pb_of "$PY" || true)
if [ -z "$pbinc" ]; then
  venv=$BUILD/codec-py$ver-venv
  if [ ! -x "$venv/bin/python" ]; then
    "$PY" -m venv "$venv" || die "cannot make a venv with $PY"
  fi
  pbinc=$(pb_of "$venv/bin/python" || true)
  if [ -z "$pbinc" ]; then
    "$venv/bin/pip" install -q --disable-pip-version-check pybind11==2.13.6 || die "pip install pybind11 failed"
    pbinc=$(pb_of "$venv/bin/python") || die "pybind11 still missing in $venv"
  fi
fi

out=$BUILD/python/adaptcache/_codec$suffix
obj=$BUILD/python/CMakeFiles/codec_binding_py$ver.o
# The build's own compile command, with this Python's and pybind11's headers.
compile=$(/usr/bin/python3 - "$BUILD" "$pyinc" "$pbinc" "$obj" <<'EOF'
import json, shlex, sys
build, pyinc, pbinc, obj = sys.argv[1:]
cmds = [e for e in json.load(open(f"{build}/compile_commands.json")) if e["file"].endswith("python/src/codec_binding.cc")]
if not cmds:
    sys.exit("codec_binding.cc is not in compile_commands.json (pybind11 missing at configure time?)")
e = cmds[0]
a = shlex.split(e["command"]) if "command" in e else list(e["arguments"])
out, i = [a[0], "-isystem", pbinc, "-isystem", pyinc], 1
while i < len(a):
    if a[i] == "-isystem" and "python3" in a[i + 1]:
        i += 2
    elif a[i] == "-o":
        out += ["-o", obj]; i += 2
    else:
        out.append(a[i]); i += 1
print(shlex.join(out))
EOF
) || die "no compile command"
libs=$(sed -n '/^build python\/adaptcache\/_codec/,/^$/s/^  LINK_LIBRARIES = //p' "$BUILD/build.ninja" | head -1)
[ -n "$libs" ] || die "no link line for _codec in $BUILD/build.ninja"
echo "building $out (Python $ver, pybind11 $pbinc)"
cd "$BUILD"
# shellcheck disable=SC2086  # $compile / $libs are word lists
flock /tmp/ac_build.lock bash -c "$compile && /usr/bin/c++ -fPIC -O2 -g -DNDEBUG -shared -o '$out' '$obj' $libs"
env -u PYTHONHOME "$PY" -c "import importlib.util as u, sys
spec = u.spec_from_file_location('adaptcache._codec', '$out'); m = u.module_from_spec(spec); spec.loader.exec_module(m)
print('ok:', len(m.default_config_space()), 'configs')" || die "the built module does not import with $PY"
