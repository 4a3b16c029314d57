"""AdaptCache Python package (docs/python.md).

The client of the adaptcached KV-cache daemon::

    import adaptcache as ac
    with ac.Client() as c:                      # $ADAPTCACHE_TARGET or the default socket
        keys = ac.hash_tokens("llama-3.1-8b", token_ids)
        c.put("llama-3.1-8b", keys[0], kv)      # numpy / torch [2, layers, tokens, kv_heads, head_dim]
        c.get_to_device("llama-3.1-8b", keys, out=[gpu_tensor, ...])

It loads libadaptcache_client.so (a C ABI, through ctypes) on first use, so it works on
any Python 3.x. numpy is required; torch is optional (imported only for torch tensors).
Errors raise adaptcache.AdaptCacheError subclasses carrying the daemon's status code.

The codec library's Python binding (the CPU encoders/decoders and quality proxies, module
``adaptcache._codec``, used by the quality profiler) is re-exported lazily under its old
names (encode, decode, QualityReference, ...); it loads only on the CPython version it was
built for. KV tensors there are C-ordered numpy arrays [2, layers, tokens, kv_heads,
head_dim] in float16 or float32; bf16 travels as uint16 with ``dtype="bf16"``; its errors
raise ValueError.
"""

from .client import (  # noqa: F401  (re-exported API)
    DEFAULT_CHUNK_TOKENS,
    DEFAULT_TARGET,
    Client,
    DeviceFetch,
    DeviceRegistration,
    DeviceResult,
    EntryInfo,
    Health,
    LookupResult,
    PagedKV,
    built_with_cuda,
    container_info,
    cuda_available,
    decode_container,
    default_target,
    hash_tokens,
    kept_tokens as container_kept_tokens,
)
from .errors import *  # noqa: F401,F403
from .errors import __all__ as _errors_all

_CODEC_NAMES = (
    "QualityReference",
    "canonical_name",
    "config_of",
    "decode",
    "default_config_space",
    "encode",
    "family",
    "is_applicable",
    "kept_tokens",
    "max_encoded_bytes",
)


def __getattr__(name):
    # The pybind11 codec module, imported on first use: the client must not need it.
    if name in _CODEC_NAMES:
        from . import _codec  # noqa: PLC0415

        value = getattr(_codec, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'adaptcache' has no attribute {name!r}")


__all__ = [
    "Client", "PagedKV", "EntryInfo", "LookupResult", "Health", "DeviceResult", "DeviceFetch", "DeviceRegistration",
    "hash_tokens", "decode_container", "container_info", "container_kept_tokens", "default_target",
    "built_with_cuda", "cuda_available", "DEFAULT_TARGET", "DEFAULT_CHUNK_TOKENS",
] + list(_errors_all) + list(_CODEC_NAMES)
