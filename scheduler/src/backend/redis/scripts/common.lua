-- Shared by every script (prepended when the scripts are built).
-- KEYS (same order in every script; all share the namespace's hash tag):
--   1 due        ZSET  id -> run_at (ms, Redis time, with a fraction for an
--                instant asked to the microsecond); deferred and queued jobs
--   2 pending    HASH  id -> job record (msgpack) of a job that has not started
--   3 active     HASH  id -> job record of a running job
--   4 leases     ZSET  id -> lease expiry (ms) of a running job with a lease of
--                its own (most running jobs are leased to their worker: see
--                Leases below)
--   5 results    HASH  id -> outcome record of a finished job
--   6 results_exp ZSET id -> when that outcome expires (ms)
--   7 dead       HASH  id -> dead-letter record
--   8 dead_order ZSET  id -> when it was dead-lettered (ms)
--   9 seq        STRING generation counter
--  10 claim_log  HASH  worker id -> its last claim's nonce and ids (NUL-separated)
--  11 claim_exp  ZSET  worker id -> when that log entry expires (ms)
--  12 schedules  HASH  schedule name -> its definition (JSON, see schedules.lua)

-- The field numbers of the records the scripts store (msgpack arrays), so that
-- no reader counts: `rec[JOB_ATTEMPTS]`, never `rec[4]`. Locals: a script body
-- at the chunk's top level reads them from a register, a function as an
-- upvalue (one VM instruction more than a number). record.rs mirrors them, and
-- its test reads these lines: keep them `local <NAME> = <number>`, one a line.
-- A job record, in `pending` or `active`: JOB_TASK to JOB_NONCE are required,
-- the rest optional (nil or false when absent).
local JOB_TASK = 1
local JOB_PAYLOAD = 2
local JOB_GENERATION = 3         -- with JOB_ATTEMPTS, the fence token
local JOB_ATTEMPTS = 4           -- attempts started: it only grows
local JOB_MAX_ATTEMPTS = 5       -- plus one per attempt released
local JOB_ENQUEUED_MS = 6
local JOB_NONCE = 7              -- of the request that created the job
local JOB_LAST_ERROR = 8
local JOB_RUN_AT = 9             -- the run time of the current attempt
local JOB_STARTED_MS = 10
local JOB_WORKER = 11
local JOB_CANCEL_REQUESTED = 12  -- 1
local JOB_BLOCKED_RUN_AT = 13    -- a pending job's own run time while it waits for a running one
-- 1 on a running job: a pending job with the same id waits for this run to
-- end, so finishing it must release that job.
local JOB_REPLACEMENT_WAITS = 14
-- The last progress a running attempt reported (JobContext::progress): JSON.
local JOB_PROGRESS = 15
-- The W3C traceparent of the span that enqueued the job (ops/trace.rs).
local JOB_TRACE = 16
-- Routing and limits (absent: queue 'default', priority 0, no key).
local JOB_QUEUE = 17
local JOB_PRIORITY = 18
local JOB_LIMIT_KEY = 19         -- the key of a per-key concurrency limit
-- A pending job that waits for a concurrency slot or a worker: the name of the
-- park (a ZSET, see park keys below) that holds it instead of its due set.
local JOB_PARKED = 20
-- A running job that holds concurrency slots: 1 its task's, 2 also its key's.
local JOB_SLOTS = 21
-- An outcome record, in `results` (written by result_blob below).
local OUTCOME_GENERATION = 1
local OUTCOME_STATE = 2          -- 'completed' | 'failed' | 'cancelled'
local OUTCOME_RESULT = 3
local OUTCOME_ERROR = 4
local OUTCOME_TASK = 5
local OUTCOME_ATTEMPTS = 6
local OUTCOME_ENQUEUED_MS = 7
local OUTCOME_STARTED_MS = 8
local OUTCOME_FINISHED_MS = 9
local OUTCOME_RUN_AT = 10
local OUTCOME_MAX_ATTEMPTS = 11
-- The request that created the job: re-sent after the job finished, it is
-- still recognised.
local OUTCOME_NONCE = 12
local OUTCOME_PROGRESS = 13      -- the last progress reported, JSON ('' when none)
-- A dead-letter record, in `dead` (written by dead_letter below).
local DEAD_TASK = 1
local DEAD_GENERATION = 2
local DEAD_ATTEMPTS = 3
local DEAD_REASON = 4
local DEAD_FAILED_MS = 5
local DEAD_PAYLOAD = 6           -- the job's payload, or the unreadable record itself
local DEAD_MAX_ATTEMPTS = 7
local DEAD_QUEUE = 8             -- the job's routing, so that a requeue keeps it ('' or absent: default)
local DEAD_PRIORITY = 9
local DEAD_LIMIT_KEY = 10

-- Bound to the call's KEYS by bind() before each script body runs (by the EVAL
-- form and by each function of the library form; see scripts.rs).
local K_DUE, K_PENDING, K_ACTIVE, K_LEASES
local K_RESULTS, K_RESULTS_EXP, K_DEAD, K_DEAD_ORDER, K_SEQ
local K_CLAIM_LOG, K_CLAIM_EXP, K_SCHEDULES, K_LISTENERS
-- The channels of the processes waiting for outcomes, and the channel job
-- events go to (false: nobody listens), read once per call: nil until then
-- (see read_listeners).
local LISTENER_CHANNELS, EVENT_CHANNEL = nil, nil

-- The command every notice goes out with. On a Redis Cluster of 7.0 or later
-- scripts.rs builds the scripts with SPUBLISH here instead: a shard channel
-- (every channel name carries the namespace's hash tag) is delivered by the
-- shard that owns the slot, where PUBLISH is sent to every node of the cluster.
local PUBLISH = 'PUBLISH'

-- Key names built from the namespace's prefix, per call (see named()).
local NAMED = {}

local function bind(keys)
  K_DUE, K_PENDING, K_ACTIVE, K_LEASES = keys[1], keys[2], keys[3], keys[4]
  K_RESULTS, K_RESULTS_EXP, K_DEAD, K_DEAD_ORDER, K_SEQ = keys[5], keys[6], keys[7], keys[8], keys[9]
  K_CLAIM_LOG, K_CLAIM_EXP, K_SCHEDULES, K_LISTENERS = keys[10], keys[11], keys[12], keys[13]
  LISTENER_CHANNELS, EVENT_CHANNEL = nil, nil
  NAMED = {}
end

-- The key names' suffixes in KEYS order (`{namespace}:<suffix>`; keys.rs
-- builds the same list), for a script that declares only the keys its usual
-- path touches and hands a rare case to a script that takes them all.
local KEY_SUFFIXES = {'due', 'pending', 'active', 'leases', 'results', 'results_exp', 'dead', 'dead_order', 'seq',
  'claim_log', 'claim_exp', 'schedules', 'listeners'}

-- The `{namespace}:` prefix of a namespace's key names, from its `due` key.
local function key_prefix(due)
  return string.sub(due, 1, -4)
end

-- `{namespace}:<suffix>`, built once per call and suffix: a claim or a
-- completion names the same few keys for every job it touches.
local function named(suffix)
  local name = NAMED[suffix]
  if not name then
    name = key_prefix(K_DUE) .. suffix
    NAMED[suffix] = name
  end
  return name
end

-- Redis time in whole milliseconds (rounded down), and in microseconds: a
-- delay ('after', in microseconds) is added to the latter, so that a job
-- deferred by d is due d after the call by the Redis clock, never before; a
-- claim compares due times with it.
local function now_ms_us()
  local t = redis.call('TIME')
  local s, us = tonumber(t[1]), tonumber(t[2])
  return s * 1000 + math.floor(us / 1000), s * 1000000 + us
end

local function now_ms()
  return (now_ms_us())
end

-- A run time asked for as an instant ('at': whole microseconds since the
-- epoch, rounded up by the client; text or number) in milliseconds with its
-- fraction, and as the text of its score. The due sets keep the fraction, so
-- that a claim (which compares them with Redis time to the microsecond) takes
-- the job at that instant, not at the next whole millisecond; records and
-- replies that only describe the time read it rounded down (a Lua number with
-- a fraction becomes an integer reply that way).
local function instant_ms(us_text)
  local ms = tonumber(us_text) / 1000
  return ms, string.format('%.3f', ms)
end

-- The name (in a corrupt record's reason) and type of each job record field:
-- a required field must have it; an optional one has it or is nil/false
-- (absent). (well_typed below checks the same, unrolled: keep the two alike.)
local FIELDS = {
  [JOB_TASK] = {name = 'task', type = 'string'},
  [JOB_PAYLOAD] = {name = 'payload', type = 'string'},
  [JOB_GENERATION] = {name = 'generation', type = 'number'},
  [JOB_ATTEMPTS] = {name = 'attempt counter', type = 'number'},
  [JOB_MAX_ATTEMPTS] = {name = 'max attempts', type = 'number'},
  [JOB_ENQUEUED_MS] = {name = 'enqueued_ms', type = 'number'},
  [JOB_NONCE] = {name = 'nonce', type = 'string'},
  [JOB_LAST_ERROR] = {name = 'last error', type = 'string'},
  [JOB_RUN_AT] = {name = 'run_at', type = 'number'},
  [JOB_STARTED_MS] = {name = 'started_ms', type = 'number'},
  [JOB_WORKER] = {name = 'worker', type = 'string'},
  [JOB_CANCEL_REQUESTED] = {name = 'cancel requested', type = 'number'},
  [JOB_BLOCKED_RUN_AT] = {name = 'blocked run_at', type = 'number'},
  [JOB_REPLACEMENT_WAITS] = {name = 'replacement waits', type = 'number'},
  [JOB_PROGRESS] = {name = 'progress', type = 'string'},
  [JOB_TRACE] = {name = 'trace', type = 'string'},
  [JOB_QUEUE] = {name = 'queue', type = 'string'},
  [JOB_PRIORITY] = {name = 'priority', type = 'number'},
  [JOB_LIMIT_KEY] = {name = 'limit key', type = 'string'},
  [JOB_PARKED] = {name = 'parked', type = 'string'},
  [JOB_SLOTS] = {name = 'slots', type = 'number'},
}
-- The last required field, and the last field.
local LAST_REQUIRED_FIELD, LAST_FIELD = JOB_NONCE, JOB_SLOTS

-- Whether every field has its type: the usual case, unrolled (decode runs
-- for every job a claim, completion or renewal touches; absent optional
-- fields cost no type() call).
local function well_typed(rec)
  if type(rec[JOB_TASK]) ~= 'string' or type(rec[JOB_PAYLOAD]) ~= 'string'
    or type(rec[JOB_GENERATION]) ~= 'number' or type(rec[JOB_ATTEMPTS]) ~= 'number'
    or type(rec[JOB_MAX_ATTEMPTS]) ~= 'number' or type(rec[JOB_ENQUEUED_MS]) ~= 'number'
    or type(rec[JOB_NONCE]) ~= 'string' then
    return false
  end
  local v = rec[JOB_LAST_ERROR]
  if v and type(v) ~= 'string' then return false end
  v = rec[JOB_RUN_AT]
  if v and type(v) ~= 'number' then return false end
  v = rec[JOB_STARTED_MS]
  if v and type(v) ~= 'number' then return false end
  v = rec[JOB_WORKER]
  if v and type(v) ~= 'string' then return false end
  v = rec[JOB_CANCEL_REQUESTED]
  if v and type(v) ~= 'number' then return false end
  v = rec[JOB_BLOCKED_RUN_AT]
  if v and type(v) ~= 'number' then return false end
  v = rec[JOB_REPLACEMENT_WAITS]
  if v and type(v) ~= 'number' then return false end
  v = rec[JOB_PROGRESS]
  if v and type(v) ~= 'string' then return false end
  v = rec[JOB_TRACE]
  if v and type(v) ~= 'string' then return false end
  if #rec <= JOB_TRACE then return true end
  v = rec[JOB_QUEUE]
  if v and type(v) ~= 'string' then return false end
  v = rec[JOB_PRIORITY]
  if v and type(v) ~= 'number' then return false end
  v = rec[JOB_LIMIT_KEY]
  if v and type(v) ~= 'string' then return false end
  v = rec[JOB_PARKED]
  if v and type(v) ~= 'string' then return false end
  v = rec[JOB_SLOTS]
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
  for i = 1, LAST_FIELD do
    local v, want = rec[i], FIELDS[i].type
    if type(v) ~= want and (i <= LAST_REQUIRED_FIELD or (v ~= nil and v ~= false)) then
      local what = 'missing'
      if v ~= nil then what = 'a ' .. type(v) end
      return nil, 'corrupt job record: ' .. FIELDS[i].name .. ' is not a ' .. want
        .. ' (field ' .. i .. ' is ' .. what .. ')'
    end
  end
  return rec
end

-- Encodes a job record. Absent trailing optional fields are left out: decode
-- reads them as nil, and every reader treats nil like false (tests with `or`,
-- `== 1`, `~= 1`, opt()). Records written with all fields (false for absent
-- ones) decode the same. The record is copied, in field order (JOB_TASK ..
-- JOB_SLOTS), into one table built at once with as many fields as its usual
-- shape needs (7 for a job that has not run, 13 for a running one, else 21):
-- filling absent fields in `rec` itself grew it key by key. cmsgpack stops an
-- array at the first nil, so absent inner fields are written as false.
if LAST_FIELD ~= 21 then error('encode lists 21 fields: keep it in step with LAST_FIELD') end
local function encode(rec)
  local n = LAST_FIELD
  while n > LAST_REQUIRED_FIELD and not rec[n] do n = n - 1 end
  local r
  if n == LAST_REQUIRED_FIELD then
    -- A job that has not run: the required fields alone.
    return cmsgpack.pack({rec[1] or false, rec[2] or false, rec[3] or false, rec[4] or false, rec[5] or false,
      rec[6] or false, rec[7] or false})
  elseif n <= JOB_BLOCKED_RUN_AT then
    -- The usual running job: up to its worker and flags.
    r = {rec[1] or false, rec[2] or false, rec[3] or false, rec[4] or false, rec[5] or false, rec[6] or false,
      rec[7] or false, rec[8] or false, rec[9] or false, rec[10] or false, rec[11] or false, rec[12] or false,
      rec[13] or false}
  else
    r = {rec[1] or false, rec[2] or false, rec[3] or false, rec[4] or false, rec[5] or false, rec[6] or false,
      rec[7] or false, rec[8] or false, rec[9] or false, rec[10] or false, rec[11] or false, rec[12] or false,
      rec[13] or false, rec[14] or false, rec[15] or false, rec[16] or false, rec[17] or false, rec[18] or false,
      rec[19] or false, rec[20] or false, rec[21] or false}
  end
  for i = #r, n + 1, -1 do r[i] = nil end
  return cmsgpack.pack(r)
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

-- The outcome record of a job (msgpack), its fields in OUTCOME_ order:
-- generation, state, result, error, task, attempts, enqueued_ms, started_ms,
-- finished_ms, run_at, max attempts, nonce, progress.
local function result_blob(rec, state, result, err, now)
  if not rec then
    return cmsgpack.pack({0, state, result or '', err or '', '', 0, 0, '', now, '', 0, '', ''})
  end
  return cmsgpack.pack({rec[JOB_GENERATION] or 0, state, result or '', err or '', rec[JOB_TASK] or '',
    rec[JOB_ATTEMPTS] or 0, rec[JOB_ENQUEUED_MS] or 0, rec[JOB_STARTED_MS] or '', now, rec[JOB_RUN_AT] or '',
    rec[JOB_MAX_ATTEMPTS] or 0, rec[JOB_NONCE] or '', rec[JOB_PROGRESS] or ''})
end

-- A decoded outcome record, or nil (none, or not msgpack).
local function decode_result(blob)
  if not blob then return nil end
  local ok, res = pcall(cmsgpack.unpack, blob)
  if ok and type(res) == 'table' then return res end
  return nil
end

-- One record as inspect.lua and browse.lua return it (record.rs `Section`):
-- {kind, score, 'ok', fields...} with the fields up to n as strings (numbers
-- as integers: tostring of a large double would use an exponent), or {kind,
-- score, 'corrupt'}. kind: 'active' | 'pending' (job records, checked by
-- decode), 'result' (outcome records) or 'dead' (dead-letter entries), read
-- as they are.
local function record_section(kind, score, blob, n)
  local rec
  if kind == 'active' or kind == 'pending' then
    rec = decode(blob)
  elseif blob then
    local ok, r = pcall(cmsgpack.unpack, blob)
    if ok and type(r) == 'table' then rec = r end
  end
  if not rec then return {kind, score, 'corrupt'} end
  local f = {}
  for i = 1, n do
    local v = rec[i]
    if v == nil or v == false then
      f[i] = ''
    elseif type(v) == 'number' then
      f[i] = string.format('%d', v)
    else
      f[i] = tostring(v)
    end
  end
  return {kind, score, 'ok', unpack(f)}
end

-- Reads `listeners` once per script call: each process waiting for outcomes
-- (`Scheduler::wait`) registers its own channel there, and each stream of
-- job events (`Scheduler::events`) an entry '<events channel>#<token>'
-- (member -> expiry ms, renewed while in use; listeners.lua). So a call
-- when nobody listens pays one ZRANGEBYSCORE at most, and no PUBLISH.
local function read_listeners(now)
  if LISTENER_CHANNELS ~= nil then return end
  LISTENER_CHANNELS, EVENT_CHANNEL = {}, false
  local members = redis.call('ZRANGEBYSCORE', K_LISTENERS, string.format('%d', now), '+inf')
  -- The usual case (nobody listens) builds no key name.
  if #members == 0 then return end
  local events = key_prefix(K_DUE) .. 'events'
  for _, member in ipairs(members) do
    local hash = string.find(member, '#', 1, true)
    if hash and string.sub(member, 1, #events) == events then
      EVENT_CHANNEL = string.sub(member, 1, hash - 1)
    else
      LISTENER_CHANNELS[#LISTENER_CHANNELS + 1] = member
    end
  end
end

-- Whether anyone waits for outcomes or reads job events (read_listeners): a
-- batch skips its per-job notices when nobody does.
local function anyone_listens(now)
  read_listeners(now)
  return #LISTENER_CHANNELS > 0 or EVENT_CHANNEL ~= false
end

-- Tells the processes waiting for outcomes that job id's generation ended.
local function announce_finished(id, generation, now)
  read_listeners(now)
  for _, channel in ipairs(LISTENER_CHANNELS) do
    redis.call(PUBLISH, channel, string.format('%d', generation or 0) .. ':' .. id)
  end
end

-- Publishes a job event (JSON array of text: kind, id, task, generation,
-- attempts started, when (ms), run at (ms, or ''), detail) when a stream of
-- events is open (Scheduler::events; events.rs reads it). Best effort, as
-- pub/sub is: the durable state is what a reader resumes from.
local function emit(kind, id, task, generation, attempt, now, run_at, detail)
  read_listeners(now)
  if not EVENT_CHANNEL then return end
  redis.call(PUBLISH, EVENT_CHANNEL, cjson.encode({kind, id, task or '', string.format('%d', generation or 0),
    string.format('%d', attempt or 0), string.format('%d', now), run_at and string.format('%d', run_at) or '',
    detail or ''}))
end

-- emit() for a job record (nil: one that could not be read).
local function emit_job(kind, id, rec, now, run_at, detail)
  if rec then
    emit(kind, id, rec[JOB_TASK], rec[JOB_GENERATION], rec[JOB_ATTEMPTS], now, run_at, detail)
  else
    emit(kind, id, '', 0, 0, now, run_at, detail)
  end
end

-- Leases. A running job is leased to the worker that claimed it, and the
-- lease is the worker's: `worker_leases` (ZSET worker id -> expiry, ms) has
-- one entry per worker with running jobs, `held:<worker>` (SET) the ids it
-- runs. A claim that starts jobs sets its worker's lease to now + lease, and
-- so does a renewal (renew.lua); a claim that finds a worker's lease run out
-- expires the jobs it held (LEASE.sweep). `leases` (ZSET id -> expiry, ms)
-- holds the leases of a job's own: of a job claimed by a version before
-- 2026-12-01 (they kept one per job), and of a job its worker gave up
-- (complete.lua 'abandon': the worker stopped it when it could not confirm
-- the lease in time, so the renewals of its other jobs must not keep this
-- one). A running job is in its worker's `held`, or in `leases`, or in both:
-- an older version's audit, which knows only `leases`, gives a lease of its
-- own to a job leased to its worker. Renewals then extend both (renew.lua),
-- and the end of the job ends both (end_lease).
-- (An entry per job cost a listpack walk of the whole set for every job
-- claimed: about 15,000 of a drained job's 183,000 instructions in Redis.)
local function worker_leases_key() return named('worker_leases') end
local function held_key(worker) return named('held:' .. worker) end

-- A running job's lease ended (its record leaves `active`): it leaves its
-- worker's set and `leases`.
local function end_lease(id, rec)
  local worker = rec and rec[JOB_WORKER]
  if worker then redis.call('SREM', held_key(worker), id) end
  redis.call('ZREM', K_LEASES, id)
end

-- end_lease for a running job whose record cannot be read (its worker is
-- unknown): out of `leases` and of every worker's set.
local function drop_lease(id)
  redis.call('ZREM', K_LEASES, id)
  for _, worker in ipairs(redis.call('ZRANGE', worker_leases_key(), '0', '-1')) do
    redis.call('SREM', held_key(worker), id)
  end
end

-- end_lease for a batch: ids[i] with its running record recs[i]. A batch
-- comes from one worker: one SREM, one ZREM.
local function end_leases(ids, recs)
  local held = {}
  for i, id in ipairs(ids) do
    local worker = recs[i][JOB_WORKER]
    if worker then
      held[worker] = held[worker] or {}
      table.insert(held[worker], id)
    end
  end
  for worker, list in pairs(held) do call_many('SREM', held_key(worker), list) end
  call_many('ZREM', K_LEASES, ids)
end

-- A claimed job's record as it starts its next attempt, added to a batch's
-- writes (`active_args`: id, record pairs for HSET active), and the claim
-- reply's entry for it:
--   {id, task, payload, generation, attempt, max_attempts, enqueued_ms, run_at, trace}
-- (trace left out when the job has none: rec[JOB_TRACE] is nil).
local function begin_attempt(id, rec, run_at, worker, now, active_args)
  rec[JOB_ATTEMPTS] = rec[JOB_ATTEMPTS] + 1
  rec[JOB_RUN_AT] = run_at
  rec[JOB_STARTED_MS] = now
  rec[JOB_WORKER] = worker
  rec[JOB_CANCEL_REQUESTED] = false
  rec[JOB_BLOCKED_RUN_AT] = false
  -- (EVENT_CHANNEL is false once read_listeners found no stream of events.)
  if EVENT_CHANNEL ~= false then emit_job('started', id, rec, now, run_at) end
  active_args[#active_args + 1] = id
  active_args[#active_args + 1] = encode(rec)
  return {id, rec[JOB_TASK], rec[JOB_PAYLOAD], rec[JOB_GENERATION], rec[JOB_ATTEMPTS],
    rec[JOB_MAX_ATTEMPTS], rec[JOB_ENQUEUED_MS], run_at, rec[JOB_TRACE]}
end

-- Writes a batch of started jobs (begin_attempt's batch): their pending
-- records go, their running records come, leased to the worker until
-- lease_until (ms, as text).
local function write_started(ids, active_args, worker, lease_until)
  call_many('HDEL', K_PENDING, ids)
  call_many('HSET', K_ACTIVE, active_args)
  call_many('SADD', held_key(worker), ids)
  redis.call('ZADD', worker_leases_key(), lease_until, worker)
end

-- Records how a job ended, kept for keep_ms (0: not kept). Then sweeps a few
-- expired outcomes, unless no_sweep (a cancel: one round trip on its
-- caller's path; claims sweep 2000 at a time).
local function record_result(id, rec, state, result, err, now, keep_ms, no_sweep)
  if keep_ms > 0 then
    redis.call('HSET', K_RESULTS, id, result_blob(rec, state, result, err, now))
    redis.call('ZADD', K_RESULTS_EXP, now + keep_ms, id)
  else
    redis.call('HDEL', K_RESULTS, id)
    redis.call('ZREM', K_RESULTS_EXP, id)
  end
  if not no_sweep then sweep_results(now) end
  announce_finished(id, rec and rec[JOB_GENERATION], now)
  emit_job(state, id, rec, now, nil, err)
end

-- Moves a job to the dead letter, keeping at most cap entries. The record's
-- fields in DEAD_ order: task, generation, attempts, reason, failed_ms,
-- payload (or the unreadable record), max attempts.
local function dead_letter(id, raw, rec, reason, now, cap)
  local entry = {rec and rec[JOB_TASK] or '', rec and rec[JOB_GENERATION] or 0, rec and rec[JOB_ATTEMPTS] or 0, reason,
    now, rec and rec[JOB_PAYLOAD] or raw or '', rec and rec[JOB_MAX_ATTEMPTS] or 0}
  if rec and (rec[JOB_QUEUE] or rec[JOB_PRIORITY] or rec[JOB_LIMIT_KEY]) then
    entry[DEAD_QUEUE], entry[DEAD_PRIORITY], entry[DEAD_LIMIT_KEY] = opt(rec[JOB_QUEUE]), rec[JOB_PRIORITY] or 0,
      opt(rec[JOB_LIMIT_KEY])
  end
  emit_job('dead_lettered', id, rec, now, nil, reason)
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

-- Queues and priorities. A pending job's run time is in the due set of its
-- queue and priority: `due` itself for queue 'default' at priority 0 (the
-- usual case, and the only set before queues existed), else
-- `due:<priority>:<queue>`. `queues` (HASH queue -> its priorities, highest
-- first, comma-separated) names every other set, so that a worker finds the
-- sets of the queues it serves and listings find them all.
local DEFAULT_QUEUE = 'default'

local function due_key(queue, priority)
  if not queue or queue == '' then queue = DEFAULT_QUEUE end
  if queue == DEFAULT_QUEUE and (not priority or priority == 0) then return K_DUE end
  return named('due:' .. string.format('%d', priority or 0) .. ':' .. queue)
end

-- The set that holds a pending job's entry: its park while it waits for a
-- slot or a worker, else its due set.
local function index_key(rec)
  if rec[JOB_PARKED] then return rec[JOB_PARKED] end
  return due_key(rec[JOB_QUEUE], rec[JOB_PRIORITY])
end

-- Far-future jobs: a pending job due more than FAR_MS after it is placed
-- (created or rescheduled) has its entry in its due set's far twin
-- (`far:<priority>:<queue>`) instead of the due set. Its record does not
-- say so (it would cost every such record bytes): a path that looks for
-- the entry of a job that is not parked looks in the due set, then in the
-- twin (entry_score, drop_pending_entry). The due sets a claim reads then
-- hold what is due within FAR_MS, however many jobs wait for next year
-- (BullMQ keeps delayed jobs apart the same way). A claim moves the twin's
-- entries that came within FAR_MS into the due set of each set it visits,
-- and plans its next wake-up for FAR_MS before the twin's earliest entry.
local FAR_MS = 60000

-- The far twin of a due set.
local function far_key(due)
  local prefix = key_prefix(K_DUE)
  if due == K_DUE then return prefix .. 'far:0:' .. DEFAULT_QUEUE end
  return prefix .. 'far:' .. string.sub(due, #prefix + 5)
end

-- The set a pending job's entry goes to when it runs at run_at (ms): its
-- park, else its due set, or the far twin when run_at is far from now.
local function place(rec, run_at, now)
  local key = index_key(rec)
  if not rec[JOB_PARKED] and run_at > now + FAR_MS then return far_key(key) end
  return key
end

-- A pending job's entry: its score (text) and the set that holds it, or nil.
-- rec nil (a record that cannot be read): looked for in `due` alone.
local function entry_score(rec, id)
  if not rec then
    local score = redis.call('ZSCORE', K_DUE, id)
    if not score then return nil, nil end
    return score, K_DUE
  end
  local key = index_key(rec)
  local score = redis.call('ZSCORE', key, id)
  if not score and not rec[JOB_PARKED] then
    key = far_key(key)
    score = redis.call('ZSCORE', key, id)
  end
  if not score then return nil, nil end
  return score, key
end

-- Moves the entries of a due set's far twin that are due within FAR_MS of
-- now into the due set (at most `limit`; a claim comes back for the rest).
-- Records are not read: one whose record is missing or unreadable is
-- dead-lettered by the claim that takes it from the due set.
local function promote_far(due, now, limit)
  local far = far_key(due)
  local near = redis.call('ZRANGEBYSCORE', far, '-inf', string.format('%d', now + FAR_MS), 'WITHSCORES',
    'LIMIT', '0', string.format('%d', limit))
  if #near == 0 then return end
  local ids, scored = {}, {}
  for i = 1, #near, 2 do
    ids[#ids + 1] = near[i]
    scored[#scored + 1] = near[i + 1]
    scored[#scored + 1] = near[i]
  end
  call_many('ZREM', far, ids)
  call_many('ZADD', due, scored)
end

local function queues_key() return named('queues') end

-- A queue's priorities as stored in `queues` ('5,0,-2'): a list of numbers.
local function parse_levels(text)
  local list = {}
  for p in string.gmatch(text, '[^,]+') do list[#list + 1] = tonumber(p) end
  return list
end

-- The priorities of every queue but the implicit ('default', 0): queue -> list,
-- highest first (one HGETALL).
local function queue_levels()
  local levels = {}
  local flat = redis.call('HGETALL', queues_key())
  for i = 1, #flat, 2 do levels[flat[i]] = parse_levels(flat[i + 1]) end
  return levels
end

-- queue_levels, each queue's list parsed when first read (a claim reads
-- the hash once and parses only the queues it visits).
local function queue_levels_lazy()
  local raw = {}
  local flat = redis.call('HGETALL', queues_key())
  for i = 1, #flat, 2 do raw[flat[i]] = flat[i + 1] end
  return setmetatable({}, {__index = function(t, queue)
    local text = raw[queue]
    if not text then return nil end
    local list = parse_levels(text)
    rawset(t, queue, list)
    return list
  end})
end

-- The due sets of a queue, highest priority first.
local function queue_due_keys(queue, levels, out)
  local list = levels[queue] or {}
  local zero_seen = queue ~= DEFAULT_QUEUE
  for _, p in ipairs(list) do
    if not zero_seen and p < 0 then
      out[#out + 1] = K_DUE
      zero_seen = true
    end
    if not (queue == DEFAULT_QUEUE and p == 0) then out[#out + 1] = due_key(queue, p) end
    if p == 0 then zero_seen = true end
  end
  if not zero_seen then out[#out + 1] = K_DUE end
  return out
end

-- Every due set of the namespace.
local function all_due_keys()
  local levels = queue_levels()
  local out = {K_DUE}
  for queue, list in pairs(levels) do
    for _, p in ipairs(list) do
      if not (queue == DEFAULT_QUEUE and p == 0) then out[#out + 1] = due_key(queue, p) end
    end
  end
  return out
end

-- Records that queue has jobs at priority (a no-op for the implicit set).
local function register_level(queue, priority)
  if due_key(queue, priority) == K_DUE then return end
  if not queue or queue == '' then queue = DEFAULT_QUEUE end
  -- Once per call and (queue, priority): a batch of one queue reads it once.
  local seen = 'registered:' .. queue .. ':' .. string.format('%d', priority)
  if NAMED[seen] then return end
  NAMED[seen] = true
  local text = redis.call('HGET', queues_key(), queue)
  local list = text and parse_levels(text) or {}
  for _, p in ipairs(list) do
    if p == priority then return end
  end
  list[#list + 1] = priority
  table.sort(list, function(a, b) return a > b end)
  local parts = {}
  for i, p in ipairs(list) do parts[i] = string.format('%d', p) end
  redis.call('HSET', queues_key(), queue, table.concat(parts, ','))
end

-- Concurrency limits. `slots` (HASH) counts the running jobs that hold a slot:
-- 't:<task>' per task, 'k:<task length>:<task>:<key>' per key. A job that
-- finds its slots taken waits in a park (ZSET id -> its run time, so that
-- its lateness shows once it starts): `park:t:<task>` or
-- `park:k:<task length>:<task>:<key>`; `parks` (SET) names the parks for
-- listings and claims. A job of a task no worker of its queue can run waits
-- in `park:u:<queue length>:<queue>:<task>` until a worker that serves both
-- claims. Releasing a slot moves the longest
-- waiting job of the park back to its due set; a claim then checks it again.
local function slots_key() return named('slots') end
local function parks_key() return named('parks') end
local function task_slot(task) return 't:' .. task end
local function key_slot(task, key) return 'k:' .. #task .. ':' .. task .. ':' .. key end
local function task_park(task) return named('park:t:' .. task) end
local function key_park(task, key) return key_prefix(K_DUE) .. 'park:k:' .. #task .. ':' .. task .. ':' .. key end
local function unserved_park(queue, task)
  return key_prefix(K_DUE) .. 'park:u:' .. #queue .. ':' .. queue .. ':' .. task
end

-- Rate limits: at most N starts in any window of W ms, per task (`rate:t:<task>`)
-- or per key (`rate:k:<task length>:<task>:<key>`): LISTs of start times (ms),
-- newest first, trimmed to N, expiring W after the last start. A job that
-- would exceed its budget waits in a rate park (`park:r:<task>`,
-- `park:rk:...`) with a timer (`timers`, ZSET park -> when to let one out):
-- set when the job parks, and again whenever a job of the task starts while
-- others wait (to the instant the budget allows the next). `rates` (HASH
-- park -> 'N:W:<log key>') lets any worker fire a timer.
local function rate_log(task) return named('rate:t:' .. task) end
local function key_rate_log(task, key) return key_prefix(K_DUE) .. 'rate:k:' .. #task .. ':' .. task .. ':' .. key end
local function rate_park(task) return named('park:r:' .. task) end
local function key_rate_park(task, key) return key_prefix(K_DUE) .. 'park:rk:' .. #task .. ':' .. task .. ':' .. key end
local function timers_key() return named('timers') end
local function rates_key() return named('rates') end

-- Limits kept across the shards of a sharded namespace (sharded.rs): the
-- counts live in the namespace's home shard (grants.lua), the jobs in their
-- own shards. A claim parks a limited job it meets in `park:gs:<task>` and
-- hands it to the worker as a candidate; the home grants it or not; the
-- worker then takes the granted ones (granted.lua), which also moves each
-- refused one to the park of what it waits for: `park:gs:<task>` or
-- `park:gk:<task length>:<task>:<key>` (a slot), `park:gr:<task>` or
-- `park:grk:...` (a rate). Each such park has a timer (`timers`) that lets
-- one job out when it fires: a rate's next start, or a second later for a
-- slot, in case the release that should have let it out was lost.
-- The park of a shard whose keys start with `prefix` (`{tag}:`).
local function global_park_of(prefix, kind, task, key)
  if key then return prefix .. 'park:' .. kind .. ':' .. #task .. ':' .. task .. ':' .. key end
  return prefix .. 'park:' .. kind .. ':' .. task
end
local function global_park(kind, task, key)
  return global_park_of(key_prefix(K_DUE), kind, task, key)
end

-- The earliest instant (ms, at least now) a start fits the budget.
local function rate_next(log, n, w, now)
  local oldest = redis.call('LINDEX', log, string.format('%d', n - 1))
  if not oldest then return now end
  local t = tonumber(oldest) + w
  if t <= now then return now end
  return t
end

-- How many more starts fit the budget now.
local function rate_left(log, n, w, now)
  local used = 0
  for _, t in ipairs(redis.call('LRANGE', log, '0', string.format('%d', n - 1))) do
    if tonumber(t) > now - w then used = used + 1 end
  end
  return n - used
end

-- Sets a park's timer to `at`, unless it is set earlier.
local function arm_timer(park, at)
  local current = redis.call('ZSCORE', timers_key(), park)
  if not current or tonumber(current) > at then
    redis.call('ZADD', timers_key(), string.format('%d', at), park)
  end
end

-- A start counted against a rate (log, n per w ms); if jobs wait in its
-- park, their timer is set to the instant the budget allows the next.
-- (park nil: none to time, as in the home shard's logs, grants.lua).
local function count_start(log, park, n, w, now)
  redis.call('LPUSH', log, string.format('%d', now))
  redis.call('LTRIM', log, '0', string.format('%d', n - 1))
  redis.call('PEXPIRE', log, string.format('%d', w))
  if park and redis.call('EXISTS', park) == 1 then arm_timer(park, rate_next(log, n, w, now)) end
end

-- The limits a worker sends (claim.lua, grants.lua): lines 'task\tconcurrency
-- \tper-key concurrency\trate count\trate window ms\tper-key rate count
-- \tper-key window ms' (0: none), read lazily, once per task asked about:
-- limits[task] is {c, kc, rn, rw, krn, krw}, or false for a task without.
-- (Parsing the lines whole cost every claim, however few jobs it took.)
local function limits_by_task(lines)
  local text = '\n' .. lines .. '\n'
  return setmetatable({}, {__index = function(t, task)
    local lim = false
    local at = string.find(text, '\n' .. task .. '\t', 1, true)
    if at then
      local c, kc, rn, rw, krn, krw = string.match(text, '^\t(%d+)\t(%d+)\t(%d+)\t(%d+)\t(%d+)\t(%d+)\n',
        at + 1 + #task)
      if c then
        lim = {c = tonumber(c), kc = tonumber(kc), rn = tonumber(rn), rw = tonumber(rw), krn = tonumber(krn),
          krw = tonumber(krw)}
      end
    end
    rawset(t, task, lim)
    return lim
  end})
end

-- Moves pending jobs from one due set (or park) to parks, their run times
-- kept as the scores; each job {id, record, park, run time}. One call of each
-- command for the batch, not four per job.
local function park_jobs(from, jobs)
  local ids, recs, by_park = {}, {}, {}
  for i, job in ipairs(jobs) do
    local id, rec, park = job[1], job[2], job[3]
    rec[JOB_PARKED] = park
    ids[i] = id
    recs[2 * i - 1], recs[2 * i] = id, encode(rec)
    local entries = by_park[park]
    if not entries then
      entries = {}
      by_park[park] = entries
    end
    entries[#entries + 1] = job[4]
    entries[#entries + 1] = id
  end
  call_many('ZREM', from, ids)
  for park, entries in pairs(by_park) do
    call_many('ZADD', park, entries)
    redis.call('SADD', parks_key(), park)
  end
  call_many('HSET', K_PENDING, recs)
end

-- Moves up to n of a park's jobs (longest waiting first) back to their due
-- sets: the earliest run time moved, or nil.
local function unpark(park, n)
  local head = redis.call('ZRANGE', park, '0', string.format('%d', n - 1), 'WITHSCORES')
  -- A park emptied here leaves the registry (listings and claims read it).
  -- (A park found empty is left alone: releasing a slot looks at its park
  -- whether or not it holds jobs, and the usual answer, none, costs that one
  -- read; a claim that reads the registry drops the stale entries it meets.)
  if #head > 0 and #head < 2 * n and redis.call('ZCARD', park) == #head / 2 then
    redis.call('SREM', parks_key(), park)
  end
  local earliest = nil
  for i = 1, #head, 2 do
    local id, score = head[i], tonumber(head[i + 1])
    redis.call('ZREM', park, id)
    local blob = redis.call('HGET', K_PENDING, id)
    local rec = blob and decode(blob)
    if rec then
      rec[JOB_PARKED] = false
      redis.call('HSET', K_PENDING, id, encode(rec))
      redis.call('ZADD', due_key(rec[JOB_QUEUE], rec[JOB_PRIORITY]), score, id)
    elseif blob then
      -- Unreadable: due, so that the next claim dead-letters it with the reason.
      redis.call('ZADD', K_DUE, score, id)
    end
    if blob and (earliest == nil or score < earliest) then earliest = score end
  end
  return earliest
end

local function earlier(a, b)
  if a == nil or (b ~= nil and b < a) then return b end
  return a
end

-- Gives back the slots a running job holds (at its end, or at once when it
-- is cancelled or aborted) and moves a waiting job of each back to its due
-- set: the earliest run time moved, or nil.
-- Gives back n slots of one `slots` field and lets up to n jobs of its park
-- out: the earliest run time moved, or nil.
local function give_back(field, park, n)
  if redis.call('HINCRBY', slots_key(), field, string.format('%d', -n)) <= 0 then
    redis.call('HDEL', slots_key(), field)
  end
  return unpark(park, n)
end

local function release_slots(rec)
  local held = rec[JOB_SLOTS]
  if held ~= 1 and held ~= 2 then return nil end
  rec[JOB_SLOTS] = false
  local task, key = rec[JOB_TASK], rec[JOB_LIMIT_KEY]
  local moved = give_back(task_slot(task), task_park(task), 1)
  if held == 2 and key then moved = earlier(moved, give_back(key_slot(task, key), key_park(task, key), 1)) end
  return moved
end

-- Takes a pending job's entry out of its index (cancelled, replaced,
-- removed): a job that may have been moved out of a key's park for a slot
-- hands that turn to the next one there.
local function drop_pending_entry(id, rec)
  if redis.call('ZREM', index_key(rec), id) == 0 and not rec[JOB_PARKED] then
    redis.call('ZREM', far_key(index_key(rec)), id)
  end
  if not rec[JOB_PARKED] and rec[JOB_LIMIT_KEY] then
    return unpark(key_park(rec[JOB_TASK], rec[JOB_LIMIT_KEY]), 1)
  end
  return nil
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
  if rec[JOB_BLOCKED_RUN_AT] then
    local run_at = rec[JOB_BLOCKED_RUN_AT]
    if run_at < now then run_at = now end
    rec[JOB_BLOCKED_RUN_AT] = false
    redis.call('HSET', K_PENDING, id, encode(rec))
    redis.call('ZADD', index_key(rec), run_at, id)
    return run_at
  end
  return nil
end

-- Ends a running job: outcome kept, record removed, a waiting replacement released
-- (the time it became due is returned, or nil). The pending hash is only read
-- when the running record says a replacement waits (JOB_REPLACEMENT_WAITS): it is the
-- largest structure, and looking up every finished job's id in it is the one
-- avoidable cache miss per job when many jobs are deferred. Every path that
-- makes a job wait for a running one sets the flag (enqueue.lua 'replace',
-- claim.lua); a job that waits without it (written by an older version) is
-- not lost: it stays due at the running job's lease expiry and starts then.
local function finish_active(id, rec, state, result, err, now, keep_ms)
  redis.call('HDEL', K_ACTIVE, id)
  end_lease(id, rec)
  record_result(id, rec, state, result, err, now, keep_ms)
  local moved = release_slots(rec)
  if rec[JOB_REPLACEMENT_WAITS] ~= 1 then return moved end
  return earlier(moved, unblock_pending(id, now))
end

-- Marks a running job as having a replacement that waits for it.
local function mark_replacement_waits(id, rec)
  if rec[JOB_REPLACEMENT_WAITS] ~= 1 then
    rec[JOB_REPLACEMENT_WAITS] = 1
    redis.call('HSET', K_ACTIVE, id, encode(rec))
  end
end

-- Puts a running job back in the queue: a retry or an expired lease (with
-- the error), or a release (err nil). Returns the earliest run time of the
-- jobs its slots let out of a park, or nil.
local function requeue_active(id, rec, run_at, err, now)
  redis.call('HDEL', K_ACTIVE, id)
  end_lease(id, rec)
  local moved = release_slots(rec)
  rec[JOB_LAST_ERROR] = err or rec[JOB_LAST_ERROR]
  rec[JOB_RUN_AT], rec[JOB_STARTED_MS], rec[JOB_WORKER] = false, false, false
  rec[JOB_CANCEL_REQUESTED], rec[JOB_BLOCKED_RUN_AT], rec[JOB_REPLACEMENT_WAITS] = false, false, false
  redis.call('HSET', K_PENDING, id, encode(rec))
  redis.call('ZADD', index_key(rec), run_at, id)
  if err then emit_job('retried', id, rec, now, run_at, err) else emit_job('released', id, rec, now, run_at) end
  return moved
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
local function wake_if_earliest(run_at, channel, due)
  if is_earliest(due or K_DUE, string.format('%d', run_at)) then
    redis.call(PUBLISH, channel, run_at)
  end
end

-- Creates one pending job, as enqueue.lua's create() does for a job that
-- waits for no running one: a generation from `seq`, the record (task,
-- payload, generation, attempts started, max attempts, enqueued_ms, nonce)
-- in `pending`, the run time (ms, as text) in `due`. The caller has checked
-- that the id is free and wakes the workers (wake_if_earliest). Returns the
-- generation.
-- route: nil, or {queue, priority, limit key} ('' and 0 for none).
local function new_job(id, task, payload, max_attempts, run_at_text, nonce, now, route)
  local generation = redis.call('INCR', K_SEQ)
  local rec = {task, payload, generation, 0, max_attempts, now, nonce}
  if route then
    if route[1] ~= '' and route[1] ~= DEFAULT_QUEUE then rec[JOB_QUEUE] = route[1] end
    if route[2] ~= 0 then rec[JOB_PRIORITY] = route[2] end
    if route[3] ~= '' then rec[JOB_LIMIT_KEY] = route[3] end
    register_level(rec[JOB_QUEUE], rec[JOB_PRIORITY] or 0)
  end
  redis.call('HSET', K_PENDING, id, encode(rec))
  redis.call('ZADD', place(rec, tonumber(run_at_text), now), run_at_text, id)
  emit('enqueued', id, task, generation, 0, now, tonumber(run_at_text))
  return generation
end

-- Why a lease entry without its running record is dead-lettered.
local LOST_RUNNING = 'the running job record is missing (evicted under maxmemory, or deleted by hand)'

-- A running job whose lease ran out: its worker died or hung. worker: the
-- worker whose set `held` it was taken from (nil: its entry was in `leases`,
-- and is removed here); a record that says another worker runs it is not
-- that worker's job, and is left alone.
local function expire_lease(id, now, keep_ms, cap, worker)
  local blob = redis.call('HGET', K_ACTIVE, id)
  if not worker then redis.call('ZREM', K_LEASES, id) end
  if not blob then
    dead_letter(id, nil, nil, LOST_RUNNING, now, cap)
    return
  end
  local rec, why = decode(blob)
  if rec and worker and rec[JOB_WORKER] ~= worker then return end
  if not rec then
    redis.call('HDEL', K_ACTIVE, id)
    dead_letter(id, blob, nil, why, now, cap)
    record_result(id, nil, 'failed', '', why, now, keep_ms)
    return
  end
  if rec[JOB_CANCEL_REQUESTED] == 1 then
    finish_active(id, rec, 'cancelled', '', 'cancelled while its worker was gone', now, keep_ms)
  elseif redis.call('HEXISTS', K_PENDING, id) == 1 then
    rec[JOB_REPLACEMENT_WAITS] = 1
    finish_active(id, rec, 'cancelled', '', 'superseded by a replacement while its worker was gone', now, keep_ms)
  elseif rec[JOB_ATTEMPTS] >= rec[JOB_MAX_ATTEMPTS] then
    local reason = 'stalled: the lease expired on attempt ' .. rec[JOB_ATTEMPTS] .. ' of ' .. rec[JOB_MAX_ATTEMPTS]
      .. ' (worker died or hung)'
    dead_letter(id, nil, rec, reason, now, cap)
    finish_active(id, rec, 'failed', '', reason, now, keep_ms)
  else
    requeue_active(id, rec, now, 'lease expired on attempt ' .. rec[JOB_ATTEMPTS] .. ' (worker died or hung)', now)
  end
end

-- A running job its worker gave up (complete.lua 'abandon'), or whose record
-- its worker's renewal found unreadable (renew.lua): it gets a lease of its
-- own that ends when the worker's does (now, if that is gone), and expires
-- then as any other (an unreadable one is dead-lettered with the reason),
-- unless it ends first. Sent twice, it changes nothing more (NX).
local function abandon_lease(id, worker, now)
  local expiry = worker and redis.call('ZSCORE', worker_leases_key(), worker)
  if worker then redis.call('SREM', held_key(worker), id) end
  redis.call('ZADD', K_LEASES, 'NX', expiry or string.format('%d', now), id)
end

-- The lease functions claim.lua calls, in one table: claim.lua's body is at
-- Lua 5.1's limit of 60 upvalues (one more local of this file, and the
-- library does not load).
local LEASE = {}

-- When a running job's lease runs out (ms, as text), or nil: the earlier of
-- its own lease and its worker's. rec: its running record (nil: not read).
function LEASE.expiry(id, rec)
  local own = redis.call('ZSCORE', K_LEASES, id)
  local worker = rec and rec[JOB_WORKER] and redis.call('ZSCORE', worker_leases_key(), rec[JOB_WORKER])
  if own and worker and tonumber(worker) < tonumber(own) then return worker end
  return own or worker
end

-- Expires the running jobs whose lease ran out (expire_lease), at most 100
-- a call (a claim): jobs with a lease of their own, then those of workers
-- whose lease ran out. A worker leaves `worker_leases` once its set is empty.
function LEASE.sweep(now, now_text, keep_ms, cap)
  local budget = 100
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', K_LEASES, '-inf', now_text, 'LIMIT', '0', '100')) do
    expire_lease(id, now, keep_ms, cap)
    budget = budget - 1
  end
  if budget == 0 then return end
  local workers = redis.call('ZRANGEBYSCORE', worker_leases_key(), '-inf', now_text, 'LIMIT', '0', '10')
  for _, worker in ipairs(workers) do
    local ids = redis.call('SPOP', held_key(worker), string.format('%d', budget))
    for _, id in ipairs(ids) do expire_lease(id, now, keep_ms, cap, worker) end
    budget = budget - #ids
    -- Out of budget: the next claim takes the rest (and then drops the entry).
    if budget == 0 then return end
    redis.call('ZREM', worker_leases_key(), worker)
  end
end

-- The earliest lease expiry (ms), a job's own or a worker's, or nil.
function LEASE.earliest()
  local own = redis.call('ZRANGE', K_LEASES, '0', '0', 'WITHSCORES')[2]
  local workers = redis.call('ZRANGE', worker_leases_key(), '0', '0', 'WITHSCORES')[2]
  if own and workers then return math.min(tonumber(own), tonumber(workers)) end
  return tonumber(own or workers)
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
