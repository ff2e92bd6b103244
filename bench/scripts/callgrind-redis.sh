# Sourced by the callgrind-*.sh scripts: a redis-server under valgrind's callgrind.
#
#   callgrind_redis_start PORT   starts it on PORT with an empty dataset, waits until it
#                                answers, and sets $vg (its pid) and $out (a temporary
#                                folder removed, with the server, when the script exits)
#   callgrind_zero               zeroes the counters (what ran so far is not counted)
#   callgrind_total              dumps the counters and prints the instructions counted
#                                since callgrind_zero
callgrind_redis_start() {
  local port=$1
  out=$(mktemp -d)
  # shellcheck disable=SC2064 # the port and folder are fixed now, on purpose
  trap "redis-cli -p '$port' shutdown nosave >/dev/null 2>&1 || true; rm -rf '$out'" EXIT
  valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" \
    redis-server --port "$port" --save "" --appendonly no >/dev/null 2>&1 &
  vg=$!
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.2; done
}

callgrind_zero() {
  callgrind_control -z "$vg" >/dev/null 2>&1
}

callgrind_total() {
  callgrind_control -d "$vg" >/dev/null 2>&1
  grep -m1 -E '^(summary|totals):' "$out/cg.out.1" | awk '{print $2}'
}
