#!/usr/bin/env python3
"""GPU fetch benchmark, Python side: adaptcache.Client.get_to_device into preallocated torch
CUDA tensors, against a running adaptcached, next to the copy limit.

Per codec of --codecs: Put one request of max(--chunks) chunks of Llama-3.1-8B shape
(K and V x 32 layers x 256 tokens x 8 KV heads x 128 head_dim, bf16: 32 MiB raw per
chunk, random normal data), then for each N of --chunks:
  fetch_ms  get_to_device of the first N keys into N contiguous bf16 CUDA tensors, timed
            from the call to the stream's synchronisation; median of --reps after --warmup;
  copy_ms   a pinned-host-to-device copy_ (non_blocking, synchronised) of the N stored
            containers' bytes: the transfer part of the limit;
  limit_ms  copy + decode kernels alone. The Python API cannot time GetToDevice's decode
            alone, so this is the C++ bench's limit of the same point (bench/gpu_fetch_bench.cc,
            the rows of source cpp already in --csv: run it first, against the same daemon),
            empty when there is none.
Every fetch is checked byte for byte against the CPU decoder before it is reported.
Rows `source,chunks,codec,ratio,fetch_ms,limit_ms` with source=python replace earlier
python rows of --csv (other sources' rows are kept); the table replaces this script's
section of --md. GPU machine only: it stops with a clear message without torch or CUDA.
The daemon's pool must hold max(--chunks) raw chunks (64 x 32 MiB = 2 GiB by default), e.g.
adaptcached --pool-size 4GiB.

Example:  PYTHONPATH=build/python python3 bench/gpu_fetch.py --target unix:/tmp/ac.sock
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "quality"))
import runinfo  # noqa: E402  (bench/quality)

LAYERS, TOKENS, KV_HEADS, HEAD_DIM = 32, 256, 8, 128
SHAPE = (2, LAYERS, TOKENS, KV_HEADS, HEAD_DIM)
CHUNK_RAW_BYTES = 2 * LAYERS * TOKENS * KV_HEADS * HEAD_DIM * 2  # bf16
MD_BEGIN, MD_END = "<!-- gpu_fetch_py:begin -->", "<!-- gpu_fetch_py:end -->"
HEADER = ["source", "chunks", "codec", "ratio", "fetch_ms", "limit_ms"]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default=None, help="daemon address (default $ADAPTCACHE_TARGET or the default socket)")
    p.add_argument("--chunks", default="1,4,16,64", help="request sizes in chunks (comma-separated)")
    p.add_argument("--codecs", default="raw,fp8,quant-k4v4-g64,quant-k2v2-g64", help="codec configs")
    p.add_argument("--reps", type=int, default=20, help="timed repetitions (median reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed repetitions first")
    p.add_argument("--csv", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "gpu_fetch.csv"),
                   help="CSV to update (rows of source python replaced)")
    p.add_argument("--md", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "gpu_fetch.md"),
                   help="Markdown results to update (this script's section replaced)")
    p.add_argument("--commit", default=None, help="commit to record (default: git rev-parse HEAD)")
    p.add_argument("--namespace", default="bench/gpu-fetch/llama-3.1-8b/bf16")
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args()


def fail(msg):
    print(f"gpu_fetch.py: {msg}", file=sys.stderr)
    sys.exit(1)


def median_ms(fn, reps, warmup):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def cpp_limits(path):
    out = {}
    if os.path.exists(path):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row.get("source") == "cpp" and row.get("limit_ms"):
                    out[(int(row["chunks"]), row["codec"])] = float(row["limit_ms"])
    return out


def write_csv(path, rows):
    kept = []
    if os.path.exists(path):
        with open(path, newline="") as f:
            kept = [r for r in csv.DictReader(f) if r.get("source") != "python"]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=HEADER, extrasaction="ignore")
        w.writeheader()
        for r in kept + rows:
            w.writerow(r)


def md_section(args, machine, reg, rows):
    lines = [
        "## Python client (bench/gpu_fetch.py)", "",
        f"- date: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}",
        f"- machine: {machine}",
        f"- commit: {args.commit or runinfo.git_commit()}",
        f"- command: `python3 {' '.join(sys.argv)}`",
        f"- pool registration (prepare_device, before timing): {reg.registered}, {reg.seconds * 1e3:.0f} ms "
        f"for {reg.bytes / 2**30:.1f} GiB",
        "", "fetch = `get_to_device` into preallocated contiguous bf16 CUDA tensors, from the call to the stream's "
        "synchronisation, median of the timed calls; copy = a pinned host-to-device `copy_` of the same stored bytes "
        "(this script, same run); limit = the C++ bench's copy + decode of the same point (same daemon, same run). "
        "Every point's output was checked byte for byte against the CPU decoder before it was timed.", "",
        "| codec | ratio | chunks | fetch ms | GB/s of raw KV | copy ms | limit ms | fetch/limit |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lim = r["limit_ms"]
        rel = f"{float(r['fetch_ms']) / float(lim):.2f}x" if lim else "not measured"
        lines.append(f"| {r['codec']} | {float(r['ratio']):.2f}x | {r['chunks']} | {r['fetch_ms']} | {r['gbs']:.1f} | "
                     f"{r['copy_ms']:.3f} | {lim or 'not measured'} | {rel} |")
    return "\n".join(lines) + "\n"


def write_md(path, section):
    old = open(path).read() if os.path.exists(path) else ""
    block = f"{MD_BEGIN}\n{section}{MD_END}\n"
    b, e = old.find(MD_BEGIN), old.find(MD_END)
    if b >= 0 and e > b:
        text = old[:b] + block + old[e + len(MD_END) + 1:]
    elif old:
        text = old + ("\n" if old.endswith("\n") else "\n\n") + block
    else:
        text = "# GPU fetch benchmark\n\n" + block
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def main():
    args = parse_args()
    try:
        import torch
    except ImportError:
        fail("needs torch with CUDA (run it on the GPU machine)")
    if not torch.cuda.is_available():
        fail("torch sees no CUDA device (run it on the GPU machine)")
    import adaptcache as ac
    if not ac.built_with_cuda():
        fail("libadaptcache_client.so was built without CUDA (configure with nvcc present)")
    if not ac.cuda_available():
        fail("the client library sees no usable CUDA device")
    chunks = sorted({int(x) for x in args.chunks.split(",") if x})
    codecs = [c for c in args.codecs.split(",") if c]
    if not chunks or min(chunks) < 1:
        fail("--chunks must be positive integers")
    n_max = max(chunks)
    dev = torch.device("cuda", torch.cuda.current_device())
    stream = torch.cuda.current_stream(dev)
    cpp = cpp_limits(args.csv)
    rows = []
    with ac.Client(args.target) as c:
        reg = c.prepare_device(wait=True)
        print(f"# {torch.cuda.get_device_name(dev)}; daemon {c.health().version} at {c.target}; pool registered "
              f"with CUDA: {reg.registered} ({reg.seconds:.2f} s for {reg.bytes >> 20} MiB)")
        outs = [torch.empty(SHAPE, dtype=torch.bfloat16, device=dev) for _ in range(n_max)]
        gen = torch.Generator(device=dev).manual_seed(args.seed)
        print(f"{'codec':<18} {'ratio':>6} {'chunks':>6} {'fetch ms':>9} {'GB/s raw':>9} {'copy ms':>8} "
              f"{'cpp limit':>9} {'fetch/copy':>10}")
        for codec in codecs:
            ns = f"{args.namespace}/{codec}"
            keys = ac.hash_tokens(ns, np.arange(n_max * TOKENS, dtype=np.uint32) + args.seed, TOKENS)
            c.delete(ns, keys)
            for k in keys:
                x = torch.randn(SHAPE, generator=gen, device=dev, dtype=torch.float32).to(torch.bfloat16)
                c.put(ns, k, x, codec, shm=True)
            lr = c.lookup(ns, keys)
            if lr.prefix_hits != n_max:
                fail(f"{codec}: only {lr.prefix_hits} of {n_max} chunks stayed in the pool (enlarge --pool-size)")
            containers = [c.get(ns, k) for k in keys]
            stored = [int(x.size) for x in containers]
            wants = {}
            for n in chunks:
                ratio = sum(e.raw_bytes for e in lr.entries[:n]) / sum(stored[:n])
                res = {}

                def fetch():
                    r = c.get_to_device(ns, keys[:n], out=outs[:n], stream=stream)
                    stream.synchronize()
                    res["r"] = r

                fetch()
                r = res["r"]
                if r.decoded != n or not r.used_gpu:
                    fail(f"{codec} x{n}: decoded {r.decoded} of {n} (used_gpu {r.used_gpu})")
                for i in range(n):  # byte for byte against the CPU decoder
                    if i not in wants:
                        wants[i] = ac.decode_container(containers[i])
                    want = wants[i]
                    got = outs[i].view(torch.int16).cpu().numpy().view(np.uint16)
                    if not np.array_equal(got, want):
                        fail(f"{codec} x{n}: chunk {i} differs from the CPU decoder")
                fetch_ms = median_ms(fetch, args.reps, args.warmup)
                host = torch.from_numpy(np.concatenate(containers[:n])).pin_memory()
                dst = torch.empty(host.numel(), dtype=torch.uint8, device=dev)

                def copy():
                    dst.copy_(host, non_blocking=True)
                    stream.synchronize()

                copy_ms = median_ms(copy, args.reps, args.warmup)
                lim = cpp.get((n, codec))
                gbs = n * CHUNK_RAW_BYTES / (fetch_ms * 1e-3) / 1e9
                print(f"{codec:<18} {ratio:6.2f} {n:6d} {fetch_ms:9.3f} {gbs:9.1f} {copy_ms:8.3f} "
                      f"{'' if lim is None else f'{lim:.3f}':>9} {fetch_ms / copy_ms:10.2f}")
                rows.append({"source": "python", "chunks": n, "codec": codec, "ratio": f"{ratio:.3f}",
                             "fetch_ms": f"{fetch_ms:.3f}", "limit_ms": "" if lim is None else f"{lim:.3f}",
                             "copy_ms": copy_ms, "gbs": gbs})
            c.delete(ns, keys)
    write_csv(args.csv, rows)
    write_md(args.md, md_section(args, runinfo.machine_line(torch, dev), reg, rows))
    print(f"\nwrote {len(rows)} python rows to {args.csv} and {args.md}")


if __name__ == "__main__":
    main()
