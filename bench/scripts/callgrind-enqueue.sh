#!/usr/bin/env bash
# Instructions redis-server spends per single-job enqueue (enqueue.lua), counted by
# valgrind's callgrind: repeatable whatever else the machine is doing, unlike time.
#
#   [MODE=evalsha|fcall|one] bench/scripts/callgrind-enqueue.sh [calls] [port]
#
# Starts its own redis-server under callgrind on PORT (default 6397), loads
# enqueue.lua, runs 200 warm-up calls, zeroes the counters, runs CALLS (default
# 2000) calls with distinct ids and a 100-byte payload, dumps, stops the server
# and prints the instructions per call.
# MODE=evalsha (default): SCRIPT LOAD of common.lua + bind(KEYS) + enqueue.lua
# (the EVAL form of scripts.rs), then EVALSHA.
# MODE=fcall: FUNCTION LOAD of a library built as scripts.rs builds it (every
# script wrapped in a function after common.lua; the name here is fixed, not
# the content hash), then FCALL of its enqueue function.
# MODE=one: the same library, FCALL of its enqueue_one function (the first send
# of one job, the path a plain enqueue takes), with its 4 keys and 8 arguments
# (a 9th, the channel scope, only outside database 0; keep_result longer than
# the re-send window: nothing to log).
# enqueue.lua gets the reply log's trailing argument, '' (an 'enqueue' with
# keep_result longer than the re-send window records nothing), as the crate
# sends it.
set -euo pipefail
mode=${MODE:-evalsha}
calls=${1:-2000}
port=${2:-6397}
root=$(cd "$(dirname "$0")/../.." && pwd)
src="$root/scheduler/src/backend/redis/scripts"
# shellcheck source=callgrind-redis.sh
. "$root/bench/scripts/callgrind-redis.sh"
callgrind_redis_start "$port"
case "$mode" in
  evalsha)
    # enqueue.lua changes state: its body runs through common.lua's reply log.
    script="$(cat "$src/common.lua")
bind(KEYS)
local function body(KEYS, ARGV)
$(cat "$src/enqueue.lua")
end
return logged(body, KEYS, ARGV)"
    call=(evalsha "$(redis-cli -p "$port" script load "$script")")
    ;;
  fcall | one)
    # Same shape as scripts.rs' library form (flags as there).
    library="#!lua name=scheduler_bench
$(cat "$src/common.lua")"
    for spec in enqueue: claim:allow-oom complete:allow-oom renew:allow-oom \
      cancel:allow-oom inspect:no-writes dead_letters:allow-oom list:no-writes; do
      name=${spec%%:*} flags=${spec#*:}
      case "$name" in
        # The state-changing scripts run through common.lua's reply log.
        enqueue | complete | cancel | dead_letters)
          library+="
local function body_$name(KEYS, ARGV)
$(cat "$src/$name.lua")
end
local function run_$name(KEYS, ARGV)
bind(KEYS)
return logged(body_$name, KEYS, ARGV)
end" ;;
        *)
          library+="
local function run_$name(KEYS, ARGV)
bind(KEYS)
$(cat "$src/$name.lua")
end" ;;
      esac
      library+="
redis.register_function{function_name = 'scheduler_bench_$name', callback = run_$name${flags:+, flags = {'$flags'\}}}"
    done
    library+="
local function run_enqueue_one(KEYS, ARGV)
$(cat "$src/enqueue_one.lua")
end
redis.register_function{function_name = 'scheduler_bench_enqueue_one', callback = run_enqueue_one}"
    printf '%s\n' "$library" | redis-cli -p "$port" -x function load replace >/dev/null
    call=(fcall scheduler_bench_enqueue)
    ;;
  *) echo "MODE must be evalsha, fcall or one" >&2; exit 2 ;;
esac
payload="[\"noop\",0.0,\"$(printf 'x%.0s' $(seq 100))\"]"
if [ "$mode" = one ]; then
  args=(fcall scheduler_bench_enqueue_one 4 '{q}:due' '{q}:pending' '{q}:active' '{q}:seq'
    'id:__rand_int__' bench_job "$payload" 5 now 0 AbCd1234 10000)
else
  # Every key of the namespace, in keys.rs order (KEY_SUFFIXES in common.lua).
  args=("${call[@]}" 13 '{q}:due' '{q}:pending' '{q}:active' '{q}:leases' '{q}:results'
    '{q}:results_exp' '{q}:dead' '{q}:dead_order' '{q}:seq' '{q}:claim_log' '{q}:claim_exp'
    '{q}:schedules' '{q}:listeners'
    enqueue keep '{q}:wake' '{q}:abort' 10000 ''
    'id:__rand_int__' bench_job "$payload" 5 now 0 AbCd1234 0
    '')
fi
# A call the script refuses (wrong keys or arguments) shows here, not as a silent exit.
probe=("${args[@]}")
probe=("${probe[@]/__rand_int__/probe}")
if ! reply=$(redis-cli -p "$port" "${probe[@]}" 2>&1) || [[ "$reply" == *ERR* ]]; then
  echo "the enqueue call failed: $reply" >&2
  exit 1
fi
redis-benchmark -p "$port" -n 200 -c 1 -r 100000000 --csv "${args[@]}" >/dev/null 2>&1
callgrind_zero
redis-benchmark -p "$port" -n "$calls" -c 1 -r 100000000 --csv "${args[@]}" >/dev/null 2>&1
total=$(callgrind_total)
echo "enqueue ($mode): $((total / calls)) instructions per call in redis-server ($calls calls)"
