"""In-tree PEP 517 build backend of the `adaptcache` package (pyproject.toml).

`pip install ./python` runs it: it builds the native parts with the project's CMake on the
repository root (Ninja, RelWithDebInfo, targets ac_python and adaptcache_c) and packs the
pure-Python sources plus libadaptcache_client.so (and adaptcache._codec when built) into a
wheel tagged py3-none-<platform>: the client is loaded with ctypes, so the wheel fits any
Python 3.

Why not setuptools: it needs the `wheel` package to build a wheel (before setuptools 70.1),
which a venv made by Debian 12's python3 does not have, and the native parts are CMake's
anyway. With no build requirements, the install works offline with or without build
isolation.

Environment:
  ADAPTCACHE_BUILD_DIR   reuse this (configured or not) build directory instead of
                         <repo>/build-pip; relative paths are taken from the repository root
  ADAPTCACHE_NO_BUILD=1  do not run CMake; take the artifacts already in the build directory
  ADAPTCACHE_SOURCE_DIR  the repository root, when this file is not inside it
  CMAKE_BUILD_PARALLEL_LEVEL  build jobs (CMake's own variable)
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import sysconfig
import zipfile

NAME = "adaptcache"
HERE = os.path.dirname(os.path.abspath(__file__))
LIB = "libadaptcache_client.so"


def _version() -> str:
    with open(os.path.join(HERE, "pyproject.toml"), encoding="utf-8") as f:
        m = re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M)
    if not m:
        raise RuntimeError("pyproject.toml has no version")
    return m.group(1)


def _source_dir() -> str:
    for cand in (os.environ.get("ADAPTCACHE_SOURCE_DIR", ""), os.path.dirname(HERE)):
        if cand and os.path.exists(os.path.join(cand, "CMakeLists.txt")) and \
                os.path.isdir(os.path.join(cand, "client")):
            return os.path.abspath(cand)
    raise RuntimeError("cannot find the AdaptCache source tree (set ADAPTCACHE_SOURCE_DIR to the repository root)")


def _build_native() -> str:
    """Builds (unless ADAPTCACHE_NO_BUILD) and returns <build>/python/adaptcache."""
    src = _source_dir()
    build = os.environ.get("ADAPTCACHE_BUILD_DIR", "") or os.path.join(src, "build-pip")
    if not os.path.isabs(build):
        build = os.path.join(src, build)
    if os.environ.get("ADAPTCACHE_NO_BUILD", "") not in ("", "0"):
        print(f"adaptcache: ADAPTCACHE_NO_BUILD set, taking the artifacts in {build}", flush=True)
    else:
        cmake = shutil.which("cmake")
        if cmake is None:
            raise RuntimeError("cmake not found: install cmake (>= 3.25) and ninja, or point "
                               "ADAPTCACHE_BUILD_DIR at a built tree with ADAPTCACHE_NO_BUILD=1")
        if not os.path.exists(os.path.join(build, "CMakeCache.txt")):
            subprocess.run([cmake, "-S", src, "-B", build, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=RelWithDebInfo"],
                           check=True)
        subprocess.run([cmake, "--build", build, "--target", "ac_python", "adaptcache_c"], check=True)
    pkg = os.path.join(build, "python", NAME)
    if not os.path.exists(os.path.join(pkg, LIB)):
        raise RuntimeError(f"{os.path.join(pkg, LIB)} is missing: build the targets ac_python and adaptcache_c "
                           f"in {build}")
    return pkg


def _wheel_tag() -> str:
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return f"py3-none-{plat}"


def _metadata(version: str) -> str:
    return "\n".join([
        "Metadata-Version: 2.1",
        f"Name: {NAME}",
        f"Version: {version}",
        "Summary: Client of the adaptcached KV-cache daemon (numpy/torch in, CUDA tensors out) and its codec library",
        "Requires-Python: >=3.9",
        "Requires-Dist: numpy",
        "Provides-Extra: torch",
        "Requires-Dist: torch; extra == \"torch\"",
        "",
        "See docs/python.md in the AdaptCache repository.",
        "",
    ])


def _files(pkg_build: str) -> list:
    """(archive name, source path) of the package's files."""
    src_pkg = os.path.join(HERE, NAME)
    out = []
    for root, dirs, names in os.walk(src_pkg):  # subpackages too (adaptcache/connectors/)
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        rel = os.path.relpath(root, src_pkg).replace(os.sep, "/")
        prefix = NAME if rel == "." else f"{NAME}/{rel}"
        for n in sorted(names):
            if n.endswith(".py"):
                out.append((f"{prefix}/{n}", os.path.join(root, n)))
    for n in sorted(os.listdir(pkg_build)):
        if n == LIB or (n.startswith("_codec.") and n.endswith(".so")):
            out.append((f"{NAME}/{n}", os.path.join(pkg_build, n)))
    return out


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


# ---------------------------------------------------------------------------- PEP 517 hooks


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    version = _version()
    pkg_build = _build_native()
    tag = _wheel_tag()
    dist_info = f"{NAME}-{version}.dist-info"
    wheel_name = f"{NAME}-{version}-{tag}.whl"
    path = os.path.join(wheel_directory, wheel_name)
    records = []
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for arc, src in _files(pkg_build):
            with open(src, "rb") as f:
                data = f.read()
            info = zipfile.ZipInfo(arc, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if arc.endswith(".so") else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
            records.append(_record_line(arc, data))
        meta = {
            f"{dist_info}/METADATA": _metadata(version),
            f"{dist_info}/WHEEL": (f"Wheel-Version: 1.0\nGenerator: adaptcache _build_backend\n"
                                   f"Root-Is-Purelib: false\nTag: {tag}\n"),
            f"{dist_info}/top_level.txt": f"{NAME}\n",
        }
        for arc, text in meta.items():
            data = text.encode("utf-8")
            z.writestr(arc, data)
            records.append(_record_line(arc, data))
        records.append(f"{dist_info}/RECORD,,")
        z.writestr(f"{dist_info}/RECORD", "\n".join(records) + "\n")
    return wheel_name


def build_sdist(sdist_directory, config_settings=None):
    raise RuntimeError("adaptcache has no sdist: its native parts build from the whole repository; "
                       "install from a checkout with `pip install ./python`")
