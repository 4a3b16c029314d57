#!/usr/bin/env bash
# GPU decode benchmark: bench/cuda_decode_bench (+ the PyTorch baseline bench/torch_dequant.py)
# on the first CUDA device. Writes $RESULTS_DIR/cuda_decode.{md,csv} (default bench/results).
# Without a GPU it says so and leaves the committed results alone.
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/../.."
OUTDIR=${RESULTS_DIR:-bench/results}
BIN="$BUILD/bin/cuda_decode_bench"
REPS=${CUDA_BENCH_REPS:-20}
if [ ! -x "$BIN" ]; then echo "cuda_decode_bench not built (no nvcc?): skipped"; exit 0; fi
if ! nvidia-smi -L >/dev/null 2>&1; then echo "no GPU: cuda benchmark skipped"; exit 0; fi
mkdir -p "$OUTDIR"
RAW=$("$BIN" --reps "$REPS")
TORCH=""
if python3 -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  TORCH=$(python3 bench/torch_dequant.py --reps "$REPS")
fi
echo "$RAW" | grep -v '^csv,'
echo "$TORCH" | grep -v '^csv,'
{ echo "$RAW"; echo "$TORCH"; } | sed -n 's/^csv,//p' > "$OUTDIR/cuda_decode.csv"
python3 - "$OUTDIR/cuda_decode.csv" "$OUTDIR/cuda_decode.md" "$BIN --reps $REPS; python3 bench/torch_dequant.py --reps $REPS" <<'PY'
import csv, datetime, platform, subprocess, sys
rows = list(csv.reader(open(sys.argv[1])))
kv = {r[0]: r[1:] for r in rows if len(r) <= 3}
cfg = [r for r in rows if len(r) > 3 and r[0] != "config"]
copy = float(kv["d2d_copy_gbs"][0])
def lscpu():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Model name"))
    except Exception:
        return "unknown CPU"
md = ["# GPU decode benchmark", "",
      f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')}",
      f"- card: {kv['device'][0]}; host: {lscpu()}; {platform.system()} {platform.release()}",
      f"- command: `{sys.argv[3]}`",
      "- request: 16 chunks x (32 layers, 256 tokens, 8 KV heads, head_dim 128, bf16) = 512 MiB decoded",
      f"- device-to-device copy (read + write): **{copy:.0f} GB/s**; "
      f"H2D of the uncompressed request: {float(kv['h2d_raw_ms'][0]):.2f} ms", "",
      "GB/s count the bytes really moved: compressed bytes read + decoded bytes written (contiguous: "
      "every token, drop writes zeros at dropped ones; paged: the kept tokens only, drop leaves the "
      "other slots alone); %copy is against the D2D copy above. Every config's GPU output "
      "(contiguous, paged, and the h2d+paged pipeline's) is checked against the CPU decoder before "
      "it is timed. h2d+paged = pinned host containers -> per-chunk H2D -> decode into a paged "
      "cache (block 16, random blocks), kernels and copies only, **not end to end** (no "
      "validation, RPC or lease: GetToDevice is measured in bench/results/gpu_fetch.md); "
      "x raw H2D = the H2D copy of the uncompressed request / that time. host ms = host-side "
      "validation (parse, checks, payload CRC) of the 16 containers. enc GB/s = GPU encode of one "
      "32 MiB chunk incl. copy back and CRC (fp8/quant only).", "",
      "| config | ratio | decode ms | decode GB/s | %copy | paged GB/s | %copy | h2d+paged ms | x raw H2D | host ms | enc GB/s |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
for r in cfg:
    name, ratio, dms, dgbs, dpct, pms, pgbs, ppct, ems, sp, hms, egbs = r
    md.append(f"| {name} | {float(ratio):.2f}x | {float(dms):.3f} | {float(dgbs):.0f} | {float(dpct):.0f}% | "
              f"{float(pgbs):.0f} | {float(ppct):.0f}% | {float(ems):.2f} | {float(sp):.2f}x | {float(hms):.2f} | "
              f"{float(egbs):.2f} |")
ours = {"torch_int4": "quant-k4v4-g64", "torch_int2": "quant-k2v2-g64", "torch_fp8": "fp8"}
base = {k + c: kv[k + c] for k in ours for c in ("", "_compile") if k + c in kv}
if base:
    md += ["", "PyTorch doing the same dequantization of the same request, same run: eager, and "
           "`_compile` = the same function under torch.compile (mode max-autotune-no-cudagraphs, "
           "its output checked equal to eager's):", "",
           "| baseline | ms | GB/s | ours (config) | ours GB/s | speedup |", "| --- | ---: | ---: | --- | ---: | ---: |"]
    for k, (ms, gbs) in base.items():
        o = next((r for r in cfg if r[0] == ours[k.removesuffix("_compile")]), None)
        if o:
            md.append(f"| {k} | {float(ms):.3f} | {float(gbs):.0f} | {o[0]} | {float(o[3]):.0f} | "
                      f"{float(ms) / float(o[2]):.1f}x |")
open(sys.argv[2], "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
