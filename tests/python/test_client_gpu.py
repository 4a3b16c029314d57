"""GPU tests of the Python client: get_to_device into torch CUDA tensors, contiguous and
paged (vLLM layout), byte for byte against the CPU fallback, for raw, fp8,
quant-k4v4-g64 and drop configs.

Runs on the GPU machine (torch + CUDA + a CUDA build of libadaptcache_client.so):
    PYTHONPATH=<build>/python ADAPTCACHE_BUILD_DIR=<build> python -m unittest -v test_client_gpu
($ADAPTCACHE_BIN_DIR may point at the directory holding adaptcached instead.) Skips
cleanly without torch, without a CUDA device, or with a library built without CUDA.
"""

import os
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import adaptcache as ac  # noqa: E402
from daemon import Daemon, build_dir  # noqa: E402

try:
    import torch
except ImportError:
    torch = None


def skip_reason():
    if torch is None:
        return "torch not installed"
    if not torch.cuda.is_available():
        return "torch sees no CUDA device"
    try:
        if not ac.built_with_cuda():
            return "libadaptcache_client.so built without CUDA"
        if not ac.cuda_available():
            return "the library sees no usable CUDA device"
    except ac.AdaptCacheError as e:
        return f"client library unusable: {e}"
    return None


SKIP = skip_reason()
NS = "gpu-test/llama-like/bf16"
SHAPE = (2, 4, 256, 8, 128)  # [2, layers, tokens, kv_heads, head_dim]: 4 MiB of bf16 per chunk
CODECS = ["raw", "fp8", "quant-k4v4-g64", "drop-50", "drop-50+quant-k4v4-g64"]


def u16(t):
    """A torch tensor's bytes as a numpy uint16/uint32 array, for exact comparison."""
    t = t.detach().contiguous().cpu()
    if t.element_size() == 2:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.view(torch.int32).numpy().view(np.uint32)


def bits(a):
    return a.view(np.uint16) if a.dtype.itemsize == 2 else a.view(np.uint32)


@unittest.skipIf(SKIP is not None, SKIP or "")
class GpuClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        bin_dir = os.environ.get("ADAPTCACHE_BIN_DIR") or os.path.join(build_dir(), "bin")
        cls.daemon = Daemon(bin_dir, pool_bytes=512 << 20).start()
        cls.c = ac.Client(cls.daemon.target)
        cls.dev = torch.device("cuda", torch.cuda.current_device())
        g = torch.Generator().manual_seed(1)
        cls.keys = ac.hash_tokens(NS, torch.arange(SHAPE[2] * len(CODECS)), SHAPE[2])
        cls.inputs = []
        for i, (k, codec) in enumerate(zip(cls.keys, CODECS)):
            x = torch.randn(SHAPE, generator=g).to(torch.bfloat16)
            if i == 0:
                x = x.to(cls.dev)  # a CUDA tensor is copied to the host for Put
            info = cls.c.put(NS, k, x, codec, shm=i % 2 == 0)
            assert info.codec == codec, info
            cls.inputs.append(x.cpu())

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        cls.daemon.stop()

    def cpu_contiguous(self, np_dtype):
        outs = [np.zeros(SHAPE, np_dtype) for _ in self.keys]
        r = self.c.get_to_device(NS, self.keys, out=outs, force_cpu=True)
        self.assertEqual(r.decoded, len(self.keys))
        self.assertFalse(r.used_gpu)
        return outs

    def test_contiguous_matches_cpu(self):
        for tdtype, np_dtype in ((torch.bfloat16, np.uint16), (torch.float16, np.float16), (torch.float32, np.float32)):
            want = self.cpu_contiguous(np_dtype)
            outs = [torch.full(SHAPE, 3.0, dtype=tdtype, device=self.dev) for _ in self.keys]
            r = self.c.get_to_device(NS, self.keys, out=outs)
            torch.cuda.current_stream().synchronize()
            self.assertTrue(r.used_gpu, r)
            self.assertEqual(r.decoded, len(self.keys), r)
            self.assertFalse(r.corrupt)
            for i, codec in enumerate(CODECS):
                np.testing.assert_array_equal(u16(outs[i]), bits(want[i]), f"{codec} -> {tdtype}")
        # The CPU fallback is the CPU decoder: raw gives the input back.
        np.testing.assert_array_equal(self.cpu_contiguous(np.uint16)[0], u16(self.inputs[0]))

    def test_explicit_stream_and_prefix(self):
        s = torch.cuda.Stream()
        miss = ac.hash_tokens(NS + "/miss", [1])[0]
        outs = [torch.zeros(SHAPE, dtype=torch.bfloat16, device=self.dev) for _ in range(3)]
        r = self.c.get_to_device(NS, [self.keys[1], self.keys[2], miss], out=outs, stream=s)
        s.synchronize()
        self.assertEqual((r.decoded, r.prefix_hits), (2, 2))
        want = self.cpu_contiguous(np.uint16)
        np.testing.assert_array_equal(u16(outs[0]), want[1])
        np.testing.assert_array_equal(u16(outs[1]), want[2])
        self.assertEqual(int(outs[2].abs().sum().item()), 0)

    def test_paged_vllm_layout_matches_cpu(self):
        _, L, T, H, D = SHAPE
        block_size, num_blocks = 16, len(CODECS) * T // 16 + 24
        rng = np.random.default_rng(3)
        slots_all = rng.permutation(num_blocks * block_size)[:T * len(CODECS)].astype(np.int64)
        slots = [slots_all[i * T:(i + 1) * T].copy() for i in range(len(CODECS))]
        slots[1][:3] = -1  # skipped tokens
        for tdtype, np_dtype in ((torch.bfloat16, np.uint16), (torch.float32, np.float32)):
            sentinel = 0x7FC1 if np_dtype == np.uint16 else 0x7FC00001  # a NaN payload no decode writes
            host = [np.full((2, num_blocks, block_size, H, D), sentinel,
                            np.uint16 if np_dtype == np.uint16 else np.uint32).view(np_dtype) for _ in range(L)]
            r = self.c.get_to_device(NS, self.keys, paged=ac.PagedKV.from_vllm(host, slots), force_cpu=True)
            self.assertEqual(r.decoded, len(CODECS))
            int_t = torch.int16 if tdtype == torch.bfloat16 else torch.int32
            dev = [torch.from_numpy(np.full((2, num_blocks, block_size, H, D), sentinel,
                                            np.uint16 if np_dtype == np.uint16 else np.uint32)
                                    .view(np.int16 if int_t == torch.int16 else np.int32))
                   .to(self.dev).view(tdtype) for _ in range(L)]
            dslots = [torch.from_numpy(s).to(self.dev) for s in slots]
            paged = ac.PagedKV.from_vllm(dev, dslots)
            r = self.c.get_to_device(NS, self.keys, paged=paged)
            torch.cuda.current_stream().synchronize()
            self.assertTrue(r.used_gpu)
            self.assertEqual(r.decoded, len(CODECS), r)
            for l in range(L):
                np.testing.assert_array_equal(u16(dev[l]), bits(host[l]), f"layer {l} {tdtype}")
            # Something was written (the comparison above is not of two untouched caches).
            self.assertLess(int((bits(host[0]) == sentinel).sum()), host[0].size)

    def test_separate_k_v_caches_with_block_padding(self):
        _, L, T, H, D = SHAPE
        block_size, num_blocks = 32, T // 32 + 4
        slots = [torch.randperm(num_blocks * block_size)[:T].to(torch.int64)]

        def caches(device):
            full = [torch.zeros((num_blocks, block_size + 1, H, D), dtype=torch.bfloat16, device=device)
                    for _ in range(2 * L)]
            return full, [f[:, :block_size] for f in full[:L]], [f[:, :block_size] for f in full[L:]]
        hf, hk, hv = caches("cpu")
        self.c.get_to_device(NS, self.keys[2:3], paged=ac.PagedKV(hk, hv, slots), force_cpu=True)
        df, dk, dv = caches(self.dev)
        r = self.c.get_to_device(NS, self.keys[2:3], paged=ac.PagedKV(dk, dv, [slots[0].to(self.dev)]))
        torch.cuda.current_stream().synchronize()
        self.assertEqual(r.decoded, 1)
        for a, b in zip(hf, df):
            np.testing.assert_array_equal(u16(a), u16(b))

    def test_argument_checks(self):
        outs = [torch.zeros(SHAPE, dtype=torch.bfloat16, device=self.dev)]
        with self.assertRaises(ac.InvalidArgument):
            self.c.get_to_device(NS, self.keys[:1], out=outs, force_cpu=True)  # CUDA outputs, CPU path
        with self.assertRaises(ac.InvalidArgument):
            self.c.get_to_device(NS, self.keys[:1], out=[torch.zeros((2, 4, 128, 8, 128), dtype=torch.bfloat16,
                                                                      device=self.dev)])  # too small
        layers = [torch.zeros((2, 8, 16, 8, 128), dtype=torch.bfloat16, device=self.dev) for _ in range(4)]
        with self.assertRaises(ac.InvalidArgument):  # slot mapping on the host, caches on the GPU
            self.c.get_to_device(NS, self.keys[:1], paged=ac.PagedKV.from_vllm(layers, [torch.zeros(256, dtype=torch.int64)]))


if __name__ == "__main__":
    unittest.main()
