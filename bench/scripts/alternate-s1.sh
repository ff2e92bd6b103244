#!/usr/bin/env bash
# S1 sequential, ours and apalis' drivers alternately on one private Redis, so
# that both meet the same machine noise: ROUNDS rounds of N jobs each.
#
#   bench/scripts/alternate-s1.sh APALIS_BENCH [rounds] [n] [port]
#
# APALIS_BENCH is the apalis driver the harness builds
# (e.g. /tmp/scheduler-bench/apalis/target/release/apalis-bench). The Redis on
# PORT (default 6396) must be one you started for this: it is flushed.
set -euo pipefail
apalis=${1:?path to the apalis driver}
rounds=${2:-5}
n=${3:-20000}
port=${4:-6396}
root=$(cd "$(dirname "$0")/../.." && pwd)
ours="$root/target/release/scheduler-bench"
url="redis://127.0.0.1:$port/0"
rate() { python3 -c "import json,sys; print(round($n / json.load(sys.stdin)['elapsed_s']))"; }
for i in $(seq "$rounds"); do
  redis-cli -p "$port" flushall >/dev/null
  s=$("$ours" --redis-url "$url" enqueue --n "$n" --mode seq --id-prefix "s$i-" | rate)
  redis-cli -p "$port" flushall >/dev/null
  a=$("$apalis" --redis-url "$url" enqueue --n "$n" --mode seq --id-prefix "a$i-" | rate)
  echo "round $i: scheduler $s apalis $a jobs/s"
done
