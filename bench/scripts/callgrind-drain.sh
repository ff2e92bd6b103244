#!/usr/bin/env bash
# Instructions redis-server spends per drained job, with a far-future backlog
# of BACKLOG jobs or none: callgrind counts work, so this tells extra work from
# memory effects (cache misses) that only wall time shows.
#
#   cargo build --release -p scheduler-bench
#   [SCHEDULER_BENCH=path] [KEEP=dir] [ZSET_LISTPACK_ENTRIES=n] \
#     bench/scripts/callgrind-drain.sh BACKLOG [jobs] [port]
#
# Starts its own redis-server under callgrind on PORT (default 6398), preloads
# BACKLOG jobs deferred by a day and JOBS (default 5000) immediate ones, zeroes
# the counters, runs one `scheduler-bench worker --concurrency 50` until it has
# done JOBS, dumps and prints instructions per drained job. 200,000 backlog jobs
# take about a minute and a half. SCHEDULER_BENCH names the driver (default:
# target/release/scheduler-bench); KEEP copies the profile there, for
# `callgrind_annotate --inclusive=yes KEEP/cg.out.1` (redis-server's exported
# symbols name most of its functions); ZSET_LISTPACK_ENTRIES sets that Redis
# setting before the drain (0: every sorted set a skiplist).
set -euo pipefail
backlog=${1:?backlog size}
jobs=${2:-5000}
port=${3:-6398}
root=$(cd "$(dirname "$0")/../.." && pwd)
bench="${SCHEDULER_BENCH:-$root/target/release/scheduler-bench}"
url="redis://127.0.0.1:$port/0"
# shellcheck source=callgrind-redis.sh
. "$root/bench/scripts/callgrind-redis.sh"
callgrind_redis_start "$port"
if [ "$backlog" -gt 0 ]; then
  "$bench" --redis-url "$url" enqueue --n "$backlog" --mode preload --delay-s 86400 --id-prefix far- >/dev/null
fi
"$bench" --redis-url "$url" enqueue --n "$jobs" --mode preload --id-prefix now- >/dev/null
if [ -n "${ZSET_LISTPACK_ENTRIES:-}" ]; then
  redis-cli -p "$port" config set zset-max-listpack-entries "$ZSET_LISTPACK_ENTRIES" >/dev/null
fi
callgrind_zero
setsid "$bench" --redis-url "$url" worker --concurrency 50 --expect "$jobs" >"$out/worker.out" 2>/dev/null &
worker=$!
for _ in $(seq 600); do grep -q '"done"' "$out/worker.out" && break; sleep 0.2; done
total=$(callgrind_total)
if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$out/cg.out.1" "$KEEP/"; fi
kill -TERM -- "-$worker" 2>/dev/null || true
wait "$worker" 2>/dev/null || true
echo "backlog $backlog: $((total / jobs)) instructions per drained job in redis-server"
