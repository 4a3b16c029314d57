#!/usr/bin/env python3
"""Markdown table of eval_daemon.csv: medians, delay as a multiple of the oracle's, loss."""
import csv
import sys


def main(path):
    rows = list(csv.DictReader(open(path)))
    oracle = {r["workload"]: r for r in rows if r["policy"] == "oracle"}
    out = ["| workload | DRAM share | policy | modelled full-scale delay ms | x oracle (modelled) "
           "| measured median ms | x oracle (median) | measured mean ms | x oracle (mean) "
           "| mean fetch ms | GPU decode ms | recompute ms | mean quality loss | hit share | DRAM hits "
           "| Get-after-Lookup misses |",
           "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        o = oracle.get(r["workload"])
        def ratio(col):
            if not o or float(o[col]) <= 0:
                return "n/a"
            return "%.2fx" % (float(r[col]) / float(o[col]))
        out.append("| %s | %s | %s | %.3f | %s | %.3f | %s | %.3f | %s | %.3f | %.3f | %.3f | %.4f | %.2f | %.2f | %.3f |" % (
            r["workload"], r["dram_frac"], r["policy"], float(r["modelled_delay_ms"]), ratio("modelled_delay_ms"),
            float(r["median_delay_ms"]), ratio("median_delay_ms"),
            float(r["mean_delay_ms"]), ratio("mean_delay_ms"), float(r["mean_fetch_ms"]),
            float(r["mean_gpu_decode_ms"]), float(r["mean_recompute_ms"]), float(r["mean_quality_loss"]),
            float(r["hit_share"]), float(r["dram_hit_share"]), float(r["get_after_lookup_miss_share"])))
    bad = [r for r in rows if int(r["put_errors"]) or int(r["bad_bytes"])]
    for r in bad:
        out.append("")
        out.append("**%s %s: %s Put errors, %s entries that failed decode/shape check**" % (
            r["workload"], r["policy"], r["put_errors"], r["bad_bytes"]))
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1])
