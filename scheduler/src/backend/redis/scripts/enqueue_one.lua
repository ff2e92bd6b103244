-- The first send of one job in 'enqueue' mode without the unique flag: the
-- path almost every enqueue takes. Library form only (see scripts.rs); with
-- EVALSHA, enqueue.lua takes every enqueue.
-- KEYS: due, pending, active, seq of one namespace (the keys this path touches;
--       every key of the namespace is `{namespace}:<suffix>`, see common.lua)
-- ARGV: id, task, payload, max_attempts, when kind ('now' | 'at' | 'after'),
--       when (at: microseconds since the epoch; after: microseconds from now), nonce, dead-letter cap, then, all optional: the channel
--       scope (what follows `wake` and `abort` in the channel names: absent
--       or '' in database 0, ':db<N>' in database N) and, only when the reply
--       must be logged (see below), request id and reply-log ttl ms
-- Returns code, generation, run_at, extra, as enqueue.lua does for one job.
--
-- When the id is pending or running (a duplicate, a re-sent request, a
-- corrupt record), it hands the request to enqueue.lua with the namespace's
-- full key list, in the same call: same replies, same state.
--
-- It never reads `results` nor the reply log: the client sends a request
-- here once, so the request cannot have created a job that finished since. A
-- request whose reply was lost is sent again to enqueue.lua with the same
-- request id: it answers from the reply log (common.lua
-- `logged`) what this call recorded there, else finds the job by its nonce.
-- A created job's reply is recorded only when the client sends a ttl
-- (keep_result shorter than the re-send window: the job may finish, and its
-- nonce vanish with its outcome, before the re-send arrives); a handed-on
-- request is recorded by enqueue.lua under the same condition.
--
-- Why a script of its own: redis-server spends about 144,000 instructions on
-- a single-job enqueue.lua call and 90,000 on this one (callgrind,
-- bench/scripts/callgrind-enqueue.sh). Each key and argument costs about
-- 1,000 to parse and hand to Lua (4 keys and 8 arguments here against 11 and
-- 14), each redis.call about 4,700 (7 here against 8), and enqueue.lua's
-- batch machinery (closures, reply tables) the rest.
local due, pending, active, seq = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, scope, request_id, ttl = ARGV[1], ARGV[9] or '', ARGV[10], ARGV[11]
local now, now_us = now_ms_us()
if redis.call('HEXISTS', active, id) == 1 or redis.call('HEXISTS', pending, id) == 1 then
  local namespace = key_prefix(due)
  local keys = {}
  for i, suffix in ipairs(KEY_SUFFIXES) do keys[i] = namespace .. suffix end
  return run_enqueue(keys, {'enqueue', 'keep', namespace .. 'wake' .. scope, namespace .. 'abort' .. scope, ARGV[8], '',
    id, ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], '0', ttl and (ttl .. ':' .. request_id) or ''})
end
local kind, run_at, run_at_text = ARGV[5], now, nil
if kind == 'at' then
  run_at, run_at_text = instant_ms(ARGV[6])
elseif kind == 'after' then
  run_at, run_at_text = instant_ms(now_us + tonumber(ARGV[6]))
end
run_at_text = run_at_text or string.format('%d', run_at)
local generation = redis.call('INCR', seq)
-- The record enqueue.lua's create() writes: task, payload, generation,
-- attempts started, max attempts, enqueued_ms, nonce.
redis.call('HSET', pending, id, cmsgpack.pack({ARGV[2], ARGV[3], generation, 0, tonumber(ARGV[4]), now, ARGV[7]}))
-- This script's keys, bound for common.lua's far_key and emit.
K_DUE, K_LISTENERS, LISTENER_CHANNELS, EVENT_CHANNEL = due, key_prefix(due) .. 'listeners', nil, nil
NAMED = {}
-- A far-future job's entry goes to the far twin (common.lua, far-future jobs).
local index = due
if run_at > now + FAR_MS then index = far_key(due) end
redis.call('ZADD', index, run_at_text, id)
-- wake_if_earliest, with this script's due key and the channel derived from it
-- and the channel scope.
if is_earliest(index, run_at_text) then
  redis.call(PUBLISH, key_prefix(due) .. 'wake' .. scope, run_at_text)
end
-- The job event (common.lua emit).
emit('enqueued', id, ARGV[2], generation, 0, now, run_at)
local reply = {'enqueued', generation, run_at, 0}
if ttl then
  redis.call('SET', reply_key(due, request_id), cmsgpack.pack(reply), 'PX', ttl)
end
return reply
