#!/usr/bin/env python3
"""Turns bench/results/eval_points.csv into quality-versus-delay plots and the headline
figures (docs/evaluation.md, "Headline figures").

usage: plot.py POINTS_CSV OUT_DIR [HEADLINE_CSV_NAME]        (synthetic / daemon-replay points)
       plot.py --ground-truth POINTS_CSV HEADLINE_CSV OUT_DIR  (ground-truth simulation, eval_sim --ground-truth)

Writes OUT_DIR/eval_<workload>.png (needs matplotlib; skipped with a note otherwise),
OUT_DIR/eval_headline.csv (or HEADLINE_CSV_NAME) and prints a markdown table (the caller puts it in eval.md).

Definitions (per workload and DRAM size):
  static frontier: the Pareto-optimal static-<config> points in (mean loss, mean delay),
    joined by straight lines (a time-share of two neighbouring configs reaches any point
    on the segment), defined only between its first and last point: no extrapolation.
  delay saving at equal quality: for a policy point (q, d) with q inside the frontier's
    loss range, frontier_delay(q) / d. Reported: the largest over the policy's alpha sweep.
  quality gain at equal delay: for a point with d inside the frontier's delay range,
    (frontier_loss(d) - q) / frontier_loss(d): the relative reduction of the expected
    quality drop. Reported: the largest over the sweep (points where the frontier's loss
    is 0 are skipped).
"""
import csv
import sys
from collections import defaultdict


def frontier(points):
    """Pareto points sorted by loss ascending, delay strictly descending."""
    out = []
    for q, d in sorted(points):
        if not out or d < out[-1][1]:
            out.append((q, d))
    return out


def interp(xs, ys, x):
    for i in range(len(xs) - 1):
        a, b = xs[i], xs[i + 1]
        lo, hi = min(a, b), max(a, b)
        if lo <= x <= hi:
            if a == b:
                return min(ys[i], ys[i + 1])
            return ys[i] + (ys[i + 1] - ys[i]) * (x - a) / (b - a)
    if len(xs) == 1 and xs[0] == x:
        return ys[0]
    return None


def compare(front, pts):
    """Best delay saving and quality gain of pts against a frontier, or None."""
    fq = [p[0] for p in front]
    fd = [p[1] for p in front]
    best_saving, best_gain = None, None
    for q, d in pts:
        ds = interp(fq, fd, q)
        if ds is not None and d > 0:
            s = ds / d
            best_saving = s if best_saving is None else max(best_saving, s)
        qs = interp(fd, fq, d)
        if qs is not None and qs > 0:
            g = (qs - q) / qs
            best_gain = g if best_gain is None else max(best_gain, g)
    return best_saving, best_gain


def fmt(x, pct=False):
    if x is None:
        return "n/a"
    return f"{100 * x:+.0f}%" if pct else f"{x:.2f}x"


def ci(h, key, pct=False, lo=None, hi=None):
    """'m [lo, hi]' from eval_headline.csv columns."""
    def f(x):
        try:
            v = float(x)
        except (TypeError, ValueError):
            return None
        return None if v != v else v
    m = f(h.get(key))
    a, b = f(h.get(lo)), f(h.get(hi))
    if m is None:
        return "n/a"
    if pct:
        s = f"{100 * m:+.0f}%"
        return s + (f" [{100 * a:+.0f}, {100 * b:+.0f}]" if a is not None and b is not None else "")
    return f"{m:.2f}x" + (f" [{a:.2f}, {b:.2f}]" if a is not None and b is not None else "")


def ground_truth_main(src, head_csv, out_dir):
    """Ground-truth mode (docs/evaluation.md): markdown tables of eval_headline.csv, plots of
    the test points. Prints the tables (the caller puts them into eval.md)."""
    heads = list(csv.DictReader(open(head_csv)))
    targets = dict(vs_single_static=2.4, vs_hull=1.5, vs_greedy=1.2, quality_gain_vs_single_static=0.55)

    def met(h, k):
        try:
            v = float(h[k])
        except ValueError:
            return "n/a"
        return "met" if v == v and v >= targets[k] else "not met"

    for est in ("predicted", "probe"):
        rows = [h for h in heads if h["estimate"] == est and h["variant"] == "base"]
        if not rows:
            continue
        print(f"\n### Estimate: {est} (alpha chosen on the validation trace)\n")
        print("| workload | DRAM | seeds | alpha (greedy) | vs best single static at equal quality [95% CI] | "
              "vs static hull [95% CI] | vs greedy [95% CI] | loss reduction vs single static at equal delay [95% CI] | "
              "top-1 gain (pts) | vs hull at equal delay | adaptive loss / top-1 / KL | adaptive delay ms (x oracle) |")
        print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---:|")
        for h in rows:
            print(f"| {h['workload']} | {100 * float(h['dram_frac']):.0f}% | {h['seeds']} | {h['alpha']} ({h['greedy_alpha']}) | "
                  f"{ci(h, 'vs_single_static', lo='vs_single_static_ci_lo', hi='vs_single_static_ci_hi')} | "
                  f"{ci(h, 'vs_hull', lo='vs_hull_ci_lo', hi='vs_hull_ci_hi')} | "
                  f"{ci(h, 'vs_greedy', lo='vs_greedy_ci_lo', hi='vs_greedy_ci_hi')} | "
                  f"{ci(h, 'quality_gain_vs_single_static', True, 'quality_gain_ci_lo', 'quality_gain_ci_hi')} | "
                  f"{float(h['top1_gain_vs_single_static_pts']):+.2f} | {ci(h, 'quality_gain_vs_hull', True)} | "
                  f"{float(h['adaptive_loss']):.4f} / {float(h['adaptive_top1']):.4f} / {float(h['adaptive_kl']):.4f} | "
                  f"{float(h['adaptive_delay_ms']):.2f} ({float(h['adaptive_x_oracle']):.2f}) |")
        print("\nTargets (issue 18): 2.4x / 1.5x / 1.2x / 55%. Cells where the mean meets the target:")
        for h in rows:
            print(f"- {h['workload']} {100 * float(h['dram_frac']):.0f}%: " +
                  ", ".join(f"{k} {met(h, k)}" for k in targets))
        print("\nStatic config picked at equal quality (per seed): " +
              "; ".join(f"{h['workload']} {100 * float(h['dram_frac']):.0f}%: {h['static_at_equal_quality']}" for h in rows))
    abl = [h for h in heads if h["variant"] != "base" or h["estimate"] == "truth"]
    if abl:
        print("\n### Ablations (adaptive; alpha chosen on validation per variant)\n")
        print("| workload | DRAM | estimate | variant | alpha | vs single static | vs hull | vs greedy | loss reduction vs single static |")
        print("|---|---:|---|---|---:|---:|---:|---:|---:|")
        base = {(h["workload"], h["dram_frac"], h["estimate"]): h for h in heads if h["variant"] == "base"}
        for h in sorted(abl, key=lambda h: (h["workload"], float(h["dram_frac"]), h["estimate"], h["variant"])):
            b = base.get((h["workload"], h["dram_frac"], "predicted"))
            for r in ([b] if b and h is not b else []) + [h]:
                pass
            print(f"| {h['workload']} | {100 * float(h['dram_frac']):.0f}% | {h['estimate']} | "
                  f"{'oracle estimate (truth given to the planner)' if h['estimate'] == 'truth' else h['variant']} | {h['alpha']} | "
                  f"{ci(h, 'vs_single_static', lo='vs_single_static_ci_lo', hi='vs_single_static_ci_hi')} | "
                  f"{ci(h, 'vs_hull', lo='vs_hull_ci_lo', hi='vs_hull_ci_hi')} | "
                  f"{ci(h, 'vs_greedy', lo='vs_greedy_ci_lo', hi='vs_greedy_ci_hi')} | "
                  f"{ci(h, 'quality_gain_vs_single_static', True, 'quality_gain_ci_lo', 'quality_gain_ci_hi')} |")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("\n(matplotlib missing: no PNG written; pip install -r bench/eval/requirements.txt)")
        return
    rows = [r for r in csv.DictReader(open(src)) if r["phase"] == "test" and r["kind"] != "oracle"]
    seed0 = min(int(r["seed"]) for r in rows)
    for wl in sorted({r["workload"] for r in rows}):
        fracs = sorted({r["dram_frac"] for r in rows if r["workload"] == wl}, key=float)
        fig, axes = plt.subplots(1, len(fracs), figsize=(4.6 * len(fracs), 4.0), squeeze=False)
        for ax, fr in zip(axes[0], fracs):
            rs = [r for r in rows if r["workload"] == wl and r["dram_frac"] == fr]
            one = [r for r in rs if int(r["seed"]) == seed0]
            st = [(float(r["mean_loss"]), float(r["mean_delay_ms"])) for r in one if r["kind"] == "static"]
            ax.scatter([p[0] for p in st], [p[1] for p in st], s=9, c="gray", label=f"static configs (seed {seed0})")
            hull = lower_hull(st)
            ax.plot([p[0] for p in hull], [p[1] for p in hull], c="gray", lw=1, label="static lower convex hull")
            gs = sorted((float(r["mean_loss"]), float(r["mean_delay_ms"])) for r in one
                        if r["kind"] == "greedy" and r["estimate"] == "predicted")
            gh = lower_hull(gs)
            ax.plot([p[0] for p in gh], [p[1] for p in gh], c="tab:orange", marker="s", ms=3, lw=1,
                    label="greedy sweep (hull)")
            for est, c in (("predicted", "tab:blue"), ("probe", "tab:green")):
                ap = [(float(r["mean_loss"]), float(r["mean_delay_ms"])) for r in rs
                      if r["kind"] == "adaptive" and r["chosen"] == "1" and r["estimate"] == est and r["variant"] == "base"]
                ax.scatter([p[0] for p in ap], [p[1] for p in ap], c=c, marker="o", s=18,
                           label=f"adaptcache, {est} (all seeds)")
            ax.set_yscale("log")
            ax.set_xlabel("mean ground-truth loss (1 - top-1)")
            ax.set_ylabel("mean load delay, ms")
            ax.set_title(f"{wl}, DRAM {float(fr) * 100:.0f}%")
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=7)
        fig.suptitle(f"{wl}: ground-truth quality vs delay (lower-left is better)")
        fig.tight_layout()
        fig.savefig(f"{out_dir}/eval_{wl}.png", dpi=110)
        plt.close(fig)


def lower_hull(pts):
    """Non-increasing lower convex hull (bench/eval/metrics.cc LowerHull)."""
    h = []
    for q, d in sorted(pts):
        if h and d >= h[-1][1]:
            continue
        while len(h) >= 2:
            (aq, ad), (bq, bd) = h[-2], h[-1]
            if (bq - aq) * (d - ad) - (bd - ad) * (q - aq) <= 0:
                h.pop()
            else:
                break
        h.append((q, d))
    return h


def main():
    src, out_dir = sys.argv[1], sys.argv[2]
    if sys.argv[1] == "--ground-truth":
        return ground_truth_main(sys.argv[2], sys.argv[3], sys.argv[4])
    head_name = sys.argv[3] if len(sys.argv) > 3 else "eval_headline.csv"
    rows = list(csv.DictReader(open(src)))
    by = defaultdict(list)
    for r in rows:
        by[(r["mode"], r["workload"], r["dram_frac"])].append(r)
    heads = []
    print("| mode | workload | DRAM (share of distinct KV) | DRAM GiB | adaptive vs best static: delay saving at equal quality | quality gain at equal delay | greedy vs best static: delay saving | quality gain | adaptive vs greedy: delay saving | quality gain | LRU-raw delay x oracle |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (mode, wl, frac), rs in sorted(by.items()):
        if float(frac) == 0:
            continue
        stat = [(float(r["mean_loss"]), float(r["delay_x_oracle"])) for r in rs if r["kind"] == "static"]
        ada = [(float(r["mean_loss"]), float(r["delay_x_oracle"])) for r in rs if r["kind"] == "adaptive"]
        gre = [(float(r["mean_loss"]), float(r["delay_x_oracle"])) for r in rs if r["kind"] == "greedy"]
        lru = [float(r["delay_x_oracle"]) for r in rs if r["kind"] == "lru"]
        sf = frontier(stat)
        a_s, a_g = compare(sf, ada)
        g_s, g_g = compare(sf, gre)
        ag_s, ag_g = compare(frontier(gre), ada)
        heads.append(dict(mode=mode, workload=wl, dram_frac=frac, dram_gib=rs[0]["dram_gib"],
                          adaptive_delay_saving=a_s, adaptive_quality_gain=a_g,
                          greedy_delay_saving=g_s, greedy_quality_gain=g_g,
                          adaptive_vs_greedy_delay_saving=ag_s, adaptive_vs_greedy_quality_gain=ag_g,
                          lru_delay_x_oracle=lru[0] if lru else None))
        print(f"| {mode} | {wl} | {float(frac):.2f} | {float(rs[0]['dram_gib']):.1f} | {fmt(a_s)} | {fmt(a_g, True)} | "
              f"{fmt(g_s)} | {fmt(g_g, True)} | {fmt(ag_s)} | {fmt(ag_g, True)} | {lru[0] if lru else float('nan'):.2f} |")
    with open(f"{out_dir}/{head_name}", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(heads[0].keys()) if heads else ["mode"])
        w.writeheader()
        for h in heads:
            w.writerow(h)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print("\n(matplotlib missing: no PNG written; pip install -r bench/eval/requirements.txt)")
        return
    for (mode, wl) in sorted({(m, w) for (m, w, _) in by}):
        fracs = sorted({fr for (m, w, fr) in by if m == mode and w == wl and float(fr) > 0}, key=float)
        fig, axes = plt.subplots(1, len(fracs), figsize=(4.2 * len(fracs), 3.8), squeeze=False)
        for ax, fr in zip(axes[0], fracs):
            rs = by[(mode, wl, fr)]
            pick = lambda k: sorted((float(r["delay_x_oracle"]), float(r["mean_loss"])) for r in rs if r["kind"] == k)
            st = pick("static")
            ax.scatter([p[0] for p in st], [p[1] for p in st], s=10, c="gray", label="static-<config>")
            sf = frontier([(q, d) for d, q in st])
            ax.plot([p[1] for p in sf], [p[0] for p in sf], c="gray", lw=1, label="best static (frontier)")
            for k, c, m in (("greedy", "tab:orange", "s"), ("adaptive", "tab:blue", "o")):
                pts = sorted(pick(k), key=lambda p: p[1])
                ax.plot([p[0] for p in pts], [p[1] for p in pts], c=c, marker=m, ms=4,
                        label="greedy-downgrade" if k == "greedy" else "adaptcache")
            lr = pick("lru")
            ax.scatter([p[0] for p in lr], [p[1] for p in lr], c="tab:red", marker="x", label="lru-raw")
            ax.set_xscale("log")
            ax.set_yscale("symlog", linthresh=1e-3)
            ax.set_ylim(bottom=0)
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel("mean load delay / oracle")
            ax.set_ylabel("mean expected quality drop")
            ax.set_title(f"{wl}, DRAM {float(fr) * 100:.0f}% ({float(rs[0]['dram_gib']):.0f} GiB)")
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=7)
        fig.suptitle(f"{wl} ({mode} mode): quality vs delay (lower-left is better)")
        fig.tight_layout()
        fig.savefig(f"{out_dir}/eval_{wl}{'' if mode == 'sim' else '_' + mode}.png", dpi=110)
        plt.close(fig)


if __name__ == "__main__":
    main()
