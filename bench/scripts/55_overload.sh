#!/usr/bin/env bash
# Overload: 1000 clients (100 hostile) against a real adaptcached started on its defaults.
# Writes bench/results/overload.{md,csv}.
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/../.."
BIN="$BUILD/bin/overload_bench"
[ -x "$BIN" ] || { echo "missing $BIN (build it first)"; exit 1; }
ARGS=(--daemon "$BUILD/bin/adaptcached" --clients 1000 --misbehaving 100 --deadline-s 60 --runs 3 --seed 1)
mkdir -p bench/results
rm -f bench/results/overload.csv
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
set +e
TABLE=$("$BIN" "${ARGS[@]}" --csv bench/results/overload.csv 2> /tmp/overload_bench.err)
RC=$?
set -e
cat /tmp/overload_bench.err >&2
echo "$TABLE"
{
  echo "# Overload: 1000 clients, 100 hostile"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- command: \`$BIN ${ARGS[*]}\` (bench/scripts/55_overload.sh)"
  echo "- machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs; $(uname -srm)"
  echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- load average before/after: $LOAD0 / $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- exit status: $RC (0 = every good client finished in its deadline, no Health failure, nothing evicted)"
  echo
  echo "$TABLE"
  echo
  echo "The daemon runs on its embedded defaults (2 GiB pool, no SSD) pinned to half the CPUs; the"
  echo "clients, each on a connection of its own, on the other half. Hostile: 34 stalled Puts (header +"
  echo "64 KiB, then nothing), 33 Gets of an 8 MiB entry that never read, 33 header-only Puts of 128 MiB"
  echo "entries; each reconnects 10 ms after the daemon refuses or cancels it. Good: 900 clients started"
  echo "together 1 s later: Connect, Put 256 KiB, Lookup, streamed Get compared byte for byte, 60 s"
  echo "deadline with the client's overload retries. Health: a separate prober process (real-time"
  echo "priority), one call every 5 ms, 1 s deadline, no retries. RSS: the daemon's VmRSS maximum"
  echo "(includes the touched 2 GiB shared-memory pool), in brackets its anonymous part (staging,"
  echo "gRPC buffers). Evictions: 512 MiB of sentinel entries sit in a pool with room for them and"
  echo "every good Put; an eviction or a lost sentinel would be an unfinished Put's doing."
  echo
  echo "stderr of the run:"
  echo
  echo '```'
  cat /tmp/overload_bench.err
  echo '```'
} > bench/results/overload.md
exit $RC
