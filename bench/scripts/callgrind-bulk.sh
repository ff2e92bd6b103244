#!/usr/bin/env bash
# Instructions redis-server spends per job of a bulk enqueue (Scheduler::enqueue_many
# through the bench driver, 1000 jobs per call), counted by valgrind's callgrind.
#
#   cargo build --release -p scheduler-bench
#   bench/scripts/callgrind-bulk.sh [jobs] [port]
#
# Starts its own redis-server under callgrind on PORT (default 6394), warms up with
# 2,000 jobs, zeroes the counters, enqueues JOBS (default 20000) with
# `scheduler-bench enqueue --mode bulk`, dumps, stops the server and prints the
# instructions per job.
set -euo pipefail
jobs=${1:-20000}
port=${2:-6394}
root=$(cd "$(dirname "$0")/../.." && pwd)
bench="$root/target/release/scheduler-bench"
url="redis://127.0.0.1:$port/0"
out=$(mktemp -d)
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$out"' EXIT

valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" \
  redis-server --port "$port" --save "" --appendonly no >/dev/null 2>&1 &
vg=$!
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.2; done
"$bench" --redis-url "$url" enqueue --n 2000 --mode bulk --id-prefix warm- >/dev/null
callgrind_control -z "$vg" >/dev/null 2>&1
"$bench" --redis-url "$url" enqueue --n "$jobs" --mode bulk --id-prefix bulk- >/dev/null
callgrind_control -d "$vg" >/dev/null 2>&1
total=$(grep -m1 -E '^(summary|totals):' "$out/cg.out.1" | awk '{print $2}')
echo "bulk enqueue: $((total / jobs)) instructions per job in redis-server ($jobs jobs, 1000 per call)"
