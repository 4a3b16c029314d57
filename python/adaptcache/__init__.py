"""AdaptCache Python package.

For now it exposes the codec library (the CPU reference encoders/decoders and the
quality proxies, exactly as the daemon runs them) on numpy arrays; it grows into the
Python client later.

KV tensors are C-ordered numpy arrays of shape [2, layers, tokens, kv_heads, head_dim]
(K then V) in float16 or float32; bf16 travels as uint16 with ``dtype="bf16"``.
Library errors raise ValueError.
"""

from adaptcache._codec import (  # noqa: F401  (re-exported API)
    QualityReference,
    canonical_name,
    config_of,
    decode,
    default_config_space,
    encode,
    family,
    is_applicable,
    kept_tokens,
    max_encoded_bytes,
)

__all__ = [
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
]
