"""The Python client of adaptcached (docs/python.md).

A thin layer over libadaptcache_client.so (client/c_api.h) through ctypes: the C++ client
does the RPCs, the shared-memory data plane, the verification (CRC32C of every container
after it is copied) and the CUDA decoding; this module converts numpy / torch tensors and
checks arguments before anything reaches the daemon.

Thread safety: a Client may be shared by any number of threads (the GIL is released during
every library call); close() must not race other calls.
"""

from __future__ import annotations

import ctypes
import json
import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from . import _native
from ._tensors import (BF16, DTYPE_NAMES, DTYPE_SIZES, FP16, FP32, NUMPY_OF, HostTensor, OutBuffer,
                       dtype_code, float_vector, is_torch, torch_module)
from .errors import FailedPrecondition, InvalidArgument, NotFound, OutOfRange

DEFAULT_TARGET = "/tmp/adaptcache/adaptcached.sock"  # the daemon's default socket (cli_app.h)
DEFAULT_CHUNK_TOKENS = 256
KEY_BYTES = 16
TIER_NAMES = {0: None, 1: "dram", 2: "ssd", 3: "remote"}


def default_target() -> str:
    """$ADAPTCACHE_TARGET when set and non-empty, else the daemon's default socket (as the CLI)."""
    return os.environ.get("ADAPTCACHE_TARGET") or DEFAULT_TARGET


# ---------------------------------------------------------------------------- results


@dataclass(frozen=True)
class EntryInfo:
    """What the daemon reports about one entry. ``tier`` is "dram", "ssd", "remote" or None (a miss);
    ``shape`` is (2, layers, tokens, kv_heads, head_dim) and ``dtype`` "bf16"/"fp16"/"fp32"
    for a hit (None for a miss or an SSD entry not read since a daemon restart)."""

    tier: str | None
    codec: str
    stored_bytes: int
    raw_bytes: int
    shape: tuple | None
    dtype: str | None
    est_quality_loss: float
    crc32c: int

    @property
    def hit(self) -> bool:
        return self.tier is not None

    @property
    def ratio(self) -> float:
        """raw_bytes / stored_bytes (0 for a miss)."""
        return self.raw_bytes / self.stored_bytes if self.stored_bytes else 0.0

    @staticmethod
    def _from_c(c: _native.EntryInfo) -> "EntryInfo":
        tier = TIER_NAMES.get(c.tier, f"tier{c.tier}")
        s = c.shape
        has_shape = tier is not None and s.layers != 0
        return EntryInfo(tier=tier, codec=c.codec.decode("utf-8", "replace"), stored_bytes=int(c.stored_bytes),
                         raw_bytes=int(c.raw_bytes),
                         shape=(2, s.layers, s.tokens, s.kv_heads, s.head_dim) if has_shape else None,
                         dtype=DTYPE_NAMES.get(s.dtype) if has_shape else None,
                         est_quality_loss=float(c.est_quality_loss), crc32c=int(c.crc32c))

    def __repr__(self) -> str:
        if not self.hit:
            return "EntryInfo(miss)"
        return (f"EntryInfo(tier={self.tier}, codec={self.codec!r}, stored_bytes={self.stored_bytes}, "
                f"raw_bytes={self.raw_bytes}, shape={self.shape}, dtype={self.dtype}, "
                f"est_quality_loss={self.est_quality_loss:.4g}, crc32c=0x{self.crc32c:08x})")


@dataclass(frozen=True)
class LookupResult:
    """prefix_hits: how many leading keys hit (what an engine can reuse); entries: one per key."""

    prefix_hits: int
    entries: list

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"LookupResult(prefix_hits={self.prefix_hits} of {len(self.entries)})"


@dataclass(frozen=True)
class Health:
    serving: bool
    version: str


@dataclass(frozen=True)
class DeviceResult:
    """get_to_device's answer. ``decoded``: leading keys written (the usable prefix);
    ``leased``: leading keys the daemon leased; ``prefix_hits``: Lookup's prefix;
    ``corrupt``: the prefix ended on an entry that failed its checks (never written);
    ``used_gpu``: the CUDA decoders ran (else the CPU path); ``entries``: one per key."""

    decoded: int
    leased: int
    prefix_hits: int
    corrupt: bool
    used_gpu: bool
    mapping_registered: bool
    entries: list = field(repr=False)

    def __repr__(self) -> str:
        return (f"DeviceResult(decoded={self.decoded} of {len(self.entries)}, leased={self.leased}, "
                f"corrupt={self.corrupt}, used_gpu={self.used_gpu}, mapping_registered={self.mapping_registered})")


class _Closing:
    """close() on leaving a with block and on garbage collection."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001  (interpreter shutdown)
            pass


class DeviceFetch(_Closing):
    """A get_to_device in flight (Client.start_get_to_device): the copies, checks and decodes
    are enqueued. ``pending``: a DeviceResult whose ``decoded`` counts the leading keys whose
    decodes were enqueued, the prefix to assume. wait() blocks until the copies and checks
    are done, releases the leases and returns the final DeviceResult: its ``decoded`` may
    be smaller (an entry failed its device CRC check), or it raises Unavailable (a lease
    expired); whatever was computed from outputs past the final ``decoded`` is then wrong.
    The fetch keeps the outputs alive until it is waited for or closed."""

    def __init__(self, lib, handle, pending: DeviceResult, keep):
        self._lib, self._h, self.pending, self._keep = lib, handle, pending, keep
        self._result = None

    def wait(self) -> DeviceResult:
        if self._result is not None:
            return self._result
        if self._h is None:
            raise InvalidArgument(3, "the fetch is closed")
        res = _native.DeviceResult()
        try:
            _native.check(self._lib.ac_device_fetch_wait(self._h, ctypes.byref(res)))
        finally:
            self.close()
        p = self.pending
        self._result = DeviceResult(decoded=int(res.decoded), leased=p.leased, prefix_hits=p.prefix_hits,
                                    corrupt=bool(res.corrupt), used_gpu=p.used_gpu,
                                    mapping_registered=p.mapping_registered, entries=p.entries)
        return self._result

    def close(self) -> None:
        """Frees the fetch (waiting for its copies if it was not waited for). Idempotent."""
        h, self._h = self._h, None
        if h is not None:
            self._lib.ac_device_fetch_free(h)


@dataclass(frozen=True)
class DeviceRegistration:
    done: bool
    registered: bool
    seconds: float
    bytes: int


# ---------------------------------------------------------------------------- keys


def _key_bytes(key, what="key") -> bytes:
    if isinstance(key, str):
        try:
            key = bytes.fromhex(key)
        except ValueError as e:
            raise InvalidArgument(3, f"{what} {key!r} is not hex") from e
    if isinstance(key, (bytes, bytearray, memoryview)):
        b = bytes(key)
        if len(b) == KEY_BYTES:
            return b
    raise InvalidArgument(3, f"{what} must be {KEY_BYTES} bytes (or 32 hex digits); got {key!r:.60}")


def _keys_buffer(keys) -> tuple[bytes, int]:
    if isinstance(keys, (bytes, bytearray, memoryview, str)):
        keys = [keys]
    ks = [_key_bytes(k, f"keys[{i}]") for i, k in enumerate(keys)]
    return b"".join(ks), len(ks)


def _ns_bytes(ns) -> bytes:
    if not isinstance(ns, str):
        raise InvalidArgument(3, f"namespace must be a str; got {type(ns).__name__}")
    return ns.encode("utf-8")


def hash_tokens(ns: str, tokens, chunk_tokens: int = DEFAULT_CHUNK_TOKENS) -> list:
    """The chunk keys (16-byte ``bytes``) of a token sequence in namespace ``ns``: one per
    chunk of ``chunk_tokens`` tokens (the last may be shorter), chained hashes
    (common/key.h), the same in every process and host as the C++ client's and the CLI's.
    ``tokens``: a sequence / numpy array / torch tensor of token ids in [0, 2**32)."""
    if is_torch(tokens):
        tokens = tokens.detach().to("cpu").numpy()
    a = np.asarray(tokens)
    if a.ndim != 1:
        a = a.reshape(-1)
    if a.size and a.dtype.kind not in "iu":
        raise InvalidArgument(3, f"tokens must be integers; got {a.dtype}")
    if a.size and (int(a.min()) < 0 or int(a.max()) >= 1 << 32):
        raise InvalidArgument(3, "token ids must lie in [0, 2**32)")
    a = np.ascontiguousarray(a, dtype=np.uint32)
    if int(chunk_tokens) <= 0 or int(chunk_tokens) >= 1 << 32:
        raise InvalidArgument(3, f"chunk_tokens must be in [1, 2**32); got {chunk_tokens}")
    n = (a.size + chunk_tokens - 1) // chunk_tokens
    out = ctypes.create_string_buffer(max(n, 1) * KEY_BYTES)
    got = ctypes.c_uint64()
    L = _native.lib()
    _native.check(L.ac_hash_tokens(_ns_bytes(ns), a.ctypes.data, a.size, chunk_tokens, out, n, ctypes.byref(got)))
    raw = out.raw
    return [raw[i * KEY_BYTES:(i + 1) * KEY_BYTES] for i in range(got.value)]


# ---------------------------------------------------------------------------- containers


def _as_bytes_buffer(container):
    """(pointer, size, owner) of container bytes (bytes, bytearray, memoryview, numpy uint8)."""
    if isinstance(container, np.ndarray):
        a = np.ascontiguousarray(container).view(np.uint8).reshape(-1)
        return a.ctypes.data, a.nbytes, a
    if isinstance(container, (bytes, bytearray, memoryview)):
        a = np.frombuffer(container, dtype=np.uint8)
        return a.ctypes.data, a.nbytes, a
    raise InvalidArgument(3, f"container must be bytes or a uint8 numpy array; got {type(container).__name__}")


def container_info(container) -> tuple:
    """((2, layers, tokens, kv_heads, head_dim), dtype name, config name) of a container,
    after validating it fully (CRC included). DataLoss on bad bytes."""
    ptr, n, _owner = _as_bytes_buffer(container)
    shape = _native.Shape()
    name = ctypes.create_string_buffer(_native.CODEC_NAME_BYTES)
    _native.check(_native.lib().ac_container_info(ptr, n, ctypes.byref(shape), name))
    dims = (2, shape.layers, shape.tokens, shape.kv_heads, shape.head_dim)
    return dims, DTYPE_NAMES[shape.dtype], name.value.decode()


def decode_container(container, out: np.ndarray | None = None) -> np.ndarray:
    """Decodes container bytes on the CPU (kernels/codec.h Decode) into a numpy array of
    the container's shape and dtype (bf16 as uint16); dropped tokens of a drop entry decode
    as zeros. ``out``: an optional C-contiguous array of exactly that size and dtype."""
    ptr, n, _owner = _as_bytes_buffer(container)
    dims, dt, _ = container_info(container)
    want = NUMPY_OF[dtype_code(dt)]
    if out is None:
        out = np.empty(dims, dtype=want)
    elif out.dtype != want or out.size != int(np.prod(dims)) or not out.flags.c_contiguous or not out.flags.writeable:
        raise InvalidArgument(3, f"out must be a writeable C-contiguous {want} array of {int(np.prod(dims))} values")
    _native.check(_native.lib().ac_decode(ptr, n, out.ctypes.data, out.nbytes))
    return out


def kept_tokens(container) -> np.ndarray:
    """Token positions a decode reconstructs (uint32): all but the dropped ones of a drop entry."""
    ptr, n, _owner = _as_bytes_buffer(container)
    dims, _, _ = container_info(container)
    out = np.empty(dims[2], dtype=np.uint32)
    got = ctypes.c_uint64()
    _native.check(_native.lib().ac_kept_tokens(ptr, n, out.ctypes.data, out.size, ctypes.byref(got)))
    return out[:got.value]


# ---------------------------------------------------------------------------- paged output


class PagedKV:
    """An engine's paged KV cache as GetToDevice's output (vLLM layout).

    ``k_caches`` / ``v_caches``: one tensor per layer, each [num_blocks, block_size, kv_heads,
    head_dim] (the last three dimensions dense; blocks may be any stride apart, so views such
    as ``kv[0]`` of vLLM's [2, num_blocks, block_size, kv_heads, head_dim] work), all of one
    dtype and device: torch CUDA tensors for the GPU path; numpy arrays or CPU tensors for
    the CPU path. ``slot_mappings``: per key, an int64 vector (same device) of at least the
    entry's token count: token t goes to slot ``slot_mappings[i][t] = block * block_size +
    offset``; -1 skips a token, slots past the cache are skipped too.
    Build it once per cache; the per-layer pointer arrays are made here (on the device for
    CUDA tensors). Use with_slots() per request."""

    def __init__(self, k_caches: Sequence, v_caches: Sequence, slot_mappings: Sequence = ()):
        if len(k_caches) == 0 or len(k_caches) != len(v_caches):
            raise InvalidArgument(3, f"k_caches and v_caches must be non-empty lists of the same length; got "
                                     f"{len(k_caches)} and {len(v_caches)}")
        bufs = []
        first = None
        for kind, caches in (("k", k_caches), ("v", v_caches)):
            for i, t in enumerate(caches):
                b = _paged_buffer(t, f"{kind}_caches[{i}]")
                if not _is_dense_tail(t):
                    raise InvalidArgument(3, f"{kind}_caches[{i}] must be [num_blocks, block_size, kv_heads, "
                                             f"head_dim] with the last three dimensions dense")
                dims, bstride = _dims_and_block_stride(t)
                sig = (dims, bstride, b.dtype, b.device)
                if first is None:
                    first = sig
                elif sig != first:
                    raise InvalidArgument(3, f"{kind}_caches[{i}] is {sig}; caches[0] is {first}: every layer's "
                                             f"cache needs one shape, block stride, dtype and device")
                bufs.append(b)
        (self.num_blocks, self.block_size, self.kv_heads, self.head_dim), self.block_stride, self.dtype, \
            self.device = first
        self.layers = len(k_caches)
        self.is_cuda = self.device.startswith("cuda")
        self.device_index = int(self.device.split(":")[1]) if self.is_cuda else -1
        self._caches = (list(k_caches), list(v_caches))  # keep the memory alive
        ptrs = [b.ptr for b in bufs]
        if self.is_cuda:
            torch = torch_module()
            arr = torch.tensor(ptrs, dtype=torch.int64).to(self.device)
            self._ptrs = arr
            base = arr.data_ptr()
        else:
            arr = np.array(ptrs, dtype=np.uint64)
            self._ptrs = arr
            base = arr.ctypes.data
        self._k_ptr, self._v_ptr = base, base + 8 * self.layers
        self.slot_mappings = list(slot_mappings)

    def with_slots(self, slot_mappings: Sequence) -> "PagedKV":
        """A PagedKV over the same caches with other slot mappings (shares the pointer arrays)."""
        other = object.__new__(PagedKV)
        other.__dict__.update(self.__dict__)
        other.slot_mappings = list(slot_mappings)
        return other

    @classmethod
    def from_vllm(cls, kv_caches: Sequence, slot_mappings: Sequence = ()) -> "PagedKV":
        """From vLLM's per-layer caches [2, num_blocks, block_size, kv_heads, head_dim] (K then V)."""
        ks, vs = [], []
        for i, t in enumerate(kv_caches):
            if len(t.shape) != 5 or t.shape[0] != 2:
                raise InvalidArgument(3, f"kv_caches[{i}] must be [2, num_blocks, block_size, kv_heads, head_dim]; "
                                         f"got {list(t.shape)}")
            ks.append(t[0])
            vs.append(t[1])
        return cls(ks, vs, slot_mappings)

    def _c_struct(self) -> _native.PagedCache:
        return _native.PagedCache(self._k_ptr, self._v_ptr, self.layers, self.kv_heads, self.head_dim,
                                  self.block_size, self.num_blocks, self.block_stride, self.dtype, None)

    def __repr__(self) -> str:
        return (f"PagedKV(layers={self.layers}, num_blocks={self.num_blocks}, block_size={self.block_size}, "
                f"kv_heads={self.kv_heads}, head_dim={self.head_dim}, dtype={DTYPE_NAMES[self.dtype]}, "
                f"device={self.device}, block_stride={self.block_stride}, slot_mappings={len(self.slot_mappings)})")


def _shape_strides(t):
    if is_torch(t):
        return tuple(t.shape), tuple(t.stride())
    a = np.asarray(t) if not isinstance(t, np.ndarray) else t
    return a.shape, tuple(s // a.itemsize for s in a.strides)


def _is_dense_tail(t) -> bool:
    shape, strides = _shape_strides(t)
    if len(shape) != 4 or 0 in shape:
        return False
    _, bs, h, d = shape
    return strides[3] == 1 and strides[2] == d and strides[1] == h * d and strides[0] >= bs * h * d


def _dims_and_block_stride(t):
    shape, strides = _shape_strides(t)
    return tuple(int(x) for x in shape), int(strides[0])


def _paged_buffer(t, what):
    """A cache tensor as a buffer (OutBuffer needs contiguity; a cache view need not be)."""
    b = object.__new__(OutBuffer)
    if is_torch(t):
        b.dtype = _torch_dtype_code(t)
        b.ptr = t.data_ptr()
        b.device = "cpu" if t.device.type == "cpu" else f"cuda:{t.device.index or 0}"
        if t.device.type not in ("cpu", "cuda"):
            raise InvalidArgument(3, f"{what} is on {t.device}; CUDA or CPU memory expected")
    elif isinstance(t, np.ndarray):
        if not t.flags.writeable:
            raise InvalidArgument(3, f"{what} must be writeable")
        b.dtype = {np.dtype(np.uint16): BF16, np.dtype(np.float16): FP16, np.dtype(np.float32): FP32}.get(t.dtype)
        if b.dtype is None:
            raise InvalidArgument(3, f"{what} dtype must be float16, float32 or uint16 (bf16); got {t.dtype}")
        b.ptr = t.ctypes.data
        b.device = "cpu"
    else:
        raise InvalidArgument(3, f"{what} must be a torch tensor or a numpy array; got {type(t).__name__}")
    b.owner = t
    return b


def _torch_dtype_code(t) -> int:
    torch = torch_module()
    code = {torch.bfloat16: BF16, torch.float16: FP16, torch.float32: FP32}.get(t.dtype)
    if code is None:
        raise InvalidArgument(3, f"tensor dtype must be torch.bfloat16, float16 or float32; got {t.dtype}")
    return code


def _slot_buffer(s, device: str, what: str):
    """(pointer, length, owner) of one slot mapping: a 1-D contiguous int64 vector on `device`."""
    if is_torch(s):
        torch = torch_module()
        dev = "cpu" if s.device.type == "cpu" else f"{s.device.type}:{s.device.index or 0}"
        if s.dtype != torch.int64 or s.dim() != 1 or not s.is_contiguous():
            raise InvalidArgument(3, f"{what} must be a contiguous 1-D torch.int64 tensor; got {s.dtype} "
                                     f"{list(s.shape)}")
        if dev != device:
            raise InvalidArgument(3, f"{what} is on {dev}; the caches are on {device}")
        return s.data_ptr(), s.numel(), s
    if isinstance(s, np.ndarray):
        if s.dtype != np.int64 or s.ndim != 1 or not s.flags.c_contiguous:
            raise InvalidArgument(3, f"{what} must be a contiguous 1-D int64 array; got {s.dtype} {list(s.shape)}")
        if device != "cpu":
            raise InvalidArgument(3, f"{what} is host memory; the caches are on {device}")
        return s.ctypes.data, s.size, s
    raise InvalidArgument(3, f"{what} must be an int64 torch tensor or numpy array; got {type(s).__name__}")


def built_with_cuda() -> bool:
    """Whether libadaptcache_client.so has the CUDA decoders."""
    return bool(_native.lib().ac_built_with_cuda())


def cuda_available() -> bool:
    """Whether the library has the CUDA decoders and a CUDA device is usable by this process."""
    return bool(_native.lib().ac_cuda_available())


# ---------------------------------------------------------------------------- client


class Client(_Closing):
    """A connection to adaptcached.

    ``target``: a socket path, ``unix:///path``, ``unix:path`` or ``host:port`` (plain-text
    TCP); default ``$ADAPTCACHE_TARGET``, else the daemon's default socket
    ``/tmp/adaptcache/adaptcached.sock`` (the CLI's rules). ``timeout``: seconds per RPC
    (None = no deadline). Connecting checks the daemon with a Health call; a daemon that is
    not there raises :class:`Unavailable`.

    Keys are 16-byte ``bytes`` (see :func:`hash_tokens`); 32-digit hex strings are accepted
    too. Use as a context manager, or call close(). Thread safe (see the module doc)."""

    def __init__(self, target: str | None = None, *, timeout: float | None = 60.0):
        self._h = None
        self.target = target if target else default_target()
        ms = 0 if timeout is None else int(round(float(timeout) * 1000))
        if ms < 0:
            raise InvalidArgument(3, f"timeout must be >= 0 seconds or None; got {timeout}")
        self.timeout = timeout
        L = _native.lib()
        h = ctypes.c_void_p()
        _native.check(L.ac_connect(self.target.encode("utf-8"), ms, ctypes.byref(h)))
        self._h = h
        self._lib = L

    # -- lifetime

    def close(self) -> None:
        """Releases the connection (pending lease releases are flushed). Idempotent."""
        h, self._h = self._h, None
        if h is not None:
            self._lib.ac_close(h)

    @property
    def closed(self) -> bool:
        return self._h is None

    def __repr__(self) -> str:
        return f"Client(target={self.target!r}{', closed' if self.closed else ''})"

    def _handle(self):
        if self._h is None:
            raise InvalidArgument(3, "the client is closed")
        return self._h

    # -- keys

    hash_tokens = staticmethod(hash_tokens)

    # -- control plane

    def health(self) -> Health:
        """The daemon's serving state and version."""
        serving = ctypes.c_int32()
        version = ctypes.create_string_buffer(256)
        _native.check(self._lib.ac_health(self._handle(), ctypes.byref(serving), version, len(version)))
        return Health(serving=bool(serving.value), version=version.value.decode("utf-8", "replace"))

    def stats(self) -> dict:
        """The daemon's counters (Stats RPC) as a dict: tiers (list of dicts with tier,
        capacity_bytes, used_bytes, entries, hits), lookups, misses, puts, evictions,
        leases_outstanding, entries_by_codec, bytes_by_codec, version, uptime_s."""
        need = ctypes.c_uint64()
        cap = 4096
        for _ in range(4):
            buf = ctypes.create_string_buffer(cap)
            try:
                _native.check(self._lib.ac_stats_json(self._handle(), buf, cap, ctypes.byref(need)))
            except OutOfRange:
                cap = int(need.value) * 2  # codecs appeared between two calls
                continue
            return json.loads(buf.value.decode("utf-8"))
        raise OutOfRange(11, "stats kept growing")

    def lookup(self, ns: str, keys) -> LookupResult:
        """Which keys are stored (does not count as an access). ``keys``: one key or a list."""
        kbuf, n = _keys_buffer(keys)
        entries = (_native.EntryInfo * max(n, 1))()
        hits = ctypes.c_uint32()
        _native.check(self._lib.ac_lookup(self._handle(), _ns_bytes(ns), kbuf, n, ctypes.byref(hits), entries))
        return LookupResult(prefix_hits=int(hits.value), entries=[EntryInfo._from_c(entries[i]) for i in range(n)])

    def delete(self, ns: str, keys) -> int:
        """Removes the keys from every tier; returns how many existed."""
        kbuf, n = _keys_buffer(keys)
        deleted = ctypes.c_uint32()
        _native.check(self._lib.ac_delete(self._handle(), _ns_bytes(ns), kbuf, n, ctypes.byref(deleted)))
        return int(deleted.value)

    def flush_releases(self) -> int:
        """Sends pending shared-memory lease releases now; returns how many the daemon still held."""
        held = ctypes.c_uint32()
        _native.check(self._lib.ac_flush_releases(self._handle(), ctypes.byref(held)))
        return int(held.value)

    # -- Put

    def put(self, ns: str, key, tensor, codec: str | None = None, *, shm: bool = True, dtype: str | None = None,
            token_importance=None, probe_queries=None) -> EntryInfo:
        """Stores one chunk's KV under ``key``.

        ``tensor``: [2, layers, tokens, kv_heads, head_dim] (K then V), a numpy array
        (float16, float32, or uint16 bf16 bits with ``dtype="bf16"``) or a torch tensor
        (bfloat16/float16/float32; a CUDA tensor is copied to the host first). ``codec``:
        a config name ("raw", "fp8", "quant-k4v4-g64", "drop-50", ...); None = the
        namespace's default. ``shm``: write through the shared pool (same host) instead of
        streaming over gRPC. ``token_importance``: optional [tokens] floats;
        ``probe_queries``: optional [layers, probe_count, kv_heads, head_dim] floats (both
        only inform token dropping and quality estimates). Returns the stored EntryInfo."""
        k = _key_bytes(key)
        t = HostTensor(tensor, dtype)
        _, L, T, H, D = t.dims
        shape = _native.Shape(L, T, H, D, t.dtype)
        opts = _native.PutOptions()
        if codec:
            opts.codec = codec.encode("utf-8")
        imp = float_vector(token_importance, T, "token_importance")
        if imp is not None:
            opts.token_importance, opts.token_importance_count = imp.ctypes.data, imp.size
        probes = float_vector(probe_queries, None, "probe_queries")
        if probes is not None:
            per = L * H * D
            if probes.size == 0 or probes.size % per != 0:
                raise InvalidArgument(3, f"probe_queries must be [layers={L}, probe_count, kv_heads={H}, "
                                         f"head_dim={D}]; got {probes.size} values")
            opts.probe_count = probes.size // per
            opts.probe_queries, opts.probe_query_count = probes.ctypes.data, probes.size
        info = _native.EntryInfo()
        fn = self._lib.ac_put_shm if shm else self._lib.ac_put
        _native.check(fn(self._handle(), _ns_bytes(ns), k, ctypes.byref(shape), t.ptr, t.nbytes, ctypes.byref(opts),
                         ctypes.byref(info)))
        return EntryInfo._from_c(info)

    def put_tokens(self, ns: str, tokens, tensor, codec: str | None = None, *,
                   chunk_tokens: int = DEFAULT_CHUNK_TOKENS, **kw) -> list:
        """Stores a whole sequence's KV, one entry per chunk of ``chunk_tokens`` tokens, keyed
        by hashing ``tokens`` (as the CLI's put --tokens). ``tensor``'s token dimension must
        equal len(tokens). Other arguments as put(). Returns (key, EntryInfo) per chunk."""
        keys = hash_tokens(ns, tokens, chunk_tokens)
        n_tok = int(np.asarray(tokens).size) if not is_torch(tokens) else int(tokens.numel())
        dims = tuple(tensor.shape)
        if len(dims) != 5 or dims[2] != n_tok:
            raise InvalidArgument(3, f"tensor must be [2, layers, {n_tok}, kv_heads, head_dim]; got {list(dims)}")
        out = []
        for i, k in enumerate(keys):
            chunk = tensor[:, :, i * chunk_tokens:min((i + 1) * chunk_tokens, n_tok)]
            out.append((k, self.put(ns, k, chunk, codec, **kw)))
        return out

    # -- Get

    def get_into(self, ns: str, key, out, *, shm: bool = True) -> EntryInfo:
        """Copies the entry's container into ``out`` (a writeable buffer: bytearray, numpy
        array, ...; at least stored_bytes long) and verifies it there (CRC32C). The bytes are
        the first ``info.stored_bytes`` of ``out``. NotFound on a miss; OutOfRange (shm) or
        InvalidArgument (stream) when ``out`` is too small."""
        k = _key_bytes(key)
        a = np.frombuffer(out, dtype=np.uint8) if not isinstance(out, np.ndarray) else out.reshape(-1).view(np.uint8)
        if not a.flags.writeable or not a.flags.c_contiguous:
            raise InvalidArgument(3, "out must be a writeable contiguous buffer")
        info = _native.EntryInfo()
        fn = self._lib.ac_get_shm_into if shm else self._lib.ac_get_into
        _native.check(fn(self._handle(), _ns_bytes(ns), k, a.ctypes.data, a.nbytes, ctypes.byref(info)))
        return EntryInfo._from_c(info)

    def get(self, ns: str, key, *, shm: bool = True) -> np.ndarray:
        """The entry's container (self-describing, docs/format.md) as a uint8 numpy array,
        verified; through a shared-memory lease (``shm``) or streamed over gRPC. Both give the
        same bytes. NotFound on a miss. (A Lookup sizes the buffer; use get_into with a
        buffer of your own to save that round trip.)"""
        k = _key_bytes(key)
        size = None
        for _ in range(4):
            if size is None:
                e = self.lookup(ns, [k]).entries[0]
                size = e.stored_bytes if e.hit else 0
            buf = np.empty(size, dtype=np.uint8)
            try:
                info = self.get_into(ns, k, buf, shm=shm)
                return buf[:info.stored_bytes]
            except OutOfRange as err:  # replaced by a larger entry since the Lookup (shm path)
                if not shm:
                    raise
                size = None
                last = err
            except InvalidArgument as err:  # the same, on the streamed path
                now = self.lookup(ns, [k]).entries[0]
                if shm or not now.hit or now.stored_bytes <= size:
                    raise
                size = now.stored_bytes
                last = err
        raise last

    def get_tensor(self, ns: str, key, *, shm: bool = True, out: np.ndarray | None = None) -> np.ndarray:
        """get() then decode_container(): the entry's KV tensor [2, layers, tokens, kv_heads,
        head_dim] decoded on the CPU, in the stored dtype (bf16 as uint16)."""
        return decode_container(self.get(ns, key, shm=shm), out)

    decode = staticmethod(decode_container)

    # -- GetToDevice

    def get_to_device(self, ns: str, keys, out: Sequence | None = None, *, paged: PagedKV | None = None,
                      stream=None, force_cpu: bool = False, lease_ms: int = 0) -> DeviceResult:
        """Fetches the longest prefix of ``keys`` that hits and decodes it into the engine's
        tensors, in one LeasePrefix round trip (client/get_to_device.h).

        Exactly one of:
          ``out``: one buffer per key, [2, layers, tokens, kv_heads, head_dim] of the
                   entry's element count, contiguous; bf16/fp16/fp32 (converted from the
                   stored dtype when it differs; numpy uint16 means bf16);
          ``paged``: a :class:`PagedKV` (per-layer caches + one slot mapping per key).
        Outputs that are torch CUDA tensors are decoded by the CUDA kernels, enqueued on
        ``stream`` (a torch.cuda.Stream, a raw cudaStream_t int, or None = torch's current
        stream of the tensors' device); they are ready when that stream gets there (the call
        itself waits for the copies and checks, not the decodes). Host outputs (numpy arrays,
        CPU tensors) take the CPU path, complete on return; ``force_cpu`` demands it.
        Both paths give the same bytes.

        The sizes of the outputs (or slot mappings) travel with the call: an entry that
        does not fit raises InvalidArgument before anything is written.
        Returns a DeviceResult; keys past ``decoded`` were not written."""
        with self.start_get_to_device(ns, keys, out, paged=paged, stream=stream, force_cpu=force_cpu,
                                      lease_ms=lease_ms) as f:
            return f.wait()

    def start_get_to_device(self, ns: str, keys, out: Sequence | None = None, *, paged: PagedKV | None = None,
                            stream=None, force_cpu: bool = False, lease_ms: int = 0) -> DeviceFetch:
        """get_to_device without the host wait for the copies and checks: returns a
        :class:`DeviceFetch` once everything is enqueued, so that work reading the outputs
        (a forward that waits per layer) can be enqueued while the DMAs run. Same arguments
        and checks as get_to_device (which is this plus DeviceFetch.wait()). On the CPU path
        the fetch is complete on return."""
        kbuf, n = _keys_buffer(keys)
        if (out is None) == (paged is None):
            raise InvalidArgument(3, "give exactly one of out= (contiguous) or paged= (PagedKV)")
        lease_ms = int(lease_ms)
        if not 0 <= lease_ms < 1 << 32:
            raise InvalidArgument(3, f"lease_ms must be in [0, 2**32); got {lease_ms}")
        if out is not None:
            if len(out) != n:
                raise InvalidArgument(3, f"{n} keys but {len(out)} outputs")
            bufs = [OutBuffer(o, f"out[{i}]") for i, o in enumerate(out)]
            devices = {b.device for b in bufs}
            dtypes = {b.dtype for b in bufs}
            if len(devices) > 1 or len(dtypes) > 1:
                raise InvalidArgument(3, f"all outputs need one device and dtype; got {sorted(devices)} "
                                         f"{sorted(DTYPE_NAMES[d] for d in dtypes)}")
            device = bufs[0].device if bufs else "cpu"
            out_dtype = bufs[0].dtype if bufs else BF16
            sizes = (ctypes.c_uint64 * max(n, 1))(*[b.nbytes for b in bufs])
        else:
            if not isinstance(paged, PagedKV):
                raise InvalidArgument(3, f"paged must be a PagedKV; got {type(paged).__name__}")
            if len(paged.slot_mappings) != n:
                raise InvalidArgument(3, f"{n} keys but {len(paged.slot_mappings)} slot mappings")
            slots = [_slot_buffer(s, paged.device, f"slot_mappings[{i}]") for i, s in enumerate(paged.slot_mappings)]
            device = paged.device
            out_dtype = paged.dtype
            sizes = (ctypes.c_uint64 * max(n, 1))(*[s[1] for s in slots])
        on_cuda = device.startswith("cuda")
        dev_index = int(device.split(":")[1]) if on_cuda else -1
        stream_handle = 0
        if on_cuda:
            if force_cpu:
                raise InvalidArgument(3, "force_cpu=True needs host outputs (numpy arrays or CPU tensors); "
                                         "got CUDA tensors")
            if not cuda_available():
                raise FailedPrecondition(9, ("libadaptcache_client.so was built without CUDA" if not built_with_cuda()
                           else "the library sees no usable CUDA device") + "; pass host outputs for the CPU path")
            stream_handle = _stream_handle(stream, dev_index)
        if n == 0:
            empty = DeviceResult(decoded=0, leased=0, prefix_hits=0, corrupt=False, used_gpu=False,
                                 mapping_registered=False, entries=[])
            done = DeviceFetch(self._lib, None, empty, None)
            done._result = empty
            return done

        res = _native.DeviceResult()
        ents = (_native.EntryInfo * n)()
        h = ctypes.c_void_p()
        if out is not None:
            ptrs = (ctypes.c_void_p * n)(*[b.ptr for b in bufs])
            keep = (out, bufs, ptrs, sizes)
            rc = self._lib.ac_get_to_device_start(self._handle(), _ns_bytes(ns), kbuf, n, ptrs, out_dtype, None, None,
                                                  sizes, stream_handle, dev_index, 0 if on_cuda else 1, lease_ms,
                                                  ctypes.byref(h), ctypes.byref(res), ents)
        else:
            cache = paged._c_struct()
            sm = (ctypes.c_void_p * n)(*[s[0] for s in slots])
            keep = (paged, slots, cache, sm, sizes)
            rc = self._lib.ac_get_to_device_start(self._handle(), _ns_bytes(ns), kbuf, n, None, out_dtype,
                                                  ctypes.byref(cache), sm, sizes, stream_handle, dev_index,
                                                  0 if on_cuda else 1, lease_ms, ctypes.byref(h), ctypes.byref(res),
                                                  ents)
        _native.check(rc)
        entries = [EntryInfo._from_c(ents[i]) for i in range(n)]
        pending = DeviceResult(decoded=int(res.decoded), leased=int(res.leased), prefix_hits=int(res.prefix_hits),
                               corrupt=bool(res.corrupt), used_gpu=bool(res.used_gpu),
                               mapping_registered=bool(res.mapping_registered), entries=entries)
        return DeviceFetch(self._lib, h, pending, keep)

    def prepare_device(self, wait: bool = False, device: int | None = None) -> DeviceRegistration:
        """Maps the pool and registers it with CUDA in the background (wait=True blocks), so
        that get_to_device's copies become DMAs from the mapping. FailedPrecondition without
        a usable GPU."""
        r = _native.DeviceRegistration()
        _native.check(self._lib.ac_prepare_device(self._handle(), -1 if device is None else int(device),
                                                  1 if wait else 0, ctypes.byref(r)))
        return DeviceRegistration(done=bool(r.done), registered=bool(r.registered), seconds=float(r.seconds),
                                  bytes=int(r.bytes))


def _stream_handle(stream, device_index: int) -> int:
    if stream is None:
        torch = torch_module()
        return int(torch.cuda.current_stream(device_index).cuda_stream)
    if isinstance(stream, int):
        return stream
    handle = getattr(stream, "cuda_stream", None)
    if handle is None:
        raise InvalidArgument(3, f"stream must be a torch.cuda.Stream, an int handle or None; got {stream!r}")
    return int(handle)


__all__ = ["Client", "PagedKV", "EntryInfo", "LookupResult", "Health", "DeviceResult", "DeviceRegistration",
           "hash_tokens", "decode_container", "container_info", "kept_tokens", "default_target",
           "built_with_cuda", "cuda_available", "DEFAULT_TARGET", "DEFAULT_CHUNK_TOKENS"]
