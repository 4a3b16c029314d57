"""Loads a Hugging Face Llama-family checkpoint directory (config.json + *.safetensors).

Our own safetensors reader (the format is an 8-byte little-endian header length, a JSON
header of {name: {dtype, shape, data_offsets}}, then the raw tensors) so bf16 works with
plain numpy. The tokenizer comes from tokenizer.json in the same directory when present.
"""

from __future__ import annotations

import glob
import json
import os

import numpy as np

from llama import LayerWeights, LlamaConfig, LlamaModel

_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64}
_ARCHS = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"}


def read_safetensors(path: str) -> dict[str, np.ndarray]:
    """All tensors of one file as float32 arrays."""
    out = {}
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: not a safetensors file")
    n = int.from_bytes(raw[:8], "little")
    if n <= 0 or 8 + n > len(raw):
        raise ValueError(f"{path}: bad safetensors header length")
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        dt = _DTYPES.get(meta["dtype"])
        if dt is None:
            raise ValueError(f"{path}: {name}: unsupported dtype {meta['dtype']}")
        s, e = meta["data_offsets"]
        if not (0 <= s <= e <= len(raw) - base):
            raise ValueError(f"{path}: {name}: data offsets out of range")
        a = np.frombuffer(raw, dtype=dt, count=(e - s) // np.dtype(dt).itemsize, offset=base + s)
        if meta["dtype"] == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        a = a.astype(np.float32).reshape(meta["shape"])
        out[name] = a
    return out


def write_safetensors(path: str, tensors: dict[str, np.ndarray]) -> None:
    """Writes float32/float16 tensors (used by the tests to make a tiny checkpoint)."""
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        code = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16"}[a.dtype]
        b = a.tobytes()
        header[name] = {"dtype": code, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)


def load_hf(directory: str):
    """Returns (LlamaModel, tokenizer or None)."""
    with open(os.path.join(directory, "config.json")) as f:
        c = json.load(f)
    archs = set(c.get("architectures") or ["LlamaForCausalLM"])
    if not archs & _ARCHS and c.get("model_type") != "llama":
        raise ValueError(f"{directory}: architecture {archs} is not Llama-family")
    scaling = c.get("rope_scaling")
    if scaling and scaling.get("rope_type", scaling.get("type")) not in (None, "default"):
        raise ValueError(f"{directory}: rope_scaling {scaling} is not supported")
    heads = int(c["num_attention_heads"])
    cfg = LlamaConfig(
        vocab_size=int(c["vocab_size"]), hidden=int(c["hidden_size"]),
        intermediate=int(c["intermediate_size"]), layers=int(c["num_hidden_layers"]),
        heads=heads, kv_heads=int(c.get("num_key_value_heads", heads)),
        head_dim=int(c.get("head_dim") or c["hidden_size"] // heads),
        rope_theta=float(c.get("rope_theta", 10000.0)), rms_eps=float(c.get("rms_norm_eps", 1e-6)),
        max_positions=int(c.get("max_position_embeddings", 8192)),
        bos_id=c.get("bos_token_id"), eos_id=c.get("eos_token_id") if isinstance(c.get("eos_token_id"), int) else None)
    files = sorted(glob.glob(os.path.join(directory, "*.safetensors")))
    if not files:
        raise ValueError(f"{directory}: no *.safetensors file")
    w: dict[str, np.ndarray] = {}
    for p in files:
        w.update(read_safetensors(p))
    if any(k.endswith(("q_proj.bias", "k_proj.bias", "v_proj.bias")) for k in w):
        raise ValueError(f"{directory}: attention biases (Qwen2-style) are not supported")

    def get(name):
        if name not in w:
            raise ValueError(f"{directory}: missing tensor {name}")
        return w[name]

    layers = []
    for i in range(cfg.layers):
        b = f"model.layers.{i}."
        layers.append(LayerWeights(
            attn_norm=get(b + "input_layernorm.weight"), wq=get(b + "self_attn.q_proj.weight"),
            wk=get(b + "self_attn.k_proj.weight"), wv=get(b + "self_attn.v_proj.weight"),
            wo=get(b + "self_attn.o_proj.weight"), ffn_norm=get(b + "post_attention_layernorm.weight"),
            w_gate=get(b + "mlp.gate_proj.weight"), w_up=get(b + "mlp.up_proj.weight"),
            w_down=get(b + "mlp.down_proj.weight")))
    embed = get("model.embed_tokens.weight")
    lm_head = w.get("lm_head.weight", embed)
    model = LlamaModel(cfg, embed, layers, get("model.norm.weight"), lm_head,
                       name=os.path.basename(os.path.normpath(directory)))
    tok = None
    tj = os.path.join(directory, "tokenizer.json")
    if os.path.exists(tj):
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(tj)
    return model, tok
