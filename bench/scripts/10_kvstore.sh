#!/usr/bin/env bash
# Issue-2 benchmark: adaptcached Put/Get throughput (gRPC bytes and shared memory) vs
# Redis, and Lookup latency with 100k entries. Starts its own adaptcached and
# redis-server (loopback TCP on a free port, plus a unix socket; no persistence), prints
# a table and writes bench/results/kvstore.{md,csv}.
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/../.."
BIN="$BUILD/bin"
for b in adaptcached kvstore_bench; do
  [ -x "$BIN/$b" ] || { echo "missing $BIN/$b (build it first)"; exit 1; }
done
command -v redis-server >/dev/null || { echo "redis-server not installed (make deps)"; exit 1; }

WORK=$(mktemp -d /dev/shm/adaptcache-kvbench-XXXXXX)
DAEMON_PID=""
REDIS_PID=""
cleanup() {
  [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null || true
  [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  local p
  for _ in $(seq 1 100); do
    p=$((20000 + RANDOM % 20000))
    if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "$p"; return; fi
  done
  echo "no free port" >&2; exit 1
}

POOL=${KVSTORE_POOL:-2GiB}
"$BIN/adaptcached" --socket "$WORK/ac.sock" --metrics-listen 127.0.0.1:0 --pool-size "$POOL" \
  --max-entry-bytes 32MiB --shm-dir "$WORK" --pool-name bench --ready-file "$WORK/ready" \
  --ssd-enabled false --log-level warn >"$WORK/daemon.log" 2>&1 &  # DRAM only, as issue 2 measures
DAEMON_PID=$!
REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --unixsocket "$WORK/redis.sock" --unixsocketperm 700 \
  --save '' --appendonly no --daemonize no --logfile "$WORK/redis.log" &
REDIS_PID=$!
for _ in $(seq 1 1200); do  # up to 60 s: the pool is populated and locked at start
  [ -f "$WORK/ready" ] && [ -S "$WORK/redis.sock" ] && break
  sleep 0.05
done
[ -f "$WORK/ready" ] || { echo "adaptcached did not start:"; cat "$WORK/daemon.log"; exit 1; }
[ -S "$WORK/redis.sock" ] || { echo "redis-server did not start:"; cat "$WORK/redis.log"; exit 1; }

ARGS=(--target "$WORK/ac.sock" --redis-port "$REDIS_PORT" --redis-unix "$WORK/redis.sock" --reps 7
      --entries-1m 64 --entries-16m 16 --lookup-entries 100000 --lookup-calls 5000)
mkdir -p bench/results
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
TABLE=$("$BIN/kvstore_bench" "${ARGS[@]}" --csv bench/results/kvstore.csv)
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
echo "$TABLE"
{
  echo "# KV store benchmark (issue 2): adaptcached vs Redis"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- command: \`bench/scripts/10_kvstore.sh $BUILD\` -> \`kvstore_bench ${ARGS[*]}\`"
  echo "- machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs, $(free -g | awk '/Mem:/{print $2}') GiB RAM; $(uname -srm)"
  echo "- redis: $(redis-server --version | cut -d' ' -f1-3), \`--save '' --appendonly no\`; adaptcached pool $POOL (/dev/shm)"
  echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- load average (1/5/15 min) before: $LOAD_BEFORE, after: $LOAD_AFTER (other jobs share the machine)"
  echo
  echo "GB/s = 1e9 raw tensor bytes per second, one client thread, medians of 7 repetitions (the variants of a phase run interleaved in each repetition)"
  echo "over 64 distinct 1 MiB entries / 16 distinct 16 MiB entries (bf16, 8 KV heads x 128)."
  echo "Every Get lands in a caller-owned buffer and (adaptcache) is CRC-verified there;"
  echo "shm Get = Get(TRANSFER_SHM) lease + copy out of the mapping + CRC + release (batched"
  echo "by 16; 'rel=1' releases each lease with its own RPC). Redis stores the same container"
  echo "bytes; its GET reply is read straight into the caller buffer by a minimal RESP client."
  echo "The daemon, Redis and the client share the same 2 CPUs."
  echo "The machine may be shared with other jobs (see the load average): figures then vary"
  echo "2-3x between runs, so compare the ratios within one run. 'redis unix' is Redis over a"
  echo "Unix socket, the like-for-like transport for adaptcached's UDS; the issue's baseline"
  echo "is Redis over loopback TCP ('vs redis tcp')."
  echo
  echo "$TABLE"
} > bench/results/kvstore.md
