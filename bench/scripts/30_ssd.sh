#!/usr/bin/env bash
# SSD tier vs fio (same directory, block size, queue depth, O_DIRECT) vs RocksDB with
# integrated BlobDB; plus restart time with 100k entries. Writes bench/results/ssd.md
# and ssd.csv. Usage: bench/scripts/30_ssd.sh <build dir>. Env: SSD_BENCH_DIR (a
# directory on the SSD to test, default /var/tmp), SSD_BENCH_REPS (3), SSD_BENCH_GIB (1).
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/../.."
BIN=$BUILD/bin/ssd_bench
[ -x "$BIN" ] || { echo "30_ssd: $BIN not built (ninja -C $BUILD ssd_bench)"; exit 1; }
command -v fio >/dev/null || { echo "30_ssd: fio not installed"; exit 1; }
BASE=${SSD_BENCH_DIR:-/var/tmp}
WORK=$(mktemp -d "$BASE/ac_ssd_bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
REPS=${SSD_BENCH_REPS:-3}
GIB=${SSD_BENCH_GIB:-1}
TOTAL=$((GIB << 30))
RAW=$WORK/raw.txt
: > "$RAW"

for spec in "1048576 16" "16777216 4"; do
  set -- $spec
  E=$1; QD=$2
  BS_K=$(( (E + 4096) / 1024 ))   # the tier writes one record (4 KiB header + entry) per I/O
  for rep in $(seq 1 "$REPS"); do
    rm -rf "$WORK/d"; mkdir -p "$WORK/d"
    "$BIN" tier --dir "$WORK/d" --entry-bytes "$E" --total-bytes "$TOTAL" --qd "$QD" | grep "mode=" | sed "s/^/rep=$rep /" >> "$RAW"
    rm -rf "$WORK/d"; mkdir -p "$WORK/d"
    for rw in write read; do
      extra=""; [ $rw = write ] && extra="--end_fsync=1"
      bw=$(fio --name=ac --directory="$WORK/d" --filename=fio.dat --rw=$rw --bs=${BS_K}k --iodepth="$QD" \
             --ioengine=io_uring --direct=1 --size=$((TOTAL / E * (E + 4096))) $extra --output-format=json 2>/dev/null |
           python3 -c "import json,sys; j=json.load(sys.stdin)['jobs'][0]; print(j['$rw']['bw_bytes'])")
      # fio moves E+4096 bytes per entry; count entry bytes like the tier does.
      echo "rep=$rep mode=fio_$rw entry_bytes=$E MBps=$(python3 -c "print(round($bw*$E/($E+4096)/1e6,1))")" >> "$RAW"
    done
    rm -rf "$WORK/d"; mkdir -p "$WORK/d"
    "$BIN" blobdb --dir "$WORK/d" --entry-bytes "$E" --total-bytes "$TOTAL" --qd "$QD" | grep "mode=" | sed "s/^/rep=$rep /" >> "$RAW"
    rm -rf "$WORK/d"
  done
done
rm -rf "$WORK/d"; mkdir -p "$WORK/d"
"$BIN" restart --dir "$WORK/d" --entries 100000 --entry-bytes 1024 | grep "mode=" | sed "s/^/rep=1 /" >> "$RAW"
rm -rf "$WORK/d"

python3 - "$RAW" "$BUILD" "$GIB" "$REPS" <<'PY'
import csv, datetime, os, platform, statistics, subprocess, sys
raw, build, gib, reps = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
rows = [dict(kv.split("=", 1) for kv in line.split()) for line in open(raw) if line.strip()]
def med(mode, e, key):
    v = [float(r[key]) for r in rows if r["mode"] == mode and r.get("entry_bytes") == str(e)]
    return statistics.median(v) if v else float("nan")
lines = []
out = lambda s="": lines.append(s)
cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
model = next((l.split(":", 1)[1].strip() for l in cpu.splitlines() if l.startswith("Model name")), "?")
ncpu = next((l.split(":", 1)[1].strip() for l in cpu.splitlines() if l.startswith("CPU(s)")), "?")
dev = subprocess.run(["df", "--output=source,fstype", os.environ.get("SSD_BENCH_DIR", "/var/tmp")], capture_output=True, text=True).stdout.split("\n")[1]
out("# SSD tier benchmark")
out()
out(f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}")
out(f"- machine: {model}, {ncpu} CPUs, {platform.uname().system} {platform.uname().release}; filesystem {dev}")
out(f"- command: `bench/scripts/30_ssd.sh {build}` ({gib} GiB per run, median of {reps} runs)")
out("- tier: io_uring, O_DIRECT, one I/O per record (4 KiB header + entry), registered buffers, group commit "
    "(fdatasync + RocksDB WAL batch before each ack); reads verify CRC32C into aligned buffers.")
out("- fio: same directory, `--ioengine=io_uring --direct=1`, bs = record size, same iodepth, `--end_fsync=1` for writes; "
    "MB/s counted in entry bytes like the tier.")
out("- BlobDB: RocksDB 7.8 `enable_blob_files=true, min_blob_size=0`, no compression, direct reads, "
    "qd writer/reader threads, WAL on, final SyncWAL+Flush inside the timed write phase.")
out("- disk bytes/byte: `/proc/self/io` write_bytes of the process / entry bytes stored.")
out()
out("| entry | qd | tier write MB/s | fio write MB/s | tier/fio | tier read MB/s | fio read MB/s | tier/fio | BlobDB write MB/s | tier/BlobDB | BlobDB read MB/s | disk bytes/byte tier | disk bytes/byte BlobDB | tier write amp | write p50/p99 us | read p50/p99 us |")
out("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
table = []
for e, qd in ((1048576, 16), (16777216, 4)):
    tw, tr = med("tier", e, "write_MBps"), med("tier", e, "read_MBps")
    fw, fr = med("fio_write", e, "MBps"), med("fio_read", e, "MBps")
    bw, br = med("blobdb", e, "write_MBps"), med("blobdb", e, "read_MBps")
    td, bd, wa = med("tier", e, "disk_per_byte"), med("blobdb", e, "disk_per_byte"), med("tier", e, "write_amp")
    lat = f"{med('tier', e, 'write_p50_us'):.0f}/{med('tier', e, 'write_p99_us'):.0f}"
    rlat = f"{med('tier', e, 'read_p50_us'):.0f}/{med('tier', e, 'read_p99_us'):.0f}"
    name = f"{e >> 20} MiB"
    out(f"| {name} | {qd} | {tw:.0f} | {fw:.0f} | {tw/fw:.2f} | {tr:.0f} | {fr:.0f} | {tr/fr:.2f} | {bw:.0f} | {tw/bw:.2f} | {br:.0f} | {td:.3f} | {bd:.3f} | {wa:.4f} | {lat} | {rlat} |")
    table.append(dict(entry_bytes=e, qd=qd, tier_write_MBps=tw, fio_write_MBps=fw, tier_read_MBps=tr, fio_read_MBps=fr,
                      blobdb_write_MBps=bw, blobdb_read_MBps=br, tier_disk_per_byte=td, blobdb_disk_per_byte=bd, tier_write_amp=wa))
r = [x for x in rows if x["mode"] == "restart"]
if r:
    r = r[0]
    out()
    out(f"Restart with {r['entries']} entries of {r['entry_bytes']} B: warm open (index present) **{float(r['warm_open_s']):.3f} s** "
        f"({r['warm_entries']} entries); index deleted -> rebuilt from a log scan in {float(r['rebuild_open_s']):.3f} s "
        f"({r['rebuild_entries']} entries); next open warm again in {float(r['warm_after_rebuild_s']):.3f} s.")
out()
out("Raw runs:")
out()
out("```")
lines.extend(l.rstrip() for l in open(raw))
out("```")
open("bench/results/ssd.md", "w").write("\n".join(lines) + "\n")
with open("bench/results/ssd.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(table[0].keys()))
    w.writeheader()
    w.writerows(table)
print("\n".join(lines[:12 + len(table) + 4]))
PY
