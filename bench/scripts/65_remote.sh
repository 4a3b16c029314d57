#!/usr/bin/env bash
# Issue-16 benchmark: the remote tier (Redis Cluster over loopback) against the SSD tier
# and a plain hiredis client. Starts its own Redis Cluster (3 masters, no replicas, no
# persistence) and three adaptcached:
#   A    no SSD, --remote-write-mode write-through: the writer
#   B    no SSD, --remote-write-mode off, --ssd-promote-after-hits 0: every Get of A's
#        entries is a remote hit (DRAM never keeps them)
#   ssd  SSD tier under /var/tmp, no remote tier, --ssd-promote-after-hits 0; entries put
#        with durable=true, then the daemon is restarted so its DRAM is empty
# runs bench/remote_bench.cc (put phase, restart, measure phase) and writes
# bench/results/remote.{md,csv}. Everything it starts is stopped and every temporary
# directory removed on exit, failed or not; any failure exits non-zero.
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/../.."
BIN="$BUILD/bin"
for b in adaptcached remote_bench; do
  [ -x "$BIN/$b" ] || { echo "65_remote.sh: missing $BIN/$b (build it first)" >&2; exit 1; }
done
for t in redis-server redis-cli; do
  command -v "$t" >/dev/null || { echo "65_remote.sh: $t not installed (apt-get install redis-server)" >&2; exit 1; }
done
REPS=${REMOTE_REPS:-15}
WARMUP=${REMOTE_WARMUP:-3}

WORK=$(mktemp -d /var/tmp/adaptcache-remotebench-XXXXXX)  # Redis dirs, the SSD tier, logs
SHM=$(mktemp -d /dev/shm/adaptcache-remotebench-XXXXXX)    # pools, sockets, ready files
REDIS_PIDS=()
declare -A DPID=()
OK=0

stop_pid() {  # SIGTERM, then SIGKILL after 15 s; reaps it
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  set +e
  for n in "${!DPID[@]}"; do stop_pid "${DPID[$n]}"; done
  for p in "${REDIS_PIDS[@]}"; do stop_pid "$p"; done
  if [ "$OK" != 1 ]; then
    echo "65_remote.sh: FAILED (exit $rc); log tails:" >&2
    for f in "$WORK"/*.log "$WORK"/redis-*/redis.log; do
      [ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
    done
  fi
  rm -rf "$WORK" "$SHM"
  [ "$OK" = 1 ] || exit $((rc == 0 ? 1 : rc))
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 20000))
    # the cluster bus uses port + 10000
    if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && ! (exec 3<>/dev/tcp/127.0.0.1/$((p + 10000))) 2>/dev/null \
       && [[ " ${PORTS[*]:-} " != *" $p "* ]]; then
      echo "$p"; return
    fi
  done
  echo "no free port" >&2; return 1
}

# --- Redis Cluster: 3 masters, no replicas
PORTS=()
for i in 1 2 3; do PORTS+=("$(free_port)"); done
for p in "${PORTS[@]}"; do
  d="$WORK/redis-$p"
  mkdir -p "$d"
  redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes --cluster-config-file "$d/nodes.conf" \
    --cluster-node-timeout 5000 --save '' --appendonly no --dir "$d" --logfile "$d/redis.log" \
    --daemonize no >/dev/null 2>&1 &
  REDIS_PIDS+=($!)
done
for p in "${PORTS[@]}"; do
  for _ in $(seq 1 200); do
    [ "$(redis-cli -p "$p" ping 2>/dev/null)" = PONG ] && break
    sleep 0.05
  done
  [ "$(redis-cli -p "$p" ping 2>/dev/null)" = PONG ] || { echo "redis-server on $p did not start" >&2; exit 1; }
done
NODES=$(printf '127.0.0.1:%s,' "${PORTS[@]}"); NODES=${NODES%,}
redis-cli --cluster create ${NODES//,/ } --cluster-replicas 0 --cluster-yes >"$WORK/cluster-create.log" 2>&1 \
  || { cat "$WORK/cluster-create.log" >&2; exit 1; }
for p in "${PORTS[@]}"; do
  for _ in $(seq 1 300); do
    redis-cli -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' && break
    sleep 0.1
  done
  redis-cli -p "$p" cluster info | grep -q '^cluster_state:ok' || { echo "cluster not ok on $p" >&2; exit 1; }
done

# --- daemons
PREFIX="bench65:$$:"
REMOTE=(--remote-nodes "$NODES" --remote-key-prefix "$PREFIX" --remote-timeout-ms 1000)
COMMON=(--metrics-listen 127.0.0.1:0 --shm-dir "$SHM" --max-entry-bytes 32MiB --log-level warn --policy none)
ARGS_A=(--pool-size 256MiB --ssd-dir "" "${REMOTE[@]}" --remote-write-mode write-through)
ARGS_B=(--pool-size 1GiB --ssd-dir "" --ssd-promote-after-hits 0 "${REMOTE[@]}" --remote-write-mode off)
ARGS_SSD=(--pool-size 1GiB --ssd-dir "$WORK/ssd" --ssd-segment-bytes 64MiB --ssd-segment-count 4
          --ssd-promote-after-hits 0)
start_daemon() {  # name args...
  local n=$1; shift
  rm -f "$SHM/$n.ready"
  "$BIN/adaptcached" --socket "$SHM/$n.sock" --pool-name "rb-$n" --ready-file "$SHM/$n.ready" "${COMMON[@]}" "$@" \
    >>"$WORK/$n.log" 2>&1 &
  DPID[$n]=$!
}
wait_ready() {
  local n=$1
  for _ in $(seq 1 1200); do  # up to 60 s: the pool is populated and locked at start
    [ -f "$SHM/$n.ready" ] && return 0
    kill -0 "${DPID[$n]}" 2>/dev/null || break
    sleep 0.05
  done
  echo "adaptcached $n did not start" >&2; return 1
}
start_daemon a "${ARGS_A[@]}"
start_daemon ssd "${ARGS_SSD[@]}"
wait_ready a
wait_ready ssd

BENCH=("$BIN/remote_bench" --nodes "$NODES" --prefix "$PREFIX" --ssd "$SHM/ssd.sock")
echo "== put phase"
"${BENCH[@]}" --phase put --a "$SHM/a.sock"
# A's work is done (Redis holds its entries); the SSD daemon restarts with empty DRAM.
stop_pid "${DPID[a]}"; unset 'DPID[a]'
stop_pid "${DPID[ssd]}"; unset 'DPID[ssd]'
start_daemon ssd "${ARGS_SSD[@]}"
start_daemon b "${ARGS_B[@]}"
wait_ready ssd
wait_ready b

echo "== measure phase"
mkdir -p bench/results
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
CSV_TMP="$WORK/remote.csv"
RPIDS=$(IFS=+; echo "${REDIS_PIDS[*]}")
TABLE=$("${BENCH[@]}" --phase measure --b "$SHM/b.sock" --reps "$REPS" --warmup "$WARMUP" --csv "$CSV_TMP" \
  --pids "b=${DPID[b]},ssd=${DPID[ssd]},redis=$RPIDS")
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
echo "$TABLE"
# The daemons must have logged no error (warnings such as the remote tier's are errors here).
if grep -E '\[(warning|error|critical)\]' "$WORK"/{a,b,ssd}.log >/dev/null 2>&1; then
  echo "a daemon logged a warning or error:" >&2
  grep -E '\[(warning|error|critical)\]' "$WORK"/{a,b,ssd}.log >&2
  exit 1
fi

DIRTY=""
q() { local out="" a; for a in "$@"; do [ -z "$a" ] && a='""'; out+="$a "; done; echo "${out% }"; }  # args as typed
[ -n "$(git status --porcelain 2>/dev/null)" ] && DIRTY=" (working tree dirty: uncommitted changes, including the remote tier itself, were built)"
cp "$CSV_TMP" bench/results/remote.csv
{
  echo "# Remote tier benchmark (issue 16): Redis Cluster hits vs SSD hits vs plain hiredis"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- command: \`bash bench/scripts/65_remote.sh $BUILD\` -> \`remote_bench --phase put\`, restart, \`remote_bench --phase measure --reps $REPS --warmup $WARMUP\`"
  echo "- machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs, $(free -g | awk '/Mem:/{print $2}') GiB RAM; $(uname -srm)"
  echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$DIRTY"
  echo "- redis: $(redis-server --version | cut -d' ' -f1-3); hiredis $(pkg-config --modversion hiredis 2>/dev/null || echo '?')"
  echo "- load average (1/5/15 min) before: $LOAD_BEFORE, after: $LOAD_AFTER (other jobs may share the machine)"
  echo
  echo "Set-up, all on loopback on this one machine (the daemons, Redis and the client share its $(nproc) CPUs):"
  echo
  echo "- Redis Cluster: 3 masters, **no replicas**, \`--save '' --appendonly no\`, started by the script"
  echo "  (redis-server + \`redis-cli --cluster create\`)."
  echo "- daemon A (writer): \`$(q "${ARGS_A[@]}")\`"
  echo "- daemon B (remote reader): \`$(q "${ARGS_B[@]}")\` -- B holds none of the entries, so every Get"
  echo "  is a remote GET, served through an anonymous DRAM lease (never committed to DRAM)."
  echo "- SSD daemon: \`$(q "${ARGS_SSD[@]}")\` under /var/tmp (this VM's virtual disk, O_DIRECT); entries"
  echo "  put with durable=true, then the daemon restarted, so every Get is an SSD read."
  echo "- all daemons: \`$(q "${COMMON[@]}")\` (UDS client sockets)."
  echo
  echo "Entries: bf16 KV \`[2, layers, tokens, 8, 128]\`, layers x tokens = 256 (1 MiB raw) and 4096"
  echo "(16 MiB raw), random values in [-2, 2); \`size\` is the raw tensor size. Each codec's entry is"
  echo "put on A with \`PutSpec::codec\`; the stored container (compressed for the lossy codecs) is"
  echo "what Redis holds and what every path moves. **GB/s = 1e9 container (stored) bytes per"
  echo "second**, i.e. the bytes actually transferred; for \`lookup\` it is over the 64-byte header"
  echo "(GETRANGE 0 63), which is all a remote lookup fetches. ms = one operation, median of $REPS"
  echo "repetitions after $WARMUP warm-up ones; the paths run interleaved in every repetition."
  echo
  echo "Ops and paths:"
  echo
  echo "- \`get\` (headline): \`Client::GetShmInto\` = GetShm (lease in the daemon's shared pool)"
  echo "  + CopyOut into the caller's buffer with its CRC check + lease release (batched by 16, the"
  echo "  client default). This is the path a local engine connector uses."
  echo "- \`get-grpc\`: \`Client::GetInto\`, the streamed gRPC Get into the caller's buffer (1 MiB"
  echo "  frames over the UDS) with its CRC check."
  echo "- \`lookup\`: \`Client::Lookup\` of the key; on B one pipelined GETRANGE 0 63 round trip (the"
  echo "  header, CRC-checked); on the SSD daemon the index in memory (the head was learnt during warm-up)."
  echo "- \`adaptcache-remote\`: daemon B; \`adaptcache-ssd\`: the SSD daemon."
  echo "- \`redis-plain\`: a plain hiredis client to the master that owns the key: GET, then memcpy"
  echo "  of the reply into the caller's buffer (for lookup: GETRANGE 0 63). The floor for what the"
  echo "  remote tier does, which is the same hiredis call."
  echo "- \`redis-resp\` (get only): bench/kvstore_resp.h reading the bulk reply straight from the"
  echo "  socket into the caller's buffer, no intermediate buffer: the socket's own floor."
  echo
  echo "Every Get's bytes are compared with the container that was put (memcmp, after the timed"
  echo "region; the buffer is zeroed again before the next one) and the tier the daemon reports is"
  echo "checked (remote for B, ssd for the SSD daemon); the put phase checked that A and the SSD"
  echo "daemon stored exactly the container this benchmark encodes locally (size and CRC32C)."
  echo
  echo "$TABLE"
  cat <<'EOF_NOTES'

## What bounds the remote get

There is no network here: Redis, the daemons and the client share one 2-CPU VM over
loopback, so a remote hit is bounded by copies, checks and CPU, not by a link. A raw remote
hit (`get`, shm) moves the container through these steps, each serial with the next once
the last byte is in:

1. Redis writes the value into the loopback socket (a kernel copy, on Redis's CPU time);
2. in daemon B, hiredis reads the socket 16 KiB at a time and appends to its reader buffer,
   then copies the whole bulk string into a freshly allocated reply object (hiredis 0.14
   cannot read a bulk reply into a caller's buffer): two user-space copies, and for 16 MiB
   fresh heap pages the kernel faults in and zeroes unless malloc reuses them (the minor
   faults per get in the CPU table show which happened in this run, for B and for the
   redis-plain client alike: it depends on the process's glibc malloc state, and in runs
   where both buffers were fresh pages on every GET, ~8100 faults per 16 MiB GET, that
   path was ~10 ms slower);
3. the remote tier parses the container and CRCs its payload, copies it into a DRAM extent
   it allocates for this Get, and the tier manager's `DescribeFromHeader` CRCs the whole
   container once more;
4. the GetShm reply leases that extent to the client (anonymously: with
   `--ssd-promote-after-hits 0` it is freed on release and the next Get goes to Redis
   again), and the client's `CopyOut` copies it into the caller's buffer and CRCs the copy.
   The streamed `get-grpc` replaces this step by 1 MiB gRPC frames over the UDS (more
   copies and framing), which is why it is slower than the shm get.

`redis-plain` is steps 1-2 plus one memcpy into the caller's buffer (the same hiredis call
the remote tier makes); `redis-resp` is step 1 and the socket read alone. "Where a raw remote
get's time goes" above splits the gap with this run's numbers: at 16 MiB the extra passes
over the container and the RPC explain part of it, and the rest shows as more CPU in B than
a plain hiredis client spends per GET, more CPU in the client than its CopyOut, and three
busy processes (Redis, B, the client) taking turns on 2 CPUs; at 1 MiB the copies are ~0.1
ms and per-request costs dominate (a unary RPC round trip, and the daemon's handling of a
Get: B's CPU per get exceeds a plain hiredis client's per GET). The SSD daemon lands close
to the remote one because on this VM its read (O_DIRECT from the virtual disk into a temporary DRAM extent,
then the same checks and CopyOut) costs about what Redis's loopback transfer does; with
Redis on another host the remote get adds the link's time (16 MiB at 25 Gbit/s is ~5.4 ms
on the wire alone), and a real NVMe drive would move the SSD figure. The lossy codecs move
their compressed container, so their remote hit time follows the stored bytes (see the
compressed / raw table; a lookup moves 64 bytes whatever the codec, so its ratio is ~1 and
noise); decoding is not part of a get.

Where the remote get could save time (not changed here: outside this benchmark's files):
reading the bulk reply straight into the DRAM extent (hiredis's `createString` reply hook,
or a RESP reader like bench/kvstore_resp.h) would drop two copies and the page faults;
folding the tier manager's whole-container CRC into the remote tier's check
(Crc32cCombine of the header's and the payload's CRCs) would drop one pass.
EOF_NOTES
} > bench/results/remote.md
OK=1
echo "wrote bench/results/remote.md and bench/results/remote.csv"
