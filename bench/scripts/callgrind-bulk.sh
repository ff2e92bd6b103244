#!/usr/bin/env bash
# Instructions redis-server spends per job of a bulk enqueue (Scheduler::enqueue_many
# through the bench driver, 1000 jobs per call), counted by valgrind's callgrind.
#
#   cargo build --release -p scheduler-bench
#   [SCHEDULER_BENCH=path] bench/scripts/callgrind-bulk.sh [jobs] [port]
#
# Starts its own redis-server under callgrind on PORT (default 6394), warms up with
# 2,000 jobs, zeroes the counters, enqueues JOBS (default 20000) with
# `scheduler-bench enqueue --mode bulk`, dumps, stops the server and prints the
# instructions per job.
set -euo pipefail
jobs=${1:-20000}
port=${2:-6394}
root=$(cd "$(dirname "$0")/../.." && pwd)
bench="${SCHEDULER_BENCH:-$root/target/release/scheduler-bench}"
url="redis://127.0.0.1:$port/0"
# shellcheck source=callgrind-redis.sh
. "$root/bench/scripts/callgrind-redis.sh"
callgrind_redis_start "$port"
"$bench" --redis-url "$url" enqueue --n 2000 --mode bulk --id-prefix warm- >/dev/null
callgrind_zero
"$bench" --redis-url "$url" enqueue --n "$jobs" --mode bulk --id-prefix bulk- >/dev/null
total=$(callgrind_total)
echo "bulk enqueue: $((total / jobs)) instructions per job in redis-server ($jobs jobs, 1000 per call)"
