"""Tests of the Python client (python/adaptcache/client.py) against the real daemon.

Run by ctest (python_client, tests/python/CMakeLists.txt) with PYTHONPATH=<build>/python
and ADAPTCACHE_BUILD_DIR=<build>; numpy only (the torch cases skip without torch). The
GPU cases live in test_client_gpu.py.
"""

import os
import pickle
import subprocess
import sys
import tempfile
import threading
import unittest
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import adaptcache as ac  # noqa: E402
from daemon import Daemon, build_dir  # noqa: E402

try:
    import torch  # noqa: F401
    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False

NS = "test/llama-tiny/fp16"
SHAPE = (2, 3, 64, 2, 64)  # [2, layers, tokens, kv_heads, head_dim]


def kv(seed, shape=SHAPE, dtype=np.float16):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def bf16_bits(x32):
    """float32 -> bf16 bit patterns (round to nearest even), as uint16."""
    u = np.ascontiguousarray(x32, dtype=np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


class ClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon(pool_bytes=64 << 20).start()
        cls.c = ac.Client(cls.daemon.target, timeout=30)

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        cls.daemon.stop()

    def key(self, name):
        return ac.hash_tokens(NS + "/keys", [zlib.crc32(name.encode()), len(name)], 256)[0]

    # ------------------------------------------------------------------ control plane

    def test_health_stats_repr(self):
        h = self.c.health()
        self.assertTrue(h.serving)
        self.assertTrue(h.version)
        before = self.c.stats()
        self.assertIn("dram", [t["tier"] for t in before["tiers"]])
        self.c.put(NS, self.key("stats"), kv(1))
        after = self.c.stats()
        self.assertEqual(after["puts"], before["puts"] + 1)
        self.assertGreaterEqual(after["entries_by_codec"].get("raw", 0), 1)
        self.assertIn(self.daemon.socket_path, repr(self.c))
        with ac.Client(self.daemon.target) as c2:
            self.assertTrue(c2.health().serving)
        self.assertTrue(c2.closed)
        with self.assertRaises(ac.InvalidArgument):
            c2.health()

    def test_default_target_rules(self):
        old = os.environ.get("ADAPTCACHE_TARGET")
        try:
            os.environ["ADAPTCACHE_TARGET"] = self.daemon.target
            self.assertEqual(ac.default_target(), self.daemon.target)
            with ac.Client() as c2:  # from $ADAPTCACHE_TARGET
                self.assertTrue(c2.health().serving)
            os.environ["ADAPTCACHE_TARGET"] = ""
            self.assertEqual(ac.default_target(), ac.DEFAULT_TARGET)
        finally:
            if old is None:
                os.environ.pop("ADAPTCACHE_TARGET", None)
            else:
                os.environ["ADAPTCACHE_TARGET"] = old
        with tempfile.TemporaryDirectory() as d:
            with self.assertRaises(ac.Unavailable) as cm:
                ac.Client(os.path.join(d, "none.sock"), timeout=5)
            self.assertEqual(cm.exception.code, 14)
            self.assertIsInstance(cm.exception, ConnectionError)

    # ------------------------------------------------------------------ keys

    def test_hash_tokens_matches_cli(self):
        rng = np.random.default_rng(7)
        tokens = rng.integers(0, 128_000, 600, dtype=np.int64)
        keys = ac.hash_tokens(NS, tokens, 256)
        self.assertEqual(len(keys), 3)
        self.assertTrue(all(isinstance(k, bytes) and len(k) == 16 for k in keys))
        self.assertEqual(keys, ac.hash_tokens(NS, tokens.tolist(), 256))   # list and array agree
        self.assertNotEqual(keys, ac.hash_tokens(NS + "x", tokens, 256))   # namespaces never alias
        self.assertEqual(keys[:2], ac.hash_tokens(NS, tokens[:512], 256))  # chained: a prefix's keys
        self.assertEqual(ac.hash_tokens(NS, [], 256), [])
        with self.assertRaises(ac.InvalidArgument):
            ac.hash_tokens(NS, [-1, 2])
        with self.assertRaises(ac.InvalidArgument):
            ac.hash_tokens(NS, [1, 2], 0)
        # The C++ CLI hashes the same file to the same keys, and finds what Python stored.
        chunks = [kv(10 + i, (2, 3, n, 2, 64)) for i, n in enumerate((256, 256, 88))]
        stored = self.c.put_tokens(NS, tokens, np.concatenate(chunks, axis=2), "raw")
        self.assertEqual([k for k, _ in stored], keys)
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write(" ".join(str(int(t)) for t in tokens))
        try:
            r = subprocess.run([os.path.join(build_dir(), "bin", "adaptcache"), "--target", self.daemon.target,
                                "lookup", "-n", NS, "--tokens", f.name], capture_output=True, text=True, timeout=60)
        finally:
            os.unlink(f.name)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("prefix_hits 3", r.stdout)
        cli_keys = [line.split()[1] for line in r.stdout.splitlines() if line[:1].isdigit()]
        self.assertEqual(cli_keys, [k.hex() for k in keys])

    # ------------------------------------------------------------------ put / get

    def test_put_get_shm_and_stream_identical(self):
        x = kv(2)
        for put_shm in (True, False):
            k = self.key(f"roundtrip-{put_shm}")
            info = self.c.put(NS, k, x, "raw", shm=put_shm)
            self.assertEqual(info.tier, "dram")
            self.assertEqual(info.codec, "raw")
            self.assertEqual(info.raw_bytes, x.nbytes)
            self.assertEqual(info.shape, SHAPE)
            self.assertEqual(info.dtype, "fp16")
            lr = self.c.lookup(NS, [k, self.key("absent")])
            self.assertEqual(lr.prefix_hits, 1)
            self.assertEqual(lr.entries[0], info)
            self.assertFalse(lr.entries[1].hit)
            a = self.c.get(NS, k, shm=True)
            b = self.c.get(NS, k, shm=False)
            self.assertEqual(a.dtype, np.uint8)
            self.assertEqual(a.size, info.stored_bytes)
            self.assertEqual(a.tobytes(), b.tobytes())
            self.assertEqual(ac.container_info(a), (SHAPE, "fp16", "raw"))
            np.testing.assert_array_equal(ac.decode_container(a), x)
            np.testing.assert_array_equal(self.c.get_tensor(NS, k, shm=False), x)
            buf = bytearray(info.stored_bytes + 100)
            got = self.c.get_into(NS, k, buf)
            self.assertEqual(bytes(buf[:got.stored_bytes]), a.tobytes())

    def test_lossy_codecs(self):
        x32 = kv(3, dtype=np.float32)
        for codec, tol in (("fp8", 0.08), ("quant-k4v4-g64", 0.25)):
            k = self.key(codec)
            info = self.c.put(NS, k, x32, codec)
            self.assertEqual(info.codec, codec)
            self.assertLess(info.stored_bytes, x32.nbytes / 2)
            a, b = self.c.get(NS, k), self.c.get(NS, k, shm=False)
            self.assertEqual(a.tobytes(), b.tobytes())
            dec = ac.decode_container(a)
            self.assertEqual(dec.dtype, np.float32)
            err = np.abs(dec - x32)
            self.assertGreater(err.max(), 0, f"{codec} decoded losslessly?")
            self.assertLess(err.max(), tol * np.abs(x32).max(), codec)
            self.assertGreater(np.corrcoef(dec.ravel(), x32.ravel())[0, 1], 0.98, codec)
        # bf16 travels as uint16 bits; raw gives them back exactly.
        bits = bf16_bits(x32)
        k = self.key("bf16")
        info = self.c.put(NS, k, bits, "raw", dtype="bf16", shm=False)
        self.assertEqual(info.dtype, "bf16")
        np.testing.assert_array_equal(self.c.get_tensor(NS, k), bits)
        with self.assertRaises(ac.InvalidArgument):
            self.c.put(NS, k, bits)  # uint16 without dtype="bf16" is ambiguous

    def test_side_data(self):
        x = kv(4)
        L, T, H, D = SHAPE[1:]
        imp = np.linspace(0, 1, T, dtype=np.float32)
        probes = np.random.default_rng(5).standard_normal((L, 2, H, D)).astype(np.float32)
        info = self.c.put(NS, self.key("side"), x, "drop-50", token_importance=imp, probe_queries=probes)
        self.assertEqual(info.codec, "drop-50")
        kept = ac.container_kept_tokens(self.c.get(NS, self.key("side")))
        self.assertEqual(len(kept), T // 2)
        with self.assertRaises(ac.InvalidArgument):
            self.c.put(NS, self.key("side"), x, token_importance=imp[:-1])
        with self.assertRaises(ac.InvalidArgument):
            self.c.put(NS, self.key("side"), x, probe_queries=probes.ravel()[:-1])

    def test_delete(self):
        k = self.key("delete")
        self.c.put(NS, k, kv(6))
        self.assertEqual(self.c.delete(NS, [k, self.key("never")]), 1)
        self.assertFalse(self.c.lookup(NS, k).entries[0].hit)
        self.assertEqual(self.c.delete(NS, k), 0)

    # ------------------------------------------------------------------ errors

    def test_errors_carry_status(self):
        for shm in (True, False):
            with self.assertRaises(ac.NotFound) as cm:
                self.c.get(NS, self.key("miss"), shm=shm)
            self.assertEqual(cm.exception.code, 5)
            self.assertEqual(cm.exception.code_name, "NOT_FOUND")
            self.assertTrue(cm.exception.message.startswith("adaptcached:"), cm.exception.message)
            self.assertIsInstance(cm.exception, LookupError)
        with self.assertRaises(ac.InvalidArgument) as cm:
            self.c.lookup("bad\nnamespace", [self.key("x")])
        self.assertEqual(cm.exception.code, 3)
        self.assertIsInstance(cm.exception, ValueError)
        with self.assertRaises(ac.InvalidArgument) as cm:
            self.c.put(NS, self.key("x"), kv(1), "quant-k5v5-g64")  # the daemon refuses the config
        self.assertEqual(cm.exception.code, 3)
        self.assertIn("adaptcached:", cm.exception.message)
        with self.assertRaises(ac.ResourceExhausted) as cm:  # larger than half the 64 MiB pool
            self.c.put(NS, self.key("huge"), np.zeros((2, 8, 640, 8, 128), np.float32), "raw")
        self.assertEqual(cm.exception.code, 8)
        with self.assertRaises(ac.InvalidArgument):
            self.c.put(NS, self.key("x"), kv(1)[0])  # not [2, L, T, H, D]
        with self.assertRaises(ac.InvalidArgument):
            self.c.put(NS, self.key("x"), kv(1).astype(np.float64))
        with self.assertRaises(ac.InvalidArgument):
            self.c.lookup(NS, [b"short"])
        self.c.put(NS, self.key("good"), kv(1))
        bad = bytearray(self.c.get(NS, self.key("good")).tobytes())
        bad[-1] ^= 0xFF
        with self.assertRaises(ac.DataLoss) as cm:
            ac.decode_container(bytes(bad))
        self.assertEqual(cm.exception.code, 15)
        e = ac.error_from_status(14, "gone")
        self.assertIsInstance(e, ac.Unavailable)
        self.assertEqual(str(e), "UNAVAILABLE: gone")
        self.assertIsInstance(ac.error_from_status(99, "?"), ac.AdaptCacheError)
        o = ac.error_from_status(8, "busy", overloaded=True)
        self.assertIsInstance(o, ac.Overloaded)
        self.assertIsInstance(o, ac.ResourceExhausted)
        self.assertIsInstance(pickle.loads(pickle.dumps(o)), ac.Overloaded)
        self.assertNotIsInstance(ac.error_from_status(8, "too big"), ac.Overloaded)

    # ------------------------------------------------------------------ get_to_device, CPU path

    def _store_request(self, name, codecs, dtype=np.float16):
        tokens = np.arange(SHAPE[2] * len(codecs), dtype=np.uint32) + (zlib.crc32(name.encode()) & 0xFFFF)
        keys = ac.hash_tokens(NS + "/" + name, tokens, SHAPE[2])
        xs = []
        for i, (k, codec) in enumerate(zip(keys, codecs)):
            x = kv(100 + i, dtype=dtype)
            self.c.put(NS, k, x, codec)
            xs.append(x)
        return keys, xs

    def test_get_to_device_cpu_contiguous(self):
        codecs = ["raw", "fp8", "quant-k4v4-g64", "drop-50"]
        keys, _ = self._store_request("contig", codecs)
        miss = ac.hash_tokens(NS + "/contig-miss", [1, 2, 3])[0]
        want = [ac.decode_container(self.c.get(NS, k)) for k in keys]
        for out_dtype in (np.float16, np.float32):
            outs = [np.full(SHAPE, 7, dtype=out_dtype) for _ in range(len(keys) + 1)]
            r = self.c.get_to_device(NS, keys + [miss], out=outs, force_cpu=True)
            self.assertEqual((r.decoded, r.leased, r.prefix_hits), (4, 4, 4), r)
            self.assertFalse(r.used_gpu)
            self.assertFalse(r.corrupt)
            self.assertEqual([e.codec for e in r.entries[:4]], codecs)
            self.assertFalse(r.entries[4].hit)
            for i in range(4):
                np.testing.assert_array_equal(outs[i], want[i].astype(out_dtype), codecs[i])
            self.assertTrue((outs[4] == 7).all())  # the miss is not written
        # A miss in the middle ends the prefix.
        outs = [np.full(SHAPE, 7, dtype=np.float16) for _ in range(3)]
        r = self.c.get_to_device(NS, [keys[0], miss, keys[1]], out=outs)
        self.assertEqual((r.decoded, r.prefix_hits), (1, 1))
        np.testing.assert_array_equal(outs[0], want[0])
        self.assertTrue((outs[2] == 7).all())

    def test_get_to_device_cpu_paged(self):
        codecs = ["raw", "fp8", "quant-k4v4-g64", "drop-50"]
        keys, _ = self._store_request("paged", codecs)
        containers = [self.c.get(NS, k) for k in keys]
        want = [ac.decode_container(c) for c in containers]
        _, L, T, H, D = SHAPE
        block_size, num_blocks = 16, 40
        rng = np.random.default_rng(11)
        sentinel = np.float16(-3.5)
        # vLLM's per-layer [2, num_blocks, block_size, H, D]; K and V are views of it.
        layers = [np.full((2, num_blocks, block_size, H, D), sentinel, np.float16) for _ in range(L)]
        slots_all = rng.permutation(num_blocks * block_size)[:T * len(keys)].astype(np.int64)
        slots = [slots_all[i * T:(i + 1) * T].copy() for i in range(len(keys))]
        slots[0][5] = -1  # skipped
        paged = ac.PagedKV.from_vllm(layers, slots)
        self.assertEqual((paged.layers, paged.num_blocks, paged.block_size), (L, num_blocks, block_size))
        self.assertIn("PagedKV(", repr(paged))
        r = self.c.get_to_device(NS, keys, paged=paged)
        self.assertEqual(r.decoded, 4)
        for i, codec in enumerate(codecs):
            kept = set(ac.container_kept_tokens(containers[i]).tolist())
            for t in range(T):
                s = int(slots[i][t])
                if s < 0:
                    continue
                blk, off = divmod(s, block_size)
                for l in range(L):
                    got_k, got_v = layers[l][0, blk, off], layers[l][1, blk, off]
                    if t in kept:
                        np.testing.assert_array_equal(got_k, want[i][0, l, t], f"{codec} K l{l} t{t}")
                        np.testing.assert_array_equal(got_v, want[i][1, l, t], f"{codec} V l{l} t{t}")
                    else:  # a dropped token's slot is untouched
                        self.assertTrue((got_k == sentinel).all() and (got_v == sentinel).all(), codec)
        written = set(int(s) for s in slots_all if s >= 0) - {int(slots_all[5])}
        untouched = [s for s in range(num_blocks * block_size) if s not in written]
        for s in untouched[:50]:
            blk, off = divmod(s, block_size)
            self.assertTrue((layers[0][:, blk, off] == sentinel).all())
        # Separate K and V caches with a block stride larger than dense (padding per block).
        padded = [np.full((num_blocks, block_size + 2, H, D), sentinel, np.float32) for _ in range(2 * L)]
        ks = [p[:, :block_size] for p in padded[:L]]
        vs = [p[:, :block_size] for p in padded[L:]]
        paged2 = ac.PagedKV(ks, vs, slots[:1])
        self.assertEqual(paged2.block_stride, (block_size + 2) * H * D)
        r = self.c.get_to_device(NS, keys[:1], paged=paged2)
        self.assertEqual(r.decoded, 1)
        t = 7
        blk, off = divmod(int(slots[0][t]), block_size)
        np.testing.assert_array_equal(vs[2][blk, off], want[0][1, 2, t].astype(np.float32))
        self.assertTrue((padded[0][:, block_size:] == sentinel).all())  # padding never written

    def test_get_to_device_checks(self):
        keys, _ = self._store_request("checks", ["raw", "raw"])
        small = [np.zeros(SHAPE, np.float16), np.zeros((2, 3, 32, 2, 64), np.float16)]
        with self.assertRaises(ac.InvalidArgument):
            self.c.get_to_device(NS, keys, out=small)
        self.assertTrue((small[0] == 0).all())  # refused before anything was written
        with self.assertRaises(ac.InvalidArgument):
            self.c.get_to_device(NS, keys, out=[np.zeros(SHAPE, np.float16)])  # count mismatch
        with self.assertRaises(ac.InvalidArgument):
            self.c.get_to_device(NS, keys, out=[np.zeros(SHAPE, np.float16), np.zeros(SHAPE, np.float32)])
        with self.assertRaises(ac.InvalidArgument):
            self.c.get_to_device(NS, keys)  # neither out nor paged
        wrong_layers = [np.zeros((2, 8, 16, 2, 64), np.float16) for _ in range(2)]
        with self.assertRaises(ac.InvalidArgument):
            self.c.get_to_device(NS, keys, paged=ac.PagedKV.from_vllm(wrong_layers, [np.zeros(64, np.int64)] * 2))
        layers = [np.zeros((2, 8, 16, 2, 64), np.float16) for _ in range(3)]
        with self.assertRaises(ac.InvalidArgument):  # slot mapping shorter than the entry
            self.c.get_to_device(NS, keys, paged=ac.PagedKV.from_vllm(layers, [np.zeros(10, np.int64)] * 2))
        with self.assertRaises(ac.InvalidArgument):  # slot mapping of the wrong dtype
            self.c.get_to_device(NS, keys, paged=ac.PagedKV.from_vllm(layers, [np.zeros(64, np.int32)] * 2))
        r = self.c.get_to_device(NS, [ac.hash_tokens(NS, [9])[0]], out=[np.zeros(SHAPE, np.float16)])
        self.assertEqual((r.decoded, r.prefix_hits), (0, 0))

    # ------------------------------------------------------------------ threads, torch

    def test_threads_share_a_client(self):
        errors = []

        def work(t):
            try:
                for i in range(10):
                    k = self.key(f"thread-{t}-{i}")
                    x = kv(t * 100 + i)
                    self.c.put(NS, k, x, shm=bool(i % 2))
                    np.testing.assert_array_equal(self.c.get_tensor(NS, k, shm=not (i % 2)), x)
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        self.assertEqual(errors, [])

    @unittest.skipUnless(HAVE_TORCH, "torch not installed")
    def test_torch_cpu_tensors(self):
        import torch
        x = torch.randn(SHAPE, dtype=torch.float32).to(torch.bfloat16)
        k = self.key("torch")
        info = self.c.put(NS, k, x, "raw")
        self.assertEqual(info.dtype, "bf16")
        back = self.c.get_tensor(NS, k)
        np.testing.assert_array_equal(back, x.view(torch.int16).numpy().view(np.uint16))
        out = torch.zeros(SHAPE, dtype=torch.float32)
        r = self.c.get_to_device(NS, [k], out=[out])
        self.assertEqual(r.decoded, 1)
        self.assertTrue(torch.equal(out, x.float()))
        nc = torch.zeros((2, 3, 2, 64, 64), dtype=torch.float32).transpose(2, 3)
        with self.assertRaises(ac.InvalidArgument):
            self.c.get_to_device(NS, [k], out=[nc])


if __name__ == "__main__":
    unittest.main()
