#!/usr/bin/env bash
# Instructions redis-server spends per drained job, with a far-future backlog
# of BACKLOG jobs or none: callgrind counts work, so this tells extra work from
# memory effects (cache misses) that only wall time shows.
#
#   cargo build --release -p scheduler-bench
#   bench/scripts/callgrind-drain.sh BACKLOG [jobs] [port]
#
# Starts its own redis-server under callgrind on PORT (default 6398), preloads
# BACKLOG jobs deferred by a day and JOBS (default 5000) immediate ones, zeroes
# the counters, runs one `scheduler-bench worker --concurrency 50` until it has
# done JOBS, dumps and prints instructions per drained job. 200,000 backlog jobs
# take about a minute and a half.
set -euo pipefail
backlog=${1:?backlog size}
jobs=${2:-5000}
port=${3:-6398}
root=$(cd "$(dirname "$0")/../.." && pwd)
bench="$root/target/release/scheduler-bench"
url="redis://127.0.0.1:$port/0"
out=$(mktemp -d)
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$out"' EXIT

valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" \
  redis-server --port "$port" --save "" --appendonly no >/dev/null 2>&1 &
vg=$!
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.2; done
if [ "$backlog" -gt 0 ]; then
  "$bench" --redis-url "$url" enqueue --n "$backlog" --mode preload --delay-s 86400 --id-prefix far- >/dev/null
fi
"$bench" --redis-url "$url" enqueue --n "$jobs" --mode preload --id-prefix now- >/dev/null
callgrind_control -z "$vg" >/dev/null 2>&1
setsid "$bench" --redis-url "$url" worker --concurrency 50 --expect "$jobs" >"$out/worker.out" 2>/dev/null &
worker=$!
for _ in $(seq 600); do grep -q '"done"' "$out/worker.out" && break; sleep 0.2; done
callgrind_control -d "$vg" >/dev/null 2>&1
kill -TERM -- "-$worker" 2>/dev/null || true
wait "$worker" 2>/dev/null || true
total=$(grep -m1 -E '^(summary|totals):' "$out/cg.out.1" | awk '{print $2}')
echo "backlog $backlog: $((total / jobs)) instructions per drained job in redis-server"
