"""Monotone fit proxy -> quality drop (isotonic regression, pool-adjacent-violators) and
the calibration file the daemon loads (format: docs/optimizer.md, parsed by
policy/quality_model.cc). validate_calibration() mirrors that parser's rules.
"""

from __future__ import annotations

import json
import math
import os

FAMILIES = ("raw", "fp8", "quant", "drop", "lowrank")


def pav(xs, ys, ws=None):
    """Weighted isotonic (non-decreasing) least-squares fit of ys ordered by xs.

    Returns blocks [(x_mean, y_mean, weight)] with strictly increasing x_mean and
    non-decreasing y_mean (means weighted).
    """
    ws = ws if ws is not None else [1.0] * len(xs)
    blocks = []  # [sum w*x, sum w*y, sum w]
    for x, y, w in sorted(zip(xs, ys, ws)):
        if w <= 0:
            continue
        blocks.append([w * x, w * y, w])
        while len(blocks) > 1 and blocks[-2][1] / blocks[-2][2] >= blocks[-1][1] / blocks[-1][2]:
            # >= also pools equal values, so equal x never ends in two blocks of equal y.
            sx, sy, n = blocks.pop()
            blocks[-1][0] += sx
            blocks[-1][1] += sy
            blocks[-1][2] += n
    out = []
    for sx, sy, n in blocks:
        x, y = sx / n, sy / n
        while out and (x <= out[-1][0] or y < out[-1][1]):  # merge ties in x, keep y monotone
            px, py, pn = out.pop()
            x, y, n = (px * pn + x * n) / (pn + n), (py * pn + y * n) / (pn + n), pn + n
        out.append((x, y, n))
    return out


def fit_curve(xs, ys, ws=None, max_points: int = 12, cap=None):
    """Calibration points [[proxy, loss], ...] for one family.

    Weighted PAV (weights: evaluated tokens, so a context scored on 2 answer tokens counts
    less than one scored on 128), losses clipped at 0, then adjacent blocks merged until at
    most max_points knots remain and each holds at least 1/(2*max_points) of the weight (a
    single outlier never makes a knot). The loader continues a curve with its last
    segment's slope, so a final knot at twice the largest proxy continues the curve with
    its mean slope through the origin rather than a steep local one; `cap` bounds it (a
    loss of 1 - top-1 agreement never exceeds 1).
    """
    if not xs:
        return []
    blocks = [(max(0.0, x), max(0.0, y), n) for x, y, n in pav(xs, ys, ws)]
    total = sum(n for _, _, n in blocks)
    while len(blocks) > 1 and (len(blocks) > max_points or
                               min(n for _, _, n in blocks) < total / (2 * max_points)):
        # Merge the lightest block into its lighter neighbour.
        i = min(range(len(blocks)), key=lambda j: blocks[j][2])
        j = i - 1 if i == len(blocks) - 1 or (i > 0 and blocks[i - 1][2] < blocks[i + 1][2]) else i + 1
        a, b = sorted((i, j))
        (x1, y1, n1), (x2, y2, n2) = blocks[a], blocks[b]
        n = n1 + n2
        blocks[a:b + 1] = [((x1 * n1 + x2 * n2) / n, (y1 * n1 + y2 * n2) / n, n)]
    pts = []
    for x, y, _ in blocks:
        x, y = round(x, 8), round(y, 8)
        if pts and x <= pts[-1][0]:
            pts[-1][1] = max(pts[-1][1], y)
        else:
            pts.append([x, max(y, pts[-1][1]) if pts else y])
    xl, yl = pts[-1]
    if xl > 0:
        ym = sum(y for _, y in pts) / sum(x for x, _ in pts)  # mean slope through the origin
        yt = yl + ym * xl if cap is None else max(yl, min(cap, yl + ym * xl))
        pts.append([round(2 * xl, 8), round(yt, 8)])
        if cap is not None and yt >= cap:  # flat beyond: the loader extends the last slope
            pts.append([round(4 * xl, 8), round(yt, 8)])
    return pts


def build_calibration(records, comment: str, metric_key: str, cap=None):
    """records: dicts with family, proxy, and metric_key (the loss). raw is skipped
    (always lossless in the daemon)."""
    curves = []
    for fam in FAMILIES[1:]:
        rs = [r for r in records if r["family"] == fam and math.isfinite(r["proxy"])
              and math.isfinite(r[metric_key])]
        if not rs:
            continue
        pts = fit_curve([r["proxy"] for r in rs], [r[metric_key] for r in rs],
                        [float(r.get("tokens", 1)) for r in rs], cap=cap)
        if pts:
            curves.append({"family": fam, "points": pts})
    cal = {"format": "adaptcache-calibration", "version": 1, "comment": comment, "curves": curves}
    validate_calibration(cal)
    return cal


def validate_calibration(cal) -> None:
    """Raises ValueError where policy/quality_model.cc would reject the file."""
    allowed = {"format", "version", "comment", "curves"}
    if set(cal) - allowed:
        raise ValueError(f"calibration: unknown keys {set(cal) - allowed}")
    if cal.get("version") != 1:
        raise ValueError("calibration: version must be 1")
    if cal.get("format", "adaptcache-calibration") != "adaptcache-calibration":
        raise ValueError("calibration: bad format")
    seen = set()
    for i, c in enumerate(cal.get("curves", [])):
        if set(c) - {"family", "config", "points"} or (("family" in c) == ("config" in c)):
            raise ValueError(f"calibration: curves[{i}]: needs exactly one of family/config, and points")
        if "family" in c and c["family"] not in FAMILIES:
            raise ValueError(f"calibration: curves[{i}]: unknown family")
        key = ("family", c["family"]) if "family" in c else ("config", c["config"])
        if key in seen:
            raise ValueError(f"calibration: curves[{i}]: duplicate curve")
        seen.add(key)
        pts = c["points"]
        if not pts:
            raise ValueError(f"calibration: curves[{i}]: no points")
        for j, (x, y) in enumerate(pts):
            if not (math.isfinite(x) and math.isfinite(y)) or x < 0 or y < 0:
                raise ValueError(f"calibration: curves[{i}]: point {j}: must be finite and >= 0")
            if j and x <= pts[j - 1][0]:
                raise ValueError(f"calibration: curves[{i}]: point {j}: x not increasing")
            if j and y < pts[j - 1][1]:
                raise ValueError(f"calibration: curves[{i}]: point {j}: y decreases")


def write_calibration(path: str, cal) -> None:
    validate_calibration(cal)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(cal, f, indent=1)
        f.write("\n")
