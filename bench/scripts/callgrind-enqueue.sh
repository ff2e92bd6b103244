#!/usr/bin/env bash
# Instructions redis-server spends per single-job enqueue (enqueue.lua), counted by
# valgrind's callgrind: repeatable whatever else the machine is doing, unlike time.
#
#   bench/scripts/callgrind-enqueue.sh [calls] [port]
#
# Starts its own redis-server under callgrind on PORT (default 6397), loads
# common.lua + enqueue.lua, runs 200 warm-up calls, zeroes the counters, runs
# CALLS (default 2000) EVALSHA calls with distinct ids and a 100-byte payload,
# dumps, stops the server and prints the instructions per call.
set -euo pipefail
calls=${1:-2000}
port=${2:-6397}
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mktemp -d)
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$out"' EXIT

script="$(cat "$root/scheduler/src/scripts/common.lua")
$(cat "$root/scheduler/src/scripts/enqueue.lua")"
valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" \
  redis-server --port "$port" --save "" --appendonly no >/dev/null 2>&1 &
vg=$!
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.2; done
sha=$(redis-cli -p "$port" script load "$script")
payload="[\"noop\",0.0,\"$(printf 'x%.0s' $(seq 100))\"]"
args=(evalsha "$sha" 11 '{q}:due' '{q}:pending' '{q}:active' '{q}:leases' '{q}:results'
  '{q}:results_exp' '{q}:dead' '{q}:dead_order' '{q}:seq' '{q}:claim_log' '{q}:claim_exp'
  enqueue keep '{q}:wake' '{q}:abort' 10000
  'id:__rand_int__' bench_job "$payload" 5 now 0 AbCd1234 0)
redis-benchmark -p "$port" -n 200 -c 1 -r 100000000 --csv "${args[@]}" >/dev/null 2>&1
callgrind_control -z "$vg" >/dev/null 2>&1
redis-benchmark -p "$port" -n "$calls" -c 1 -r 100000000 --csv "${args[@]}" >/dev/null 2>&1
callgrind_control -d "$vg" >/dev/null 2>&1
total=$(grep -m1 -E '^(summary|totals):' "$out/cg.out.1" | awk '{print $2}')
echo "enqueue.lua: $((total / calls)) instructions per call in redis-server ($calls calls)"
