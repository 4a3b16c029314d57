"""A Llama-architecture decoder in torch (batched, float32) for GPU quality measurements.

Weights come from the project's loaders (gguf_loader.load_gguf: llama.cpp's Q/K row
permutation already undone, so RoPE is HF's rotate_half and cached keys have HF's channel
order; hf_loader.load_hf for checkpoint directories). The KV cache is explicit: forward()
takes per-layer past K/V [B, kv_heads, T, head_dim] (post-RoPE) and a per-token validity
mask [B, T], so a caller can swap in decoded lossy K/V per token and mask dropped tokens
out of attention (a zero key would still draw softmax weight).
"""

from __future__ import annotations

import glob
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)


def _import_gguf():
    """The `gguf` package; else a carried wheel (pure Python, importable from the zip)."""
    try:
        import gguf  # noqa: F401
        return
    except ImportError:
        pass
    repo = os.path.abspath(os.path.join(HERE, "..", ".."))
    for pattern in ("$ADAPTCACHE_WHEELS/gguf-*.whl", ".devcarry/wheels/gguf-*.whl", ".devcarry/data/gguf-*.whl",
                    ".devcarry/data/*/gguf-*.whl"):
        pat = os.path.expandvars(pattern)
        for whl in sorted(glob.glob(pat if os.path.isabs(pat) else os.path.join(repo, pat))):
            sys.path.insert(0, whl)
            try:
                import gguf  # noqa: F401
                return
            except ImportError:
                sys.path.remove(whl)
    raise SystemExit("the `gguf` package is missing (pip install gguf==0.17.1, or carry its wheel in "
                     ".devcarry/wheels/)")


def load_numpy_model(path: str):
    """(llama.LlamaModel, tokenizers.Tokenizer) from a .gguf file or an HF checkpoint directory."""
    if os.path.isdir(path):
        from hf_loader import load_hf
        model, tok = load_hf(path)
        if tok is None:
            raise SystemExit(f"{path}: no tokenizer.json")
        return model, tok
    _import_gguf()
    from gguf_loader import load_gguf
    return load_gguf(path)


class TorchLlama:
    """Float32 forward of a llama.LlamaModel's weights on `device`."""

    def __init__(self, np_model, device: str = "cuda"):
        cfg = np_model.cfg
        self.cfg, self.name, self.device = cfg, np_model.name, torch.device(device)
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(self.device)
        self.embed = t(np_model.embed)
        self.lm_head = t(np_model.lm_head_t.T)  # [vocab, hidden]
        self.final_norm = t(np_model.final_norm)
        # llama.LlamaModel keeps projections pre-transposed [in, out]: x @ W.
        self.layers = [{k: t(v) for k, v in lw.items()} for lw in np_model.layers]
        half = cfg.head_dim // 2
        inv = 1.0 / (cfg.rope_theta ** (np.arange(0, half, dtype=np.float64) * 2 / cfg.head_dim))
        self.inv_freq = torch.from_numpy(inv).to(self.device)  # float64: angles exact at 8k positions

    def _rope_tables(self, positions: torch.Tensor):
        ang = positions.to(torch.float64)[:, None] * self.inv_freq[None, :]
        return torch.cos(ang).float(), torch.sin(ang).float()  # [n, half]

    @staticmethod
    def _rope(x, cos, sin):  # x [B, heads, n, hd]; HF rotate_half
        half = x.shape[-1] // 2
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)

    def _rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.cfg.rms_eps) * w

    @torch.inference_mode()
    def forward(self, tokens: torch.Tensor, past=None, past_valid: torch.Tensor | None = None,
                want_kv: bool = False, q_last: int = 0):
        """tokens [B, n] (int64) after `past` (per layer (K, V), each [B, kv_heads, T, hd],
        post-RoPE, any float dtype) with positions T..T+n-1; past_valid [B, T] bool (False =
        not attended), None = all. Returns (logits [B, n, vocab] float32, new per-layer
        (K, V) of the n tokens when want_kv else None), and with q_last > 0 a third item: per
        layer the post-RoPE queries of the last q_last tokens, [B, heads, q_last, hd]."""
        cfg = self.cfg
        B, n = tokens.shape
        T = 0 if past is None else past[0][0].shape[2]
        nh, nkv, hd = cfg.heads, cfg.kv_heads, cfg.head_dim
        group = nh // nkv
        cos, sin = self._rope_tables(torch.arange(T, T + n, device=self.device))
        mask = None
        if T:
            causal = torch.ones(n, n, dtype=torch.bool, device=self.device).tril()
            pv = (torch.ones(B, T, dtype=torch.bool, device=self.device) if past_valid is None
                  else past_valid.to(self.device, torch.bool))
            mask = torch.cat([pv[:, None, None, :].expand(B, 1, n, T), causal[None, None].expand(B, 1, n, n)], -1)
        h = self.embed[tokens]
        new_kv = [] if want_kv else None
        qs = [] if q_last > 0 else None
        for li, lw in enumerate(self.layers):
            x = self._rms(h, lw["attn_norm"])
            qkv = x @ lw["wqkv"]
            q = qkv[..., :nh * hd].view(B, n, nh, hd).transpose(1, 2)
            k = qkv[..., nh * hd:(nh + nkv) * hd].view(B, n, nkv, hd).transpose(1, 2)
            v = qkv[..., (nh + nkv) * hd:].view(B, n, nkv, hd).transpose(1, 2)
            q, k = self._rope(q, cos, sin), self._rope(k, cos, sin)
            if want_kv:
                new_kv.append((k, v))
            if qs is not None:
                qs.append(q[:, :, -q_last:])
            if T:
                k = torch.cat([past[li][0].float(), k], 2)
                v = torch.cat([past[li][1].float(), v], 2)
            # Query head j reads KV head j // group (HF repeat_kv).
            k = k.repeat_interleave(group, dim=1)
            v = v.repeat_interleave(group, dim=1)
            if mask is None:
                o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            h = h + o.transpose(1, 2).reshape(B, n, nh * hd) @ lw["wo"]
            x = self._rms(h, lw["ffn_norm"])
            gu = x @ lw["w_gu"]
            inter = cfg.intermediate
            h = h + (F.silu(gu[..., :inter]) * gu[..., inter:]) @ lw["w_down"]
        logits = self._rms(h, self.final_norm) @ self.lm_head.T
        return (logits, new_kv) if qs is None else (logits, new_kv, qs)


def hf_cross_check(np_model, tm: TorchLlama, tokens, log=print):
    """Logits of a transformers LlamaForCausalLM built from the same weights vs ours, on
    `tokens` (one pass). Returns (max |diff|, top-1 agreement) or None when transformers
    is missing or does not take the config (an informative check, never fatal)."""
    saved = sys.path[:]
    # bench/quality/profile.py would shadow the stdlib module transformers imports.
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
    try:
        import transformers
        from transformers import LlamaConfig, LlamaForCausalLM
    except Exception as e:  # noqa: BLE001
        log(f"hf cross-check skipped: transformers not importable ({e})")
        return None
    finally:
        sys.path[:] = saved
    cfg = np_model.cfg
    try:
        hc = LlamaConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden, intermediate_size=cfg.intermediate,
                         num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
                         num_key_value_heads=cfg.kv_heads, head_dim=cfg.head_dim, rms_norm_eps=cfg.rms_eps,
                         max_position_embeddings=cfg.max_positions, rope_theta=cfg.rope_theta,
                         tie_word_embeddings=False, attention_bias=False, mlp_bias=False)
        if getattr(hc, "rope_parameters", None) is not None:  # transformers 5: rope settings live here
            hc.rope_parameters = {"rope_type": "default", "rope_theta": cfg.rope_theta}
        hc._attn_implementation = "eager"
        with torch.device("meta"):
            m = LlamaForCausalLM(hc)
        sd = {"model.embed_tokens.weight": tm.embed, "model.norm.weight": tm.final_norm, "lm_head.weight": tm.lm_head}
        nh, nkv, hd, inter = cfg.heads, cfg.kv_heads, cfg.head_dim, cfg.intermediate
        for i, lw in enumerate(tm.layers):
            b = f"model.layers.{i}."
            w = lw["wqkv"].T
            sd.update({b + "input_layernorm.weight": lw["attn_norm"], b + "post_attention_layernorm.weight": lw["ffn_norm"],
                       b + "self_attn.q_proj.weight": w[:nh * hd], b + "self_attn.k_proj.weight": w[nh * hd:(nh + nkv) * hd],
                       b + "self_attn.v_proj.weight": w[(nh + nkv) * hd:], b + "self_attn.o_proj.weight": lw["wo"].T,
                       b + "mlp.gate_proj.weight": lw["w_gu"].T[:inter], b + "mlp.up_proj.weight": lw["w_gu"].T[inter:],
                       b + "mlp.down_proj.weight": lw["w_down"].T})
        m = m.to_empty(device=tm.device)
        m.load_state_dict({k: v.contiguous() for k, v in sd.items()}, strict=True)
        if hasattr(m.model, "rotary_emb"):  # its buffers were never initialised: rebuild
            cls = type(m.model.rotary_emb)
            try:
                m.model.rotary_emb = cls(config=hc, device=tm.device)
            except TypeError:  # transformers 5 takes no device
                m.model.rotary_emb = cls(config=hc).to(tm.device)
        m = m.float().eval()
        ids = torch.as_tensor([tokens], device=tm.device)
        with torch.inference_mode():
            ref = m(input_ids=ids, use_cache=False).logits.float()
        ours, _ = tm.forward(ids)
        diff = float((ref - ours).abs().max())
        agree = float((ref.argmax(-1) == ours.argmax(-1)).float().mean())
        log(f"hf cross-check (transformers {transformers.__version__}, eager, fp32, {len(tokens)} tokens): "
            f"max |logit diff| {diff:.3g}, top-1 agreement {agree:.4f}")
        del m
        return diff, agree
    except Exception as e:  # noqa: BLE001
        log(f"hf cross-check skipped: {type(e).__name__}: {e}")
        return None
