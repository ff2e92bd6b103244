#!/usr/bin/env bash
# Issue 19's sharded drain on a private 3-master Redis Cluster (ports 7101-7103 by
# default, in a temporary directory), torn down at the end:
#
#   bench/cluster-drain.sh [--shards 1,2,3,6] [--n 20000] [--workers 1] [--concurrency 50]
#
# Builds the bench driver in release mode, starts the three masters with
# `--save '' --appendonly no`, joins them with `redis-cli --cluster create`, runs
# `scheduler-bench cluster-drain` (flags passed through) and stops the servers by pid.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE="${CLUSTER_BASE_PORT:-7101}"
PORTS=("$BASE" "$((BASE + 1))" "$((BASE + 2))")
DIR="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT
cargo build --release --locked -q -p scheduler-bench
BIN="${CARGO_TARGET_DIR:-target}/release/scheduler-bench"
for port in "${PORTS[@]}"; do
  mkdir -p "$DIR/$port"
  (cd "$DIR/$port" && exec redis-server --port "$port" --save '' --appendonly no \
    --cluster-enabled yes --cluster-config-file nodes.conf --daemonize no \
    --logfile "$DIR/$port/log") &
  PIDS+=($!)
done
for port in "${PORTS[@]}"; do
  until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done
done
redis-cli --cluster create "${PORTS[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >/dev/null
until redis-cli -p "$BASE" cluster info | grep -q cluster_state:ok; do sleep 0.05; done
URL="redis-cluster://127.0.0.1:${PORTS[0]}?node=127.0.0.1:${PORTS[1]}&node=127.0.0.1:${PORTS[2]}"
NODES="$(IFS=,; echo "${PORTS[*]}")"
"$BIN" --redis-url "$URL" cluster-drain --nodes "$NODES" "$@"
