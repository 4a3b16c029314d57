#!/usr/bin/env python3
"""PyTorch baseline for the GPU decode benchmark (bench/cuda_decode_bench.cu).

The same dequantizations as the AdaptCache kernels, written the way a Python serving
stack would (eager PyTorch, and the same functions under torch.compile), for the same 16-chunk Llama-3.1-8B-shaped request
(32 layers, 256 tokens, 8 KV heads, head_dim 128, bf16 output):
  int4  KIVI-style: K per channel over groups of 64 tokens, V per token over groups of 64
        channels, 4-bit codes two per byte, fp16 scale and min;  y = q * s + m -> bf16
  int2  the same with 2-bit codes four per byte
  fp8   E4M3 codes with one fp32 scale per (K/V, layer, token) row;  y = e4m3(c) * s -> bf16
Throughput = (bytes read + bytes written) / time, CUDA events, 3 warm-ups, median of
--reps, random codes (never zeros). The compiled output is checked against eager (bit
for bit: same arithmetic) before it is reported. Prints a table and "csv," lines.
"""
import argparse
import statistics

import torch

CHUNKS, LAYERS, TOKENS, HEADS, DIM, GROUP = 16, 32, 256, 8, 128, 64
W = HEADS * DIM


def eager_and_compiled(name, run, out, reps):
    """Times run eagerly and under torch.compile; the compiled result must equal eager's."""
    ms = timed(run, reps)
    ref = out.clone()
    out.zero_()
    torch._dynamo.reset()  # each case compiles on its own (no shapes or ints made dynamic)
    compiled = torch.compile(run, mode="max-autotune-no-cudagraphs", dynamic=False)
    cms = timed(compiled, reps)
    if not torch.equal(out, ref):
        raise SystemExit(f"{name}: torch.compile output differs from eager")
    return [(name, ms), (name + "_compile", cms)]


def timed(fn, reps):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def unpack(codes, bits):
    per = 8 // bits
    mask = (1 << bits) - 1
    parts = [(codes >> (bits * i)) & mask for i in range(per)]
    return torch.stack(parts, dim=-1).flatten(-2)


def int_case(bits, reps, dev):
    per = 8 // bits
    shape = (CHUNKS, LAYERS, TOKENS, W // per)
    kc = torch.randint(0, 256, shape, dtype=torch.uint8, device=dev)
    vc = torch.randint(0, 256, shape, dtype=torch.uint8, device=dev)
    ks = torch.rand(CHUNKS, LAYERS, TOKENS // GROUP, 1, W, device=dev).half()
    km = torch.randn(CHUNKS, LAYERS, TOKENS // GROUP, 1, W, device=dev).half()
    vs = torch.rand(CHUNKS, LAYERS, TOKENS, W // GROUP, 1, device=dev).half()
    vm = torch.randn(CHUNKS, LAYERS, TOKENS, W // GROUP, 1, device=dev).half()
    out = torch.empty(CHUNKS, 2, LAYERS, TOKENS, W, dtype=torch.bfloat16, device=dev)

    def run():
        k = unpack(kc, bits).view(CHUNKS, LAYERS, TOKENS // GROUP, GROUP, W).float()
        out[:, 0] = (k * ks.float() + km.float()).view(CHUNKS, LAYERS, TOKENS, W)
        v = unpack(vc, bits).view(CHUNKS, LAYERS, TOKENS, W // GROUP, GROUP).float()
        out[:, 1] = (v * vs.float() + vm.float()).view(CHUNKS, LAYERS, TOKENS, W)

    moved = sum(t.numel() * t.element_size() for t in (kc, vc, ks, km, vs, vm, out))
    return [(n, ms, moved) for n, ms in eager_and_compiled(f"torch_int{bits}", run, out, reps)]


def fp8_case(reps, dev):
    codes = torch.randint(0, 256, (CHUNKS, 2, LAYERS, TOKENS, W), dtype=torch.uint8, device=dev)
    codes[(codes & 0x7F) == 0x7F] = 0  # no NaN codes
    scales = torch.rand(CHUNKS, 2, LAYERS, TOKENS, 1, device=dev)
    out = torch.empty(CHUNKS, 2, LAYERS, TOKENS, W, dtype=torch.bfloat16, device=dev)

    def run():
        torch.mul(codes.view(torch.float8_e4m3fn).float(), scales, out=out)

    moved = sum(t.numel() * t.element_size() for t in (codes, scales, out))
    return [(n, ms, moved) for n, ms in eager_and_compiled("torch_fp8", run, out, reps)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    dev = torch.device("cuda")
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}")
    rows = int_case(4, args.reps, dev) + int_case(2, args.reps, dev) + fp8_case(args.reps, dev)
    print(f"{'baseline':<20} {'ms':>9} {'GB/s':>9}")
    for name, ms, moved in rows:
        gbs = moved / (ms * 1e6)
        print(f"{name:<20} {ms:9.3f} {gbs:9.1f}")
        print(f"csv,{name},{ms:.4f},{gbs:.1f}")


if __name__ == "__main__":
    main()
