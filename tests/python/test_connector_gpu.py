"""GPU tests of the transformers engine connector: test_connector.py's cases with the model
on CUDA (the prefix decoded by the CUDA decoders into the model's cache, per-layer load
events, saves on a side stream), plus: the layer-by-layer load gives the same logits, bit
for bit, as loading everything before the forward; a bf16 model gets its KV back bit for
bit; a chunk whose bytes are flipped in the pool after its Put fails its device check after
the forward was enqueued, and the request is redone from the prefix that really loaded.

Runs on the GPU machine (torch + CUDA + a CUDA build of libadaptcache_client.so):
    PYTHONPATH=<build>/python ADAPTCACHE_BUILD_DIR=<build> python -m unittest -v test_connector_gpu
($ADAPTCACHE_BIN_DIR may point at the directory holding adaptcached; $ADAPTCACHE_GGUF at
the SmolLM2 GGUF, else a *.gguf under .devcarry/ is used when the `gguf` package imports,
else a tiny random-weight model.) Skips without torch, transformers or a usable GPU.
"""

import copy
import glob
import mmap
import os
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import adaptcache as ac  # noqa: E402
from test_client_gpu import skip_reason as gpu_skip_reason  # noqa: E402  (the function only, no tests)
from test_connector import CT, TORCH_SKIP, ConnectorCases, hf, text_tokens, torch  # noqa: E402


def skip_reason():
    if TORCH_SKIP:
        return TORCH_SKIP
    why = gpu_skip_reason()
    return f"connector GPU tests skipped: {why}" if why else None


SKIP = skip_reason()


@unittest.skipIf(SKIP, SKIP or "")
class ConnectorGpuTest(ConnectorCases, unittest.TestCase):
    device = "cuda"

    def test_layerwise_load_same_as_whole(self):
        prompt = text_tokens(self.tok, self.vocab, 3 * CT + 40, seed=11)
        a = self.connector(layerwise=True)
        a.generate(prompt, 1)
        b = self.connector(layerwise=False, namespace=a.namespace)
        cont = text_tokens(self.tok, self.vocab, 6, seed=12)
        sa, sb = a.score(prompt, cont), b.score(prompt, cont)
        self.assertEqual((sa.loaded_tokens, sb.loaded_tokens), (3 * CT, 3 * CT))
        self.assertTrue(sa.used_gpu and sb.used_gpu)
        self.assertTrue(torch.equal(sa.logits, sb.logits))
        self.assertGreater(sa.prefix_load_ms, 0)

    def test_bf16_kv_round_trips_exactly(self):
        model = copy.deepcopy(self.model).to(torch.bfloat16)
        conn = hf.HFKVConnector(model, self.client, namespace=f"test/connector/cuda/bf16/{self.n}")
        self.addCleanup(conn.close)
        prompt = text_tokens(self.tok, self.vocab, 2 * CT + 10, seed=13)
        cold = conn.generate(prompt, 4, return_cache=True)
        lr = self.client.lookup(conn.namespace, ac.hash_tokens(conn.namespace, prompt[:2 * CT]))
        self.assertEqual((lr.prefix_hits, lr.entries[0].dtype), (2, "bf16"))
        warm = conn.generate(prompt, 4, return_cache=True)
        self.assertEqual(warm.loaded_tokens, 2 * CT)
        self.assertTrue(warm.used_gpu)
        for layer in range(conn.layers):
            for x, y in zip(hf._layer_kv(cold.cache, layer), hf._layer_kv(warm.cache, layer)):
                self.assertTrue(torch.equal(x[:, :, :2 * CT], y[:, :, :2 * CT]), f"layer {layer}")
        if warm.tokens != cold.tokens:  # bf16 suffix-only vs full prefill may round differently
            print(f"  bf16: greedy tokens differ from the full prefill's: {cold.tokens} vs {warm.tokens}",
                  file=sys.stderr)

    def flip_in_pool(self, ns, key):
        """Flips one byte of a raw entry's payload in the daemon's pool file (as a bad DIMM
        or a stray writer would): found by searching the pool for the entry's own bytes."""
        payload = np.ascontiguousarray(self.client.get(ns, key)).view(np.uint8).reshape(-1)
        probe = payload[len(payload) // 2:len(payload) // 2 + 64].tobytes()
        pools = [p for p in glob.glob(os.path.join(self.daemon.dir, "*"))
                 if os.path.isfile(p) and os.path.getsize(p) >= self.daemon.pool_bytes]
        self.assertEqual(len(pools), 1, f"pool file in {self.daemon.dir}")
        with open(pools[0], "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
            at = m.find(probe)
            self.assertGreaterEqual(at, 0, "the entry's bytes are not in the pool")
            self.assertEqual(m.find(probe, at + 1), -1, "the probe bytes are not unique")
            m[at + 7] ^= 0x10

    def test_chunk_failing_its_device_check_redoes_the_request(self):
        conn = self.connector(save_codec="raw")
        self.client.prepare_device(wait=True, device=conn.device.index)
        prompt = text_tokens(self.tok, self.vocab, 3 * CT + 40, seed=21)
        cont = text_tokens(self.tok, self.vocab, 6, seed=22)
        ref = conn.score(prompt, cont, load=False)
        conn.generate(prompt, 1)
        keys = ac.hash_tokens(conn.namespace, prompt[:3 * CT])
        self.flip_in_pool(conn.namespace, keys[1])
        r = conn.score(prompt, cont)
        self.assertEqual((r.matched_tokens, r.loaded_tokens), (3 * CT, CT))
        self.assertTrue(r.used_gpu)
        self.assertTrue(torch.allclose(r.logits, ref.logits, atol=1e-3, rtol=1e-3),
                        float((r.logits - ref.logits).abs().max()))
        lr = self.client.lookup(conn.namespace, keys)
        self.assertEqual([e.hit for e in lr.entries], [True, False, True], "the bad entry is deleted")


if __name__ == "__main__":
    unittest.main()
