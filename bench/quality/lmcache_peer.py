"""LMCache (PyPI ``lmcache`` 0.5.6) as a peer in the TTFT benchmark, without vLLM.

What runs is LMCache's own store/retrieve path in its default vLLM configuration: an
``LMCacheEngine`` from ``LMCacheEngineBuilder`` with only the ``LocalCPUBackend`` (one
pinned host pool allocated through ``lmcache.cuda_ops``), 256-token chunks, and the GPU
connector that ``CreateGPUConnector`` picks for vLLM on CUDA (``VLLMPagedMemGPUConnectorV2``,
with its GPU staging buffer for stores and its ``multi_layer_kv_transfer`` CUDA kernel).

The connector is fed vLLM's HND flash-attention layout, one list entry per layer of shape
[2, num_blocks=1, kv_heads, block_size=T, head_dim], with slot mapping arange(T). Index 0
and 1 of such a tensor are exactly a transformers DynamicCache layer's K and V
([1, kv_heads, T, head_dim]), so a retrieve writes straight into the tensors it returns and a
store copies each layer's K and V into one such buffer first (one device-to-device copy).

Nothing here imports torch or lmcache at module import time, so the module can sit in the
repository on machines without either.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib
import importlib.util
import os
import subprocess
import sys
import tempfile
from typing import List, Optional, Tuple

# LMCache reads these when its modules are imported: no usage telemetry (the GPU host has
# no network and a background sender would only retry), and no INFO line per store/retrieve.
_ENV_DEFAULTS = {"LMCACHE_TRACK_USAGE": "false", "DO_NOT_TRACK": "1", "LMCACHE_LOG_LEVEL": "WARNING"}

# The lmcache 0.5.6 wheel's cuda_ops was compiled against an older torch whose libc10
# exported this constructor; torch 2.11 declares NotImplementedError with "using
# Error::Error", so no such symbol exists and the extension fails to load (LMCache then
# falls back to pure-torch ops without saying why). It is only reached when a
# TORCH_CHECK_NOT_IMPLEMENTED fails; the shim constructs the same object through torch's
# own inherited constructor. LMCACHE_PEER_ABI_SHIM=0 turns it off.
_NIE_SYMBOL = ("_ZN3c1019NotImplementedErrorC1ENS_14SourceLocationE"
               "NSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEE")
_SHIM_SRC = r"""
#include <c10/util/Exception.h>
#include <new>
#include <string>
#include <utility>
extern "C" void lmcache_peer_nie_ctor(c10::NotImplementedError* self, c10::SourceLocation loc,
                                      std::string msg) __asm__("%s");
extern "C" void lmcache_peer_nie_ctor(c10::NotImplementedError* self, c10::SourceLocation loc,
                                      std::string msg) {
  new (self) c10::NotImplementedError(loc, std::move(msg));
}
""" % _NIE_SYMBOL

_probe_result: Optional[Tuple[Optional[str]]] = None
_notes: List[str] = []


def notes() -> List[str]:
    """What probe() had to do to get LMCache running (e.g. the ABI shim), for a report."""
    return list(_notes)


def _lmcache_dir() -> Optional[str]:
    # find_spec on a top-level name does not execute the package, and lmcache/__init__
    # must not run before cuda_ops can load: it binds the kernels once, then never again.
    spec = importlib.util.find_spec("lmcache")
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def _build_shim(torch) -> str:
    """Compiles the one-symbol shim against this torch's headers (cached by version)."""
    root = os.path.dirname(torch.__file__)
    tag = hashlib.sha1((torch.__version__ + _SHIM_SRC).encode()).hexdigest()[:12]
    out_dir = os.environ.get("LMCACHE_PEER_SHIM_DIR") or os.path.join(tempfile.gettempdir(), "lmcache_peer_shim")
    os.makedirs(out_dir, exist_ok=True)
    so = os.path.join(out_dir, f"nie_shim_{tag}.so")
    if os.path.exists(so):
        return so
    src = os.path.join(out_dir, f"nie_shim_{tag}.cpp")
    with open(src, "w") as f:
        f.write(_SHIM_SRC)
    abi = int(bool(torch.compiled_with_cxx11_abi()))
    tmp = f"{so}.{os.getpid()}.tmp"
    cmd = [os.environ.get("CXX", "g++"), "-O2", "-std=c++17", "-shared", "-fPIC",
           f"-D_GLIBCXX_USE_CXX11_ABI={abi}", "-I", os.path.join(root, "include"), src, "-o", tmp,
           "-L", os.path.join(root, "lib"), "-lc10", f"-Wl,-rpath,{os.path.join(root, 'lib')}"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"building the ABI shim failed ({' '.join(cmd[:1])} exit {r.returncode}): "
                           + (r.stderr or r.stdout).strip()[-600:])
    os.replace(tmp, so)
    return so


def _load_cuda_ops(torch, pkg_dir: str) -> Optional[str]:
    """dlopen()s lmcache/cuda_ops*.so (RTLD_NOW, as Python's import does) so an undefined
    symbol shows up here with its name, and applies the shim for the known one."""
    names = [n for n in os.listdir(pkg_dir) if n.startswith("cuda_ops.") and n.endswith(".so")]
    if not names:
        return (f"lmcache in {pkg_dir} has no compiled cuda_ops extension: this wheel was built "
                "without CUDA kernels, so LMCache could only run its pure-torch fallback.")
    path = os.path.join(pkg_dir, names[0])
    try:
        ctypes.CDLL(path)
        return None
    except OSError as e:
        first = str(e)
    if _NIE_SYMBOL not in first or os.environ.get("LMCACHE_PEER_ABI_SHIM", "1") == "0":
        return _abi_reason(torch, first, shim_tried=False)
    try:
        shim = _build_shim(torch)
        ctypes.CDLL(shim, mode=os.RTLD_NOW | os.RTLD_GLOBAL)
        ctypes.CDLL(path)
    except (OSError, RuntimeError) as e:
        return _abi_reason(torch, f"{first}; with the shim: {e}", shim_tried=True)
    _notes.append(
        f"lmcache.cuda_ops does not load as shipped against torch {torch.__version__} "
        f"(undefined symbol c10::NotImplementedError::NotImplementedError(SourceLocation, "
        f"std::string): the wheel was compiled against an older torch); it ran with a one-symbol "
        f"shim ({shim}) that supplies that constructor from torch {torch.__version__}'s own headers. "
        "Only a failed TORCH_CHECK_NOT_IMPLEMENTED reaches it; LMCache's kernels are unchanged.")
    return None


def _abi_reason(torch, err: str, shim_tried: bool) -> str:
    msg = (f"lmcache.cuda_ops (LMCache 0.5.6's compiled CUDA kernels) does not load against torch "
           f"{torch.__version__}: OSError: {err}. An undefined C++ symbol from libc10/libtorch means "
           "the wheel was compiled against a different torch (a C++ ABI mismatch; LMCache wheels "
           "track one torch release). Its own loader would then fall back silently to pure-torch "
           "ops, which have no HND path and are not its strongest configuration, so it is not "
           "measured.")
    if not shim_tried and _NIE_SYMBOL in err:
        msg += " (LMCACHE_PEER_ABI_SHIM=0 turned off the shim that supplies this one symbol.)"
    return msg


def probe() -> Optional[str]:
    """None if LMCache 0.5.6 can run here with its CUDA kernels, else why not (one paragraph)."""
    global _probe_result
    if _probe_result is not None:
        return _probe_result[0]
    _probe_result = (_probe(),)
    return _probe_result[0]


def _probe() -> Optional[str]:
    for k, v in _ENV_DEFAULTS.items():
        os.environ.setdefault(k, v)
    try:
        import torch  # noqa: PLC0415
    except Exception as e:  # noqa: BLE001
        return f"torch does not import: {type(e).__name__}: {e}"
    if not torch.cuda.is_available():
        return (f"no CUDA device (torch {torch.__version__}, cuda available: False): LMCache's GPU "
                "connectors and kernels need one.")
    pkg_dir = _lmcache_dir()
    if pkg_dir is None:
        return "lmcache is not installed (the PyPI wheel lmcache==0.5.6 and its dependencies)."
    imported_before = "lmcache" in sys.modules
    if not imported_before:
        why = _load_cuda_ops(torch, pkg_dir)
        if why:
            return why
    try:
        lmcache = importlib.import_module("lmcache")
    except Exception as e:  # noqa: BLE001
        return f"lmcache does not import: {type(e).__name__}: {e}"
    version = getattr(lmcache, "__version__", "?")
    if getattr(lmcache, "torch_device_type", None) != "cuda":
        return f"LMCache {version} detected device type {getattr(lmcache, 'torch_device_type', None)!r}, not cuda."
    ops = getattr(lmcache, "device_ops", None)
    fn = getattr(ops, "multi_layer_kv_transfer", None)
    if ops is None or not str(getattr(fn, "__module__", "")).startswith("lmcache.cuda_ops"):
        try:  # lmcache/__init__ logs and swallows why; ask again for the exception text
            importlib.import_module("lmcache.v1.platform").resolve_device_ops("cuda")
            importlib.import_module("lmcache.cuda_ops")
            err = "it imports now, but was not bound when lmcache initialized"
        except ModuleNotFoundError as e:
            err = f"ModuleNotFoundError: {e} (the Python package {e.name!r} is missing)"
        except Exception as e:  # noqa: BLE001
            err = f"{type(e).__name__}: {e}"
            if imported_before and _NIE_SYMBOL in err:
                err += " (lmcache was imported before probe(), too late for the ABI shim)"
        return (f"LMCache {version} imported but its CUDA kernels are not bound (device_ops="
                f"{type(ops).__name__ if ops is not None else None}; lmcache.cuda_ops: {err}): it would "
                "run on its pure-torch fallback, which is not its strongest configuration; not measured.")
    try:
        for m in ("lmcache.utils", "lmcache.v1.config", "lmcache.v1.metadata", "lmcache.v1.cache_engine",
                  "lmcache.v1.gpu_connector", "lmcache.v1.gpu_connector.gpu_connectors"):
            importlib.import_module(m)
    except ModuleNotFoundError as e:
        return (f"an LMCache module does not import: ModuleNotFoundError: {e}: the Python package "
                f"{e.name!r} is missing (lmcache's import chain needs it; install its wheel).")
    except Exception as e:  # noqa: BLE001
        return f"LMCache {version} does not import: {type(e).__name__}: {e}"
    return None


class LMCachePeer:
    """One LMCache engine for one model's KV shape on one CUDA device."""

    def __init__(self, layers: int, kv_heads: int, head_dim: int, dtype, device,
                 chunk_tokens: int = 256, cpu_bytes: int = 4 << 30):
        why = probe()
        if why:
            raise RuntimeError(why)
        import multiprocessing  # noqa: PLC0415
        import threading  # noqa: PLC0415

        import torch  # noqa: PLC0415
        from lmcache.utils import EngineType  # noqa: PLC0415
        from lmcache.v1.cache_engine import LMCacheEngineBuilder  # noqa: PLC0415
        from lmcache.v1.config import LMCacheEngineConfig  # noqa: PLC0415
        from lmcache.v1.gpu_connector import CreateGPUConnector  # noqa: PLC0415
        from lmcache.v1.metadata import LMCacheMetadata  # noqa: PLC0415

        self._torch = torch
        self._builder = LMCacheEngineBuilder
        self.layers, self.kv_heads, self.head_dim = int(layers), int(kv_heads), int(head_dim)
        self.dtype = dtype
        dev = torch.device(device)
        if dev.type != "cuda":
            raise ValueError(f"LMCachePeer needs a CUDA device, got {dev}")
        self.device = torch.device("cuda", dev.index if dev.index is not None else torch.cuda.current_device())
        self.chunk_tokens = int(chunk_tokens)

        config = LMCacheEngineConfig.from_defaults(
            chunk_size=self.chunk_tokens, local_cpu=True, max_local_cpu_size=cpu_bytes / 2**30,
            local_disk=None, max_local_disk_size=0.0, remote_url=None, save_unfull_chunk=False,
            use_layerwise=False, enable_async_loading=False)
        config.validate()
        metadata = LMCacheMetadata(
            model_name=f"adaptcache-peer/l{self.layers}h{self.kv_heads}d{self.head_dim}/{dtype}",
            world_size=1, local_world_size=1, worker_id=0, local_worker_id=self.device.index,
            kv_dtype=dtype, kv_shape=(self.layers, 2, self.chunk_tokens, self.kv_heads, self.head_dim),
            use_mla=False, chunk_size=self.chunk_tokens)
        self._instance = f"adaptcache_lmcache_peer_{os.getpid()}_{id(self)}"
        # LMCacheEngine forces the process-wide multiprocessing start method to "spawn".
        start_method = multiprocessing.get_start_method(allow_none=True)
        try:
            with torch.cuda.device(self.device):
                conn = CreateGPUConnector(config, metadata, EngineType.VLLM, layout_hints={"kv_layout": "HND"})
                if not hasattr(conn, "kv_cache_pointers_on_gpu"):
                    raise RuntimeError(f"CreateGPUConnector gave {type(conn).__name__}, not the paged V2 connector")
                self._conn = conn
                self._engine = LMCacheEngineBuilder.get_or_create(
                    self._instance, config, metadata, conn, lambda t, src: t, lambda o, src: o)
                self._engine.post_init()
        except BaseException:
            self._engine = None
            if LMCacheEngineBuilder.get(self._instance) is not None:
                LMCacheEngineBuilder.destroy(self._instance)
            raise
        finally:
            multiprocessing.set_start_method(start_method or multiprocessing.get_all_start_methods()[0], force=True)
        # The storage manager's event-loop thread is not a daemon: without close() the
        # interpreter would wait for it forever at exit. This hook runs before that wait.
        reg = getattr(threading, "_register_atexit", None)
        if reg is not None:
            try:
                reg(self.close)
            except RuntimeError:
                pass

    def _buffers(self, n: int):
        t = self._torch
        return [t.empty((2, 1, self.kv_heads, n, self.head_dim), dtype=self.dtype, device=self.device)
                for _ in range(self.layers)]

    def _forget_pointers(self):
        # The V2 connector caches the page buffers' pointers and geometry per device on first
        # use (vLLM registers its KV pool once); each call here brings its own buffers.
        self._conn.kv_cache_pointers_on_gpu.clear()

    def store(self, token_ids: List[int], ks, vs) -> None:
        """Stores the KV of the whole chunks of token_ids; returns once it is in host memory."""
        t = self._torch
        n = len(token_ids) // self.chunk_tokens * self.chunk_tokens
        if n == 0:
            return
        if len(ks) != self.layers or len(vs) != self.layers:
            raise ValueError(f"{len(ks)}/{len(vs)} K/V layers, expected {self.layers}")
        for k, v in zip(ks, vs):
            for x in (k, v):
                if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] != self.kv_heads or x.shape[3] != self.head_dim \
                        or x.shape[2] < n or x.dtype != self.dtype or x.device != self.device:
                    raise ValueError(f"K/V {tuple(x.shape)} {x.dtype} {x.device}: expected "
                                     f"[1, {self.kv_heads}, >={n}, {self.head_dim}] {self.dtype} {self.device}")
        tokens = [int(x) for x in token_ids[:n]]
        with t.cuda.device(self.device), t.no_grad():
            bufs = self._buffers(n)
            for b, k, v in zip(bufs, ks, vs):
                b[0].copy_(k[:, :, :n])
                b[1].copy_(v[:, :, :n])
            slots = t.arange(n, dtype=t.long, device=self.device)
            self._forget_pointers()
            # The connector gathers on its own store stream; the copies above are on ours.
            self._conn.store_stream.wait_stream(t.cuda.current_stream(self.device))
            try:
                self._engine.store(tokens, kvcaches=bufs, slot_mapping=slots)
            finally:
                self._forget_pointers()
            self._conn.store_stream.synchronize()
        got = self._engine.lookup(tokens=tokens)
        if got != n:
            raise RuntimeError(f"LMCache holds {got} of the {n} tokens just stored (host pool too small?)")

    def retrieve(self, token_ids: List[int]):
        """(n, ks, vs): the longest stored prefix (a multiple of chunk_tokens) as fresh per-layer
        [1, kv_heads, n, head_dim] tensors, all copies finished when it returns."""
        t = self._torch
        tokens = token_ids if isinstance(token_ids, list) else list(token_ids)
        n = self._engine.lookup(tokens=tokens)
        # Not inference_mode: the caller may update these tensors in place afterwards.
        with t.cuda.device(self.device), t.no_grad():
            bufs = self._buffers(n)
            if n == 0:
                return 0, [b[0] for b in bufs], [b[1] for b in bufs]
            slots = t.arange(n, dtype=t.long, device=self.device)
            self._forget_pointers()
            # Fresh blocks may still be read by earlier work on our stream; the kernel runs on
            # the connector's load stream, so it waits for ours first.
            self._conn.load_stream.wait_stream(t.cuda.current_stream(self.device))
            try:
                mask = self._engine.retrieve(tokens[:n], kvcaches=bufs, slot_mapping=slots)
            finally:
                self._forget_pointers()
            # batched_to_gpu has synchronized the load stream; ours only ran the arange.
            t.cuda.current_stream(self.device).synchronize()
            got = int(mask.sum())
            if got == n:
                return n, [b[0] for b in bufs], [b[1] for b in bufs]
            # A chunk left between lookup and retrieve: the prefix that did arrive, compacted.
            ks = [b[0][:, :, :got].clone() for b in bufs]
            vs = [b[1][:, :, :got].clone() for b in bufs]
            t.cuda.current_stream(self.device).synchronize()
            return got, ks, vs

    def clear(self) -> None:
        """Drops everything stored (the host pool stays allocated)."""
        if getattr(self, "_engine", None) is not None:
            self._engine.clear()

    def close(self) -> None:
        """Stops LMCache's threads and frees its pinned pool; idempotent."""
        engine = getattr(self, "_engine", None)
        if engine is None:
            return
        self._engine = None
        self._builder.destroy(self._instance)
