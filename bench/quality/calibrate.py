"""Monotone fit proxy -> quality drop (isotonic regression, pool-adjacent-violators) and
the calibration file the daemon loads (format: docs/optimizer.md, parsed by
policy/quality_model.cc). validate_calibration() mirrors that parser's rules.
"""

from __future__ import annotations

import json
import math
import os

FAMILIES = ("raw", "fp8", "quant", "drop", "lowrank")


def pav(xs, ys):
    """Isotonic (non-decreasing) least-squares fit of ys ordered by xs.

    Returns blocks [(x_mean, y_mean, weight)] with strictly increasing x_mean and
    non-decreasing y_mean.
    """
    pts = sorted(zip(xs, ys))
    blocks = []  # [sum_x, sum_y, n]
    for x, y in pts:
        blocks.append([x, y, 1])
        while len(blocks) > 1 and blocks[-2][1] / blocks[-2][2] > blocks[-1][1] / blocks[-1][2]:
            sx, sy, n = blocks.pop()
            blocks[-1][0] += sx
            blocks[-1][1] += sy
            blocks[-1][2] += n
    out = []
    for sx, sy, n in blocks:
        x, y = sx / n, sy / n
        if out and x <= out[-1][0]:  # equal mean x: merge (keeps x strictly increasing)
            px, py, pn = out.pop()
            x, y, n = (px * pn + x * n) / (pn + n), (py * pn + y * n) / (pn + n), pn + n
        out.append((x, y, n))
    # Merging equal x can only raise y of the earlier block's successor order; re-run once.
    fixed = []
    for x, y, n in out:
        while fixed and fixed[-1][1] > y:
            px, py, pn = fixed.pop()
            x, y, n = (px * pn + x * n) / (pn + n), (py * pn + y * n) / (pn + n), pn + n
        fixed.append((x, y, n))
    return fixed


def fit_curve(xs, ys, max_points: int = 12):
    """Calibration points [[proxy, loss], ...] for one family: PAV, loss clipped at 0,
    thinned to at most max_points knots (weighted merges of adjacent blocks)."""
    if not xs:
        return []
    blocks = [(max(0.0, x), max(0.0, y), n) for x, y, n in pav(xs, ys)]
    while len(blocks) > max_points:
        # Merge the adjacent pair with the smallest combined weight.
        i = min(range(len(blocks) - 1), key=lambda j: blocks[j][2] + blocks[j + 1][2])
        (x1, y1, n1), (x2, y2, n2) = blocks[i], blocks[i + 1]
        n = n1 + n2
        blocks[i:i + 2] = [((x1 * n1 + x2 * n2) / n, (y1 * n1 + y2 * n2) / n, n)]
    pts = []
    for x, y, _ in blocks:
        if pts and x <= pts[-1][0]:
            pts[-1][1] = max(pts[-1][1], y)
            continue
        if pts and y < pts[-1][1]:
            y = pts[-1][1]
        pts.append([round(x, 8), round(y, 8)])
    # Rounding may collapse x: keep strictly increasing.
    out = []
    for x, y in pts:
        if out and x <= out[-1][0]:
            out[-1][1] = max(out[-1][1], y)
        else:
            out.append([x, y])
    return out


def build_calibration(records, comment: str, metric_key: str):
    """records: dicts with family, proxy, and metric_key (the loss). raw is skipped
    (always lossless in the daemon)."""
    curves = []
    for fam in FAMILIES[1:]:
        rs = [r for r in records if r["family"] == fam and math.isfinite(r["proxy"])
              and math.isfinite(r[metric_key])]
        if not rs:
            continue
        pts = fit_curve([r["proxy"] for r in rs], [r[metric_key] for r in rs])
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
