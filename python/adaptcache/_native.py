"""ctypes binding of libadaptcache_client.so (client/c_api.h).

The library is a plain C ABI over the C++ client, not a CPython extension, so one build
loads into any Python 3.x (docs/python.md, "Design"). It is found, in order:
  1. $ADAPTCACHE_LIB (a path to the .so);
  2. next to this file (the build tree's <build>/python/adaptcache/, or an installed
     package).
It is loaded on first use, so ``import adaptcache`` works without it (the codec module
alone serves the quality profiler).
"""

from __future__ import annotations

import ctypes
import os
import threading

from . import errors

LIB_NAME = "libadaptcache_client.so"
ABI_VERSION = 3
CODEC_NAME_BYTES = 64

_u8p = ctypes.POINTER(ctypes.c_uint8)
_u32p = ctypes.POINTER(ctypes.c_uint32)
_u64p = ctypes.POINTER(ctypes.c_uint64)


class Shape(ctypes.Structure):
    _fields_ = [("layers", ctypes.c_uint32), ("tokens", ctypes.c_uint32), ("kv_heads", ctypes.c_uint32),
                ("head_dim", ctypes.c_uint32), ("dtype", ctypes.c_uint32)]


class EntryInfo(ctypes.Structure):
    _fields_ = [("tier", ctypes.c_uint32), ("codec", ctypes.c_char * CODEC_NAME_BYTES),
                ("stored_bytes", ctypes.c_uint64), ("raw_bytes", ctypes.c_uint64), ("shape", Shape),
                ("est_quality_loss", ctypes.c_float), ("crc32c", ctypes.c_uint32)]


class PutOptions(ctypes.Structure):
    _fields_ = [("codec", ctypes.c_char_p), ("token_importance", ctypes.c_void_p),
                ("token_importance_count", ctypes.c_uint64), ("probe_count", ctypes.c_uint32),
                ("probe_queries", ctypes.c_void_p), ("probe_query_count", ctypes.c_uint64)]


class PagedCache(ctypes.Structure):
    _fields_ = [("k_layers", ctypes.c_void_p), ("v_layers", ctypes.c_void_p), ("layers", ctypes.c_uint32),
                ("kv_heads", ctypes.c_uint32), ("head_dim", ctypes.c_uint32), ("block_size", ctypes.c_uint32),
                ("num_blocks", ctypes.c_uint64), ("block_stride", ctypes.c_uint64), ("dtype", ctypes.c_uint32),
                ("bad_slots", ctypes.c_void_p)]


class DeviceResult(ctypes.Structure):
    _fields_ = [("decoded", ctypes.c_uint32), ("leased", ctypes.c_uint32), ("prefix_hits", ctypes.c_uint32),
                ("corrupt", ctypes.c_int32), ("used_gpu", ctypes.c_int32),
                ("mapping_registered", ctypes.c_int32)]


class DeviceRegistration(ctypes.Structure):
    _fields_ = [("done", ctypes.c_int32), ("registered", ctypes.c_int32), ("seconds", ctypes.c_double),
                ("bytes", ctypes.c_uint64)]


_c = ctypes
_SIGNATURES = {
    "ac_abi_version": (_c.c_uint32, []),
    "ac_built_with_cuda": (_c.c_int, []),
    "ac_cuda_available": (_c.c_int, []),
    "ac_last_error": (_c.c_char_p, []),
    "ac_last_error_kind": (_c.c_int, []),
    "ac_connect": (_c.c_int, [_c.c_char_p, _c.c_int64, _c.POINTER(_c.c_void_p)]),
    "ac_close": (None, [_c.c_void_p]),
    "ac_hash_tokens": (_c.c_int, [_c.c_char_p, _c.c_void_p, _c.c_uint64, _c.c_uint32, _c.c_void_p, _c.c_uint64,
                                  _u64p]),
    "ac_lookup": (_c.c_int, [_c.c_void_p, _c.c_char_p, _c.c_void_p, _c.c_uint64, _u32p, _c.POINTER(EntryInfo)]),
    "ac_put": (_c.c_int, [_c.c_void_p, _c.c_char_p, _c.c_void_p, _c.POINTER(Shape), _c.c_void_p, _c.c_uint64,
                          _c.POINTER(PutOptions), _c.POINTER(EntryInfo)]),
    "ac_put_shm": (_c.c_int, [_c.c_void_p, _c.c_char_p, _c.c_void_p, _c.POINTER(Shape), _c.c_void_p, _c.c_uint64,
                              _c.POINTER(PutOptions), _c.POINTER(EntryInfo)]),
    "ac_get_into": (_c.c_int, [_c.c_void_p, _c.c_char_p, _c.c_void_p, _c.c_void_p, _c.c_uint64,
                               _c.POINTER(EntryInfo)]),
    "ac_get_shm_into": (_c.c_int, [_c.c_void_p, _c.c_char_p, _c.c_void_p, _c.c_void_p, _c.c_uint64,
                                   _c.POINTER(EntryInfo)]),
    "ac_container_info": (_c.c_int, [_c.c_void_p, _c.c_uint64, _c.POINTER(Shape), _c.c_char_p]),
    "ac_decode": (_c.c_int, [_c.c_void_p, _c.c_uint64, _c.c_void_p, _c.c_uint64]),
    "ac_kept_tokens": (_c.c_int, [_c.c_void_p, _c.c_uint64, _c.c_void_p, _c.c_uint64, _u64p]),
    "ac_delete": (_c.c_int, [_c.c_void_p, _c.c_char_p, _c.c_void_p, _c.c_uint64, _u32p]),
    "ac_stats_json": (_c.c_int, [_c.c_void_p, _c.c_char_p, _c.c_uint64, _u64p]),
    "ac_health": (_c.c_int, [_c.c_void_p, _c.POINTER(_c.c_int32), _c.c_char_p, _c.c_uint64]),
    "ac_flush_releases": (_c.c_int, [_c.c_void_p, _u32p]),
    "ac_get_to_device": (_c.c_int, [_c.c_void_p, _c.c_char_p, _c.c_void_p, _c.c_uint64, _c.c_void_p, _c.c_uint32,
                                    _c.POINTER(PagedCache), _c.c_void_p, _c.c_void_p, _c.c_size_t, _c.c_int32, _c.c_int,
                                    _c.c_uint32, _c.POINTER(DeviceResult), _c.POINTER(EntryInfo)]),
    "ac_get_to_device_start": (_c.c_int, [_c.c_void_p, _c.c_char_p, _c.c_void_p, _c.c_uint64, _c.c_void_p,
                                          _c.c_uint32, _c.POINTER(PagedCache), _c.c_void_p, _c.c_void_p, _c.c_size_t,
                                          _c.c_int32, _c.c_int, _c.c_uint32, _c.POINTER(_c.c_void_p),
                                          _c.POINTER(DeviceResult), _c.POINTER(EntryInfo)]),
    "ac_device_fetch_wait": (_c.c_int, [_c.c_void_p, _c.POINTER(DeviceResult)]),
    "ac_device_fetch_free": (None, [_c.c_void_p]),
    "ac_prepare_device": (_c.c_int, [_c.c_void_p, _c.c_int32, _c.c_int, _c.POINTER(DeviceRegistration)]),
}

_lock = threading.Lock()
_lib = None


class LibraryNotFound(errors.FailedPrecondition, ImportError):
    """libadaptcache_client.so is missing or unusable."""


def library_path() -> str:
    """Where the library is looked for ($ADAPTCACHE_LIB, else next to this package)."""
    env = os.environ.get("ADAPTCACHE_LIB", "")
    if env:
        return env
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), LIB_NAME)


def lib() -> ctypes.CDLL:
    """The loaded library (loaded and checked once, thread safe)."""
    global _lib
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        path = library_path()
        if not os.path.exists(path):
            raise LibraryNotFound(9, (
                f"{LIB_NAME} not found at {path}: build the target adaptcache_c (or ac_python) and use "
                f"PYTHONPATH=<build>/python, `pip install ./python`, or set $ADAPTCACHE_LIB"))
        try:
            handle = ctypes.CDLL(path)
        except OSError as e:
            raise LibraryNotFound(9, f"cannot load {path}: {e} (its shared libraries, e.g. gRPC, must "
                                     f"resolve; see LD_LIBRARY_PATH)") from e
        for name, (res, args) in _SIGNATURES.items():
            fn = getattr(handle, name, None)
            if fn is None:
                raise LibraryNotFound(9, f"{path} lacks {name}: a stale library; rebuild adaptcache_c")
            fn.restype = res
            fn.argtypes = args
        version = handle.ac_abi_version()
        if version != ABI_VERSION:
            raise LibraryNotFound(9, f"{path} has C ABI version {version}; this package needs {ABI_VERSION}")
        _lib = handle
    return _lib


ERROR_KIND_OVERLOADED = 1  # c_api.h AC_ERROR_KIND_OVERLOADED


def check(rc: int) -> None:
    """Raises the exception for a non-zero status of the call just made on this thread."""
    if rc != 0:
        msg = lib().ac_last_error()
        overloaded = lib().ac_last_error_kind() == ERROR_KIND_OVERLOADED
        raise errors.error_from_status(rc, msg.decode("utf-8", "replace") if msg else "", overloaded=overloaded)
