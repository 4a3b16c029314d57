#!/usr/bin/env bash
# Tier manager: Get latency by path (DRAM hit / SSD hit from a temporary extent / SSD hit
# promoted), Put throughput with DRAM full (demote to SSD vs drop), durable Put latency.
# Writes bench/results/tiering.md and tiering.csv. Usage: bench/scripts/35_tiering.sh
# <build dir>. Env: TIER_BENCH_DIR (a directory on the SSD, default /var/tmp),
# TIER_BENCH_REPS (3).
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/../.."
BIN=$BUILD/bin/tiering_bench
[ -x "$BIN" ] || { echo "35_tiering: $BIN not built (ninja -C $BUILD tiering_bench)"; exit 1; }
BASE=${TIER_BENCH_DIR:-/var/tmp}
WORK=$(mktemp -d "$BASE/ac_tier_bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
REPS=${TIER_BENCH_REPS:-3}
RAW=$WORK/raw.txt
: > "$RAW"
for spec in "262144 1024" "1048576 256"; do
  set -- $spec
  for rep in $(seq 1 "$REPS"); do
    "$BIN" --dir "$WORK/d" --entry-bytes "$1" --entries "$2" --pool-bytes $((64 << 20)) |
      grep "mode=" | sed "s/^/rep=$rep /" >> "$RAW"
  done
done
python3 - "$RAW" <<'PY'
import sys, statistics, collections, subprocess, datetime
rows = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    kv = dict(p.split("=", 1) for p in line.split())
    key = (kv["mode"], int(kv["entry_bytes"]))
    for k, v in kv.items():
        if k not in ("rep", "mode", "entry_bytes"):
            rows[key][k].append(float(v))
med = {k: {m: statistics.median(v) for m, v in d.items()} for k, d in rows.items()}
cpu = subprocess.run("lscpu | grep 'Model name' | sed 's/.*: *//'", shell=True, capture_output=True, text=True).stdout.strip()
uname = subprocess.run(["uname", "-sr"], capture_output=True, text=True).stdout.strip()
load = open("/proc/loadavg").read().split()[0]
out = ["# Tier manager benchmark", "",
       f"Date {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC; {cpu}; {uname}; load average {load} (shared machine).",
       "Command: `bench/scripts/35_tiering.sh <build>` (medians of the repetitions; 64 MiB DRAM pool, SSD tier on /var/tmp, 16 x 64 MiB segments).", "",
       "| entry | path | p50 us | p99 us |", "| --- | --- | --- | --- |"]
csv = ["mode,entry_bytes,metric,median"]
for (mode, e), m in sorted(med.items(), key=lambda x: (x[0][1], x[0][0])):
    for k, v in m.items():
        csv.append(f"{mode},{e},{k},{v}")
    if "p50_us" in m:
        out.append(f"| {e >> 10} KiB | {mode} | {m['p50_us']:.1f} | {m['p99_us']:.1f} |")
out += ["", "| entry | Put with DRAM full | MB/s (call) | MB/s (until durable) | demoted | lost |", "| --- | --- | --- | --- | --- | --- |"]
for (mode, e), m in sorted(med.items(), key=lambda x: (x[0][1], x[0][0])):
    if "MBps" in m:
        out.append(f"| {e >> 10} KiB | {mode} | {m['MBps']:.0f} | {m['MBps_until_durable']:.0f} | {m['demoted']:.0f} | {m['lost']:.0f} |")
for e in sorted({k[1] for k in med}):
    d, s = med.get(("get_dram_hit", e)), med.get(("get_ssd_hit_temp_extent", e))
    if d and s:
        out.append("")
        out.append(f"{e >> 10} KiB: an SSD hit costs {s['p50_us'] / max(d['p50_us'], 0.001):.0f}x a DRAM hit (median Get call, lease included).")
text = "\n".join(out) + "\n"
print(text)
open("bench/results/tiering.md", "w").write(text)
open("bench/results/tiering.csv", "w").write("\n".join(csv) + "\n")
PY
