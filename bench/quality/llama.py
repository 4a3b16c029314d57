"""A Llama-architecture decoder in numpy (float32), with an explicit KV cache.

Architecture: token embedding, per layer RMSNorm -> attention (RoPE, grouped-query) ->
residual -> RMSNorm -> SwiGLU MLP -> residual, final RMSNorm, LM head (tied or not).
Weights follow the Hugging Face convention (q/k rows in "rotate_half" order, weight
matrices [out, in]); the GGUF loader un-permutes llama.cpp's q/k layout into it, so the
cached keys are post-RoPE keys exactly as HF-style engines (vLLM, SGLang) cache them.

The cache is a list per layer of (K, V) float32 arrays [tokens, kv_heads, head_dim] plus a
per-position validity mask: token dropping leaves positions in place and masks them out
of attention (a decoded zero key would otherwise still draw softmax weight).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np


@dataclasses.dataclass
class LlamaConfig:
    vocab_size: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    rope_theta: float = 10000.0
    rms_eps: float = 1e-5
    max_positions: int = 8192
    bos_id: Optional[int] = None
    eos_id: Optional[int] = None

    def validate(self) -> None:
        if min(self.vocab_size, self.hidden, self.intermediate, self.layers, self.heads,
               self.kv_heads, self.head_dim) <= 0:
            raise ValueError(f"bad model config {self}")
        if self.heads % self.kv_heads:
            raise ValueError("heads must be a multiple of kv_heads (GQA)")
        if self.head_dim % 2:
            raise ValueError("head_dim must be even for RoPE")


@dataclasses.dataclass
class LayerWeights:
    attn_norm: np.ndarray  # [hidden]
    wq: np.ndarray  # [heads*head_dim, hidden]
    wk: np.ndarray  # [kv_heads*head_dim, hidden]
    wv: np.ndarray  # [kv_heads*head_dim, hidden]
    wo: np.ndarray  # [hidden, heads*head_dim]
    ffn_norm: np.ndarray  # [hidden]
    w_gate: np.ndarray  # [intermediate, hidden]
    w_up: np.ndarray  # [intermediate, hidden]
    w_down: np.ndarray  # [hidden, intermediate]


class KvCache:
    """Per-layer post-RoPE K and V, [tokens, kv_heads, head_dim] float32, plus validity."""

    def __init__(self, layers: int):
        self.k = [None] * layers
        self.v = [None] * layers
        self.valid: Optional[np.ndarray] = None  # [tokens] bool, None = all valid

    @property
    def tokens(self) -> int:
        return 0 if self.k[0] is None else self.k[0].shape[0]

    def to_tensor(self, dtype=np.float16) -> np.ndarray:
        """The cache as the codec layout [2, layers, tokens, kv_heads, head_dim]."""
        return np.stack([np.stack(self.k), np.stack(self.v)]).astype(dtype)

    @staticmethod
    def from_tensor(kv: np.ndarray, valid: Optional[np.ndarray] = None) -> "KvCache":
        if kv.ndim != 5 or kv.shape[0] != 2:
            raise ValueError("kv must be [2, layers, tokens, kv_heads, head_dim]")
        c = KvCache(kv.shape[1])
        kv32 = np.asarray(kv, dtype=np.float32)
        c.k = [np.ascontiguousarray(kv32[0, i]) for i in range(kv.shape[1])]
        c.v = [np.ascontiguousarray(kv32[1, i]) for i in range(kv.shape[1])]
        if valid is not None:
            valid = np.asarray(valid, dtype=bool)
            if valid.shape != (kv.shape[2],):
                raise ValueError("valid must have one flag per cached token")
            c.valid = None if valid.all() else valid
        return c

    def copy(self) -> "KvCache":
        c = KvCache(len(self.k))
        c.k, c.v = list(self.k), list(self.v)
        c.valid = None if self.valid is None else self.valid.copy()
        return c


def _rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    var = np.mean(x * x, axis=-1, keepdims=True)
    return (x / np.sqrt(var + eps)) * w


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


class LlamaModel:
    # Queries per attention block: bounds the [kv_heads, group*block, tokens] score array.
    QUERY_BLOCK = 256

    def __init__(self, cfg: LlamaConfig, embed: np.ndarray, layers: list[LayerWeights],
                 final_norm: np.ndarray, lm_head: np.ndarray, name: str = "llama"):
        cfg.validate()
        if embed.shape != (cfg.vocab_size, cfg.hidden) or lm_head.shape != (cfg.vocab_size, cfg.hidden):
            raise ValueError("embedding / lm_head shape does not match the config")
        if len(layers) != cfg.layers:
            raise ValueError("layer count does not match the config")
        self.cfg, self.name = cfg, name
        self.embed = np.ascontiguousarray(embed, dtype=np.float32)
        self.lm_head_t = np.ascontiguousarray(lm_head.T, dtype=np.float32)  # [hidden, vocab]
        self.final_norm = final_norm.astype(np.float32)
        # Pre-transposed [in, out] so every projection is x @ W.
        self.layers = []
        for lw in layers:
            self.layers.append(dict(
                attn_norm=lw.attn_norm.astype(np.float32),
                wqkv=np.ascontiguousarray(np.concatenate([lw.wq, lw.wk, lw.wv], 0).T, dtype=np.float32),
                wo=np.ascontiguousarray(lw.wo.T, dtype=np.float32),
                ffn_norm=lw.ffn_norm.astype(np.float32),
                w_gu=np.ascontiguousarray(np.concatenate([lw.w_gate, lw.w_up], 0).T, dtype=np.float32),
                w_down=np.ascontiguousarray(lw.w_down.T, dtype=np.float32)))
        half = cfg.head_dim // 2
        self.inv_freq = (1.0 / (cfg.rope_theta ** (np.arange(0, half, dtype=np.float64) * 2 / cfg.head_dim)))

    def _rope(self, x: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """HF rotate_half RoPE on [n, heads, head_dim]."""
        ang = positions[:, None].astype(np.float64) * self.inv_freq[None, :]
        cos = np.cos(ang).astype(np.float32)[:, None, :]
        sin = np.sin(ang).astype(np.float32)[:, None, :]
        half = x.shape[-1] // 2
        x1, x2 = x[..., :half], x[..., half:]
        return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)

    def forward(self, tokens, cache: Optional[KvCache] = None, logits_for: str = "all") -> np.ndarray:
        """Runs `tokens` after whatever `cache` holds, appending their K/V to it.

        Returns logits [n, vocab] (logits_for="all") or [1, vocab] ("last"). Positions
        continue from cache.tokens. Cached positions with valid=False are not attended.
        """
        cfg = self.cfg
        tokens = np.asarray(tokens, dtype=np.int64)
        if tokens.ndim != 1 or tokens.size == 0:
            raise ValueError("tokens must be a non-empty 1-D sequence")
        if tokens.min() < 0 or tokens.max() >= cfg.vocab_size:
            raise ValueError("token id out of range")
        cache = cache if cache is not None else KvCache(cfg.layers)
        past = cache.tokens
        n = tokens.size
        positions = np.arange(past, past + n)
        h = self.embed[tokens]
        hd, nh, nkv = cfg.head_dim, cfg.heads, cfg.kv_heads
        group = nh // nkv
        scale = np.float32(1.0 / np.sqrt(hd))
        valid_past = cache.valid
        for li, lw in enumerate(self.layers):
            x = _rms_norm(h, lw["attn_norm"], cfg.rms_eps)
            qkv = x @ lw["wqkv"]
            q = qkv[:, :nh * hd].reshape(n, nh, hd)
            k = qkv[:, nh * hd:(nh + nkv) * hd].reshape(n, nkv, hd)
            v = qkv[:, (nh + nkv) * hd:].reshape(n, nkv, hd)
            q = self._rope(q, positions)
            k = self._rope(k, positions)
            if past:
                k_all = np.concatenate([cache.k[li], k], 0)
                v_all = np.concatenate([cache.v[li], v], 0)
            else:
                k_all, v_all = k, v
            cache.k[li], cache.v[li] = k_all, v_all
            attn = self._attention(q, k_all, v_all, past, valid_past, group, scale)
            h = h + attn.reshape(n, nh * hd) @ lw["wo"]
            x = _rms_norm(h, lw["ffn_norm"], cfg.rms_eps)
            gu = x @ lw["w_gu"]
            inter = cfg.intermediate
            h = h + (_silu(gu[:, :inter]) * gu[:, inter:]) @ lw["w_down"]
        if valid_past is not None:
            cache.valid = np.concatenate([valid_past, np.ones(n, dtype=bool)])
        if logits_for == "last":
            h = h[-1:]
        return _rms_norm(h, self.final_norm, cfg.rms_eps) @ self.lm_head_t

    def _attention(self, q, k_all, v_all, past, valid_past, group, scale):
        n, nh, hd = q.shape
        nkv = k_all.shape[1]
        total = k_all.shape[0]
        out = np.empty((n, nh, hd), dtype=np.float32)
        kt = k_all.transpose(1, 2, 0)  # [nkv, hd, total]
        vt = v_all.transpose(1, 0, 2)  # [nkv, total, hd]
        for s in range(0, n, self.QUERY_BLOCK):
            e = min(n, s + self.QUERY_BLOCK)
            b = e - s
            # [nkv, group*b, hd]: query heads of one KV head side by side.
            qb = (q[s:e] * scale).reshape(b, nkv, group, hd).transpose(1, 2, 0, 3).reshape(nkv, group * b, hd)
            scores = qb @ kt  # [nkv, group*b, total]
            # Causal: query at position past+i sees keys < past+i+1; masked past positions never.
            allowed = np.arange(total)[None, :] <= (past + np.arange(s, e))[:, None]  # [b, total]
            if valid_past is not None:
                allowed[:, :past] &= valid_past[None, :]
            allowed = np.tile(allowed, (group, 1))  # rows ordered (g, i)
            scores = np.where(allowed[None], scores, -np.inf)
            scores -= scores.max(-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(-1, keepdims=True)
            o = scores @ vt  # [nkv, group*b, hd]
            out[s:e] = o.reshape(nkv, group, b, hd).transpose(2, 0, 1, 3).reshape(b, nh, hd)
        return out


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))
