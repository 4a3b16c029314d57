#!/usr/bin/env bash
# Issue-17 item 3: Lookup, shm Get and Put throughput for 1..16 client threads, and
# Lookup p99 with 8 clients and 1M entries. Starts its own adaptcached (DRAM only), runs
# concurrency_bench against it, writes bench/results/concurrency.{md,csv}.
# Extra arguments after BUILD_DIR go to concurrency_bench (e.g. --lookup-entries 100000).
set -euo pipefail
BUILD=${1:-build}
shift || true
cd "$(dirname "$0")/../.."
BIN="$BUILD/bin"
for b in adaptcached concurrency_bench; do
  [ -x "$BIN/$b" ] || { echo "missing $BIN/$b (build it first)"; exit 1; }
done

WORK=$(mktemp -d /dev/shm/adaptcache-concbench-XXXXXX)
DAEMON_PID=""
cleanup() {
  [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM  # run cleanup through the EXIT trap

# Every extent takes at least 4 KiB (storage/extent_allocator.h), so 1M tiny Lookup
# entries need ~3.9 GiB; plus 64 MiB of Get entries and the Put rings. 5 GiB leaves room,
# and nothing may be evicted (the benchmark checks every Lookup is a full hit).
POOL=${CONCURRENCY_POOL:-5GiB}
"$BIN/adaptcached" --socket "$WORK/ac.sock" --metrics-listen 127.0.0.1:0 --pool-size "$POOL" \
  --shm-dir "$WORK" --pool-name concbench --ready-file "$WORK/ready" \
  --ssd-enabled false --log-level warn >"$WORK/daemon.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 1 3600); do  # up to 180 s: the pool is populated and locked at start
  [ -f "$WORK/ready" ] && break
  kill -0 "$DAEMON_PID" 2>/dev/null || break
  sleep 0.05
done
[ -f "$WORK/ready" ] || { echo "adaptcached did not start:"; cat "$WORK/daemon.log"; exit 1; }

ARGS=(--target "$WORK/ac.sock" "$@")
mkdir -p bench/results
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
START=$(date +%s)
TABLE=$("$BIN/concurrency_bench" "${ARGS[@]}" --csv bench/results/concurrency.csv)
ELAPSED=$(( $(date +%s) - START ))
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
echo "$TABLE"
# Anything the daemon logged as an error belongs with the figures.
if grep -qi "error" "$WORK/daemon.log"; then echo "daemon log:"; cat "$WORK/daemon.log"; fi
{
  echo "# Concurrency benchmark (issue 17 item 3): throughput against client threads"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- command: \`bench/scripts/70_concurrency.sh $BUILD${*:+ $*}\` -> \`concurrency_bench ${ARGS[*]/#$WORK/\$WORK}\` (${ELAPSED} s)"
  echo "- machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs, $(free -g | awk '/Mem:/{print $2}') GiB RAM; $(uname -srm)"
  echo "- adaptcached: pool $POOL in /dev/shm, DRAM only (\`--ssd-enabled false\`), embedded defaults otherwise"
  echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' (+ uncommitted changes)')"
  echo "- load average (1/5/15 min) before: $LOAD_BEFORE, after: $LOAD_AFTER (other jobs share the machine)"
  echo
  echo "Each client thread has its own \`client::Client\` on its own connection"
  echo "(\`own_connection\`), as separate engine processes would. Per row: calls counted over"
  echo "the measured window after a warm-up, latencies over every call of all threads; the"
  echo "median of the repetitions (each repetition runs every thread count once)."
  echo "**lookup**: Lookup of a random stored chain of 64 keys, every answer checked to be a"
  echo "full prefix hit (keys/s = 64 x calls/s). **get_shm**: GetShm lease of a random one of"
  echo "256 entries of 256 KiB raw bf16, CRC32C of the leased bytes checked against the"
  echo "entry's metadata and the locally encoded container, then release (batched by 16)."
  echo "**put**: streamed Put of 256 KiB (1 MiB frames: one data frame) over a ring of 8 keys"
  echo "per thread, the answer's sizes, CRC, codec and tier checked. GB/s = 1e9 raw tensor"
  echo "bytes per second."
  echo
  echo "What bounds it: the client threads, the daemon and the checks share this machine's"
  echo "$(nproc) CPUs (and the other jobs named by the load average), so throughput can"
  echo "only grow up to about $(nproc) threads and beyond that the extra threads only queue:"
  echo "calls/s stays flat and latency grows with the thread count. Lookup and Put are"
  echo "CPU-bound RPCs (gRPC over the Unix socket plus index work); get_shm moves no bytes"
  echo "through the socket, its cost is one small RPC plus the client's CRC pass over 256 KiB"
  echo "of shared memory. Scaling past 2 threads, and the 8-client Lookup p99 target, are"
  echo "therefore not expected to show here; the issue asks for this curve on a 16-core"
  echo "machine too (run \`bench/scripts/70_concurrency.sh\` there)."
  echo
  echo "$TABLE"
} > bench/results/concurrency.md
