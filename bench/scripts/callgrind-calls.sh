#!/usr/bin/env bash
# Instructions redis-server spends per call of the scripts a drain and a cancel
# run, called directly (FCALL) rather than through a worker, so that a claim's
# cost is told from a completion's and a call's fixed cost from its per-job
# cost (run it with two batch sizes).
#
#   cargo build --release -p scheduler-bench
#   [SCHEDULER_BENCH=path] [PYTHON=python-with-redis-py] [KEEP=dir] \
#     bench/scripts/callgrind-calls.sh [jobs] [batch] [port]
#
# Starts its own redis-server under callgrind on PORT (default 6398); preloads
# JOBS (default 5000) due jobs with the driver (which loads the function
# library); claims them all in claims of BATCH (default 25) jobs, then records
# each batch as completed; cancels JOBS jobs deferred by an hour (each removes
# one) and JOBS ids that hold nothing; sends JOBS PINGs. Prints instructions
# per job for the claims and the completions, per call for the rest. Needs
# Python with redis-py: the peer harness's venv has it
# (PYTHON=/tmp/scheduler-bench/.venv/bin/python after `run.sh setup`). KEEP
# copies the profiles there (one per phase, named in their `desc: Trigger`
# line) for `callgrind_annotate --inclusive=yes`.
set -euo pipefail
jobs=${1:-5000}
batch=${2:-25}
port=${3:-6398}
root=$(cd "$(dirname "$0")/../.." && pwd)
bench="${SCHEDULER_BENCH:-$root/target/release/scheduler-bench}"
python="${PYTHON:-python3}"
# shellcheck source=callgrind-redis.sh
. "$root/bench/scripts/callgrind-redis.sh"
callgrind_redis_start "$port"
"$bench" --redis-url "redis://127.0.0.1:$port/0" enqueue --n "$jobs" --mode preload --id-prefix p- >/dev/null
"$bench" --redis-url "redis://127.0.0.1:$port/0" enqueue --n "$jobs" --mode preload --delay-s 3600 \
  --id-prefix c- >/dev/null
# The script zeroes the counters, then dumps them after each phase (a dump
# zeroes them again); the dumps are read in order below.
"$python" - "$port" "$jobs" "$batch" "$vg" <<'PY'
import subprocess, sys
import redis

port, jobs, batch, vg = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
r = redis.Redis(port=port)
lib = r.execute_command('FUNCTION', 'LIST')[0][1].decode()
# The namespace's keys in KEYS order (keys.rs), for the default namespace.
keys = ['{scheduler}:' + s for s in ('due pending active leases results results_exp dead dead_order '
                                      'seq claim_log claim_exp schedules listeners').split()]
day_ms, cap = 86400000, 10000


def zero():
    subprocess.run(['callgrind_control', '-z', vg], check=True, capture_output=True)


def dump(name):
    subprocess.run(['callgrind_control', '-d', name, vg], check=True, capture_output=True)


zero()
claimed, nonce = [], 0
while True:
    nonce += 1
    # claim.lua's arguments: worker, max, lease, keep_result, cap, nonce, retry,
    # queues ('' = default), tasks, limits, wake channel, global limits.
    reply = r.execute_command('FCALL', f'{lib}_claim', len(keys), *keys, 'w-1', batch, 600000, day_ms,
                              cap, f'n{nonce}', '', '', '', '', '{scheduler}:wake', '')
    if not reply[2]:
        break
    claimed.extend((job[0], job[3], job[4]) for job in reply[2])
dump('claim')
assert len(claimed) == jobs, len(claimed)
for i in range(0, jobs, batch):
    args = [day_ms, cap, '{scheduler}:wake']
    for (job_id, generation, attempt) in claimed[i:i + batch]:
        args += [job_id, generation, attempt, 'ok', 'null', 0]
    codes = r.execute_command('FCALL', f'{lib}_complete', len(keys), *keys, *args)
    assert all(code == b'completed' for code in codes), codes
dump('complete')
# A cancel as the client sends it: cancel_one with the keys it declares
# (keys.rs CANCEL_KEYS), or, in a library older than it, cancel with all.
functions = [f[1].decode() for f in r.execute_command('FUNCTION', 'LIST')[0][5]]
if f'{lib}_cancel_one' in functions:
    cancel_fn = f'{lib}_cancel_one'
    cancel_keys = ['{scheduler}:' + s for s in 'due pending active results results_exp listeners'.split()]
else:
    cancel_fn, cancel_keys = f'{lib}_cancel', keys
# cancel.lua's arguments: id, generation, keep_result, abort channel, task,
# then the reply log's request ('<ttl ms>:<request id>', as the client sends it).
for i in range(jobs):
    reply = r.execute_command('FCALL', cancel_fn, len(cancel_keys), *cancel_keys, f'c-{i}', '', day_ms,
                              '{scheduler}:abort', 'bench_job', f'30000:{i:032x}')
    assert reply[0] == b'removed', reply
dump('cancel-removed')
for i in range(jobs):
    r.execute_command('FCALL', cancel_fn, len(cancel_keys), *cancel_keys, f'x-{i}', '', day_ms,
                      '{scheduler}:abort', 'bench_job', f'30000:{jobs + i:032x}')
dump('cancel-missing')
for _ in range(jobs):
    r.ping()
dump('ping')
PY
if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$out"/cg.out.* "$KEEP"/; fi
for f in "$out"/cg.out.*; do
  name=$(grep -m1 '^desc: Trigger' "$f" | sed 's/.*dump //')
  total=$(grep -m1 -E '^(summary|totals):' "$f" | awk '{print $2}')
  case "$name" in
    claim | complete) echo "$name (batches of $batch): $((total / jobs)) instructions per job" ;;
    *) echo "$name: $((total / jobs)) instructions per call" ;;
  esac
done
