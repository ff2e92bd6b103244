-- Shared by every script (prepended when the scripts are built).
-- KEYS (same order in every script; all share the namespace's hash tag):
--   1 due        ZSET  id -> run_at (ms, Redis time); deferred and queued jobs
--   2 pending    HASH  id -> job record (msgpack) of a job that has not started
--   3 active     HASH  id -> job record of a running job
--   4 leases     ZSET  id -> lease expiry (ms) of a running job
--   5 results    HASH  id -> outcome record of a finished job
--   6 results_exp ZSET id -> when that outcome expires (ms)
--   7 dead       HASH  id -> dead-letter record
--   8 dead_order ZSET  id -> when it was dead-lettered (ms)
--   9 seq        STRING generation counter
--  10 claim_log  HASH  worker id -> its last claim's nonce and ids (NUL-separated)
--  11 claim_exp  ZSET  worker id -> when that log entry expires (ms)
-- Job record fields (msgpack array):
--   1 task, 2 payload, 3 generation, 4 attempts started (with 3, the fence
--      token: it only grows), 5 max attempts (plus one per attempt released),
--   6 enqueued_ms, 7 nonce, 8 last error, 9 run_at of the current attempt,
--   10 started_ms, 11 worker, 12 cancel requested (1), 13 blocked run_at,
--   14 a replacement waits (1; on a running job: a pending job with the same id
--      waits for this run to end, so finishing it must release that job)
-- Bound to the call's KEYS by bind() before each script body runs (by the EVAL
-- form and by each function of the library form; see scripts.rs).
local K_DUE, K_PENDING, K_ACTIVE, K_LEASES
local K_RESULTS, K_RESULTS_EXP, K_DEAD, K_DEAD_ORDER, K_SEQ
local K_CLAIM_LOG, K_CLAIM_EXP

local function bind(keys)
  K_DUE, K_PENDING, K_ACTIVE, K_LEASES = keys[1], keys[2], keys[3], keys[4]
  K_RESULTS, K_RESULTS_EXP, K_DEAD, K_DEAD_ORDER, K_SEQ = keys[5], keys[6], keys[7], keys[8], keys[9]
  K_CLAIM_LOG, K_CLAIM_EXP = keys[10], keys[11]
end

-- The key names' suffixes in KEYS order (`{namespace}:<suffix>`; keys.rs
-- builds the same list), for a script that declares only the keys its usual
-- path touches and hands a rare case to a script that takes them all.
local KEY_SUFFIXES = {'due', 'pending', 'active', 'leases', 'results', 'results_exp', 'dead', 'dead_order', 'seq',
  'claim_log', 'claim_exp'}

-- The `{namespace}:` prefix of a namespace's key names, from its `due` key.
local function key_prefix(due)
  return string.sub(due, 1, -4)
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The type of each job record field (see the list above): required fields
-- 1-7 must have it; optional fields 8-14 have it or are nil/false (absent).
-- (well_typed below checks the same, unrolled: keep the two alike.)
local FIELDS = {
  {'task', 'string'}, {'payload', 'string'}, {'generation', 'number'}, {'attempt counter', 'number'},
  {'max attempts', 'number'}, {'enqueued_ms', 'number'}, {'nonce', 'string'},
  {'last error', 'string'}, {'run_at', 'number'}, {'started_ms', 'number'}, {'worker', 'string'},
  {'cancel requested', 'number'}, {'blocked run_at', 'number'}, {'replacement waits', 'number'},
}
local REQUIRED_FIELDS = 7

-- Whether every field has its type: the usual case, unrolled (decode runs
-- for every job a claim, completion or renewal touches; absent optional
-- fields cost no type() call).
local function well_typed(rec)
  if type(rec[1]) ~= 'string' or type(rec[2]) ~= 'string' or type(rec[3]) ~= 'number'
    or type(rec[4]) ~= 'number' or type(rec[5]) ~= 'number' or type(rec[6]) ~= 'number'
    or type(rec[7]) ~= 'string' then
    return false
  end
  local v = rec[8]
  if v and type(v) ~= 'string' then return false end
  v = rec[9]
  if v and type(v) ~= 'number' then return false end
  v = rec[10]
  if v and type(v) ~= 'number' then return false end
  v = rec[11]
  if v and type(v) ~= 'string' then return false end
  v = rec[12]
  if v and type(v) ~= 'number' then return false end
  v = rec[13]
  if v and type(v) ~= 'number' then return false end
  v = rec[14]
  if v and type(v) ~= 'number' then return false end
  return true
end

-- Decodes a job record, checking every field's type; nil and a reason
-- naming the first bad field when it is corrupt.
local function decode(blob)
  local ok, rec = pcall(cmsgpack.unpack, blob)
  if not ok or type(rec) ~= 'table' then
    return nil, 'corrupt job record: not msgpack'
  end
  if well_typed(rec) then return rec end
  for i, field in ipairs(FIELDS) do
    local v, want = rec[i], field[2]
    if type(v) ~= want and (i <= REQUIRED_FIELDS or (v ~= nil and v ~= false)) then
      local what = 'missing'
      if v ~= nil then what = 'a ' .. type(v) end
      return nil, 'corrupt job record: ' .. field[1] .. ' is not a ' .. want .. ' (field ' .. i .. ' is ' .. what .. ')'
    end
  end
  return rec
end

-- Encodes a job record. Absent trailing fields (8-14) are left out: decode
-- reads them as nil, and every reader treats nil like false (tests with `or`,
-- `== 1`, `~= 1`, opt()). Records written with all fields (false for absent
-- ones) decode the same.
local function encode(rec)
  local n = 14
  while n > 7 and (rec[n] == nil or rec[n] == false) do
    rec[n] = nil
    n = n - 1
  end
  -- cmsgpack stops an array at the first nil: store absent inner fields as false.
  for i = 1, n do
    if rec[i] == nil then rec[i] = false end
  end
  return cmsgpack.pack(rec)
end

-- redis.call(cmd, key, args...) in chunks of at most 1000 arguments (Lua's
-- unpack is limited to ~8000 values); chunks stay even, so pairs are never split.
-- Returns the replies concatenated (for HMGET).
local function call_many(cmd, key, args)
  local out = {}
  for first = 1, #args, 1000 do
    local reply = redis.call(cmd, key, unpack(args, first, math.min(first + 999, #args)))
    if type(reply) == 'table' then
      for _, v in ipairs(reply) do out[#out + 1] = v end
    end
  end
  return out
end

local function opt(v)
  if v == false or v == nil then return '' end
  return v
end

-- Drops outcome records whose retention is over (a few per call, amortized:
-- 20 per finished job, 2000 per claim so that an idle worker drains the rest).
-- Returns how many it dropped.
local function sweep_results(now, limit)
  local expired = redis.call('ZRANGEBYSCORE', K_RESULTS_EXP, '-inf', string.format('%d', now), 'LIMIT', '0',
    string.format('%d', limit or 20))
  if #expired > 0 then
    call_many('HDEL', K_RESULTS, expired)
    call_many('ZREM', K_RESULTS_EXP, expired)
  end
  return #expired
end

-- The outcome record of a job, unless its retention is over.
local function live_result(id, now)
  local expires = redis.call('ZSCORE', K_RESULTS_EXP, id)
  if expires and tonumber(expires) <= now then return nil end
  return redis.call('HGET', K_RESULTS, id)
end

-- The outcome record of a job (msgpack): generation, state, result, error, task,
-- attempts, enqueued_ms, started_ms, finished_ms, run_at, max attempts, and the
-- nonce of the request that created the job (so that the request, re-sent after
-- the job finished, is still recognised).
local function result_blob(rec, state, result, err, now)
  return cmsgpack.pack({rec and rec[3] or 0, state, result or '', err or '', rec and rec[1] or '',
    rec and rec[4] or 0, rec and rec[6] or 0, rec and opt(rec[10]) or '', now, rec and opt(rec[9]) or '',
    rec and rec[5] or 0, rec and opt(rec[7]) or ''})
end

-- A decoded outcome record, or nil (none, or not msgpack).
local function decode_result(blob)
  if not blob then return nil end
  local ok, res = pcall(cmsgpack.unpack, blob)
  if ok and type(res) == 'table' then return res end
  return nil
end

-- Records how a job ended, kept for keep_ms (0: not kept).
local function record_result(id, rec, state, result, err, now, keep_ms)
  if keep_ms > 0 then
    redis.call('HSET', K_RESULTS, id, result_blob(rec, state, result, err, now))
    redis.call('ZADD', K_RESULTS_EXP, now + keep_ms, id)
  else
    redis.call('HDEL', K_RESULTS, id)
    redis.call('ZREM', K_RESULTS_EXP, id)
  end
  sweep_results(now)
end

-- Moves a job to the dead letter, keeping at most cap entries.
local function dead_letter(id, raw, rec, reason, now, cap)
  local entry = {rec and rec[1] or '', rec and rec[3] or 0, rec and rec[4] or 0, reason, now,
    rec and rec[2] or raw or '', rec and rec[5] or 0}
  redis.call('HSET', K_DEAD, id, cmsgpack.pack(entry))
  redis.call('ZADD', K_DEAD_ORDER, now, id)
  local excess = redis.call('ZCARD', K_DEAD_ORDER) - cap
  if excess > 0 then
    local oldest = redis.call('ZPOPMIN', K_DEAD_ORDER, excess)
    for i = 1, #oldest, 2 do
      redis.call('HDEL', K_DEAD, oldest[i])
    end
  end
end

-- A pending job that waited for the running one with the same id may start now.
-- Returns the time it became due, or nil.
local function unblock_pending(id, now)
  local blob = redis.call('HGET', K_PENDING, id)
  if not blob then return nil end
  local rec = decode(blob)
  if not rec then
    -- Unreadable: due now, so that the next claim dead-letters it with the reason.
    redis.call('ZADD', K_DUE, now, id)
    return now
  end
  if rec[13] then
    local run_at = rec[13]
    if run_at < now then run_at = now end
    rec[13] = false
    redis.call('HSET', K_PENDING, id, encode(rec))
    redis.call('ZADD', K_DUE, run_at, id)
    return run_at
  end
  return nil
end

-- Ends a running job: outcome kept, record removed, a waiting replacement released
-- (the time it became due is returned, or nil). The pending hash is only read
-- when the running record says a replacement waits (field 14): it is the
-- largest structure, and looking up every finished job's id in it is the one
-- avoidable cache miss per job when many jobs are deferred. Every path that
-- makes a job wait for a running one sets the flag (enqueue.lua 'replace',
-- claim.lua); a job that waits without it (written by an older version) is
-- not lost: it stays due at the running job's lease expiry and starts then.
local function finish_active(id, rec, state, result, err, now, keep_ms)
  redis.call('HDEL', K_ACTIVE, id)
  redis.call('ZREM', K_LEASES, id)
  record_result(id, rec, state, result, err, now, keep_ms)
  if rec[14] ~= 1 then return nil end
  return unblock_pending(id, now)
end

-- Marks a running job as having a replacement that waits for it (field 14).
local function mark_replacement_waits(id, rec)
  if rec[14] ~= 1 then
    rec[14] = 1
    redis.call('HSET', K_ACTIVE, id, encode(rec))
  end
end

-- Puts a running job back in the queue (retry, expired lease, release).
local function requeue_active(id, rec, run_at, err)
  redis.call('HDEL', K_ACTIVE, id)
  redis.call('ZREM', K_LEASES, id)
  rec[8] = err or rec[8]
  rec[9], rec[10], rec[11], rec[12], rec[13], rec[14] = false, false, false, false, false, false
  redis.call('HSET', K_PENDING, id, encode(rec))
  redis.call('ZADD', K_DUE, run_at, id)
end

-- Whether no job in `due` is due before run_at (ms, as text), and
-- wake_if_earliest: wakes the workers when a job due at run_at is the earliest
-- one queued. (Asked without scores and with text arguments: Redis
-- formats a double reply, and Lua a number argument, with snprintf, which cost
-- about 5 % of a single enqueue.)
local function is_earliest(due, run_at_text)
  return redis.call('ZRANGEBYSCORE', due, '-inf', '(' .. run_at_text, 'LIMIT', '0', '1')[1] == nil
end

-- Why "earliest" is enough: after each claim a worker with free slots sleeps
-- until the earliest entry of `due` (or lease expiry), so every idle worker
-- plans to claim no later than the earliest entry. A job added behind an
-- earlier entry is claimed by the worker woken for that entry (or, when every
-- worker is full, when a slot frees); only a job due before every other entry
-- needs a wake. That holds while every path that adds to `due` calls this:
-- an entry added silently (a retry, before issue 14) stays overdue and holds
-- back the wake of every job added behind it, up to max_idle.
local function wake_if_earliest(run_at, channel)
  if is_earliest(K_DUE, string.format('%d', run_at)) then
    redis.call('PUBLISH', channel, run_at)
  end
end

-- Why a lease entry without its running record is dead-lettered.
local LOST_RUNNING = 'the running job record is missing (evicted under maxmemory, or deleted by hand)'

-- A running job whose lease ran out: its worker died or hung.
local function expire_lease(id, now, keep_ms, cap)
  local blob = redis.call('HGET', K_ACTIVE, id)
  redis.call('ZREM', K_LEASES, id)
  if not blob then
    dead_letter(id, nil, nil, LOST_RUNNING, now, cap)
    return
  end
  local rec, why = decode(blob)
  if not rec then
    redis.call('HDEL', K_ACTIVE, id)
    dead_letter(id, blob, nil, why, now, cap)
    record_result(id, nil, 'failed', '', why, now, keep_ms)
    return
  end
  if rec[12] == 1 then
    finish_active(id, rec, 'cancelled', '', 'cancelled while its worker was gone', now, keep_ms)
  elseif redis.call('HEXISTS', K_PENDING, id) == 1 then
    rec[14] = 1
    finish_active(id, rec, 'cancelled', '', 'superseded by a replacement while its worker was gone', now, keep_ms)
  elseif rec[4] >= rec[5] then
    local reason = 'stalled: the lease expired on attempt ' .. rec[4] .. ' of ' .. rec[5] .. ' (worker died or hung)'
    dead_letter(id, nil, rec, reason, now, cap)
    finish_active(id, rec, 'failed', '', reason, now, keep_ms)
  else
    requeue_active(id, rec, now, 'lease expired on attempt ' .. rec[4] .. ' (worker died or hung)')
  end
end

-- The reply log: what a state-changing call answered, under its request id,
-- so that the same call sent again (its reply was lost to a dropped
-- connection, or the application re-sends a request that carries its own
-- request id) is answered the same instead of running again. The client sends
-- such calls once (fred's automatic re-sends are off) and re-sends them
-- itself with the same request id (redis_backend.rs `call_logged`). One
-- string key per request, `{namespace}:reply:<request id>`, expiring on its
-- own after ttl ms: the log is bounded by the request rate times the ttl,
-- and needs no sweep.
-- The last ARGV of a logged call names the request: '' (record nothing,
-- look nothing up: the usual case, one argument), else
-- '<ttl ms>:<request id>'. It is taken off ARGV before the body runs, so the
-- body sees its own arguments.
local function reply_key(due, request_id)
  return key_prefix(due) .. 'reply:' .. request_id
end

local function logged(body, KEYS, ARGV)
  local n = #ARGV
  local request = ARGV[n]
  ARGV[n] = nil
  if request == '' then return body(KEYS, ARGV) end
  local ttl, request_id = string.match(request, '^(%d+):(.*)$')
  -- Looked up on every send, the first one too: the same bytes delivered
  -- twice (by anything between the client and Redis) are then answered
  -- again, not run again. One GET, on these calls only.
  local saved = redis.call('GET', reply_key(K_DUE, request_id))
  if saved then return cmsgpack.unpack(saved) end
  local reply = body(KEYS, ARGV)
  redis.call('SET', reply_key(K_DUE, request_id), cmsgpack.pack(reply), 'PX', ttl)
  return reply
end
