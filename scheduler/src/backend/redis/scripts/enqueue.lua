-- ARGV: mode ('enqueue' | 'replace'), if_running ('abort' | 'after' | 'keep'), wake channel,
--       abort channel, dead-letter cap, layout ('' | 'traced' | 'uniform'), then
--   layout '': 8 values per job:
--       id, task, payload, max_attempts, when kind ('now' | 'at' | 'after'), when (at: microseconds since the epoch; after: microseconds from now), nonce,
--       unique until the result expires ('1' | '0')
--   layout 'traced': the same and a ninth, the W3C traceparent of the span
--       that enqueued the job ('' for none; stored as JOB_TRACE)
--   layout 'routed': the same as 'traced' and three more: queue ('' for
--       'default'), priority (an integer, 0 the default), limit key ('' for none)
--   layout 'uniform' (a batch whose jobs share everything but id, payload and
--   nonce, as a bulk enqueue usually does): task, max_attempts, when kind, when,
--   unique once, then 3 values per job: id, payload, nonce. (Each argument costs
--   Redis about 1,300 instructions to parse and hand to Lua: 5 fewer per job.)
-- Returns 4 values per job, flat (no array per job): code, generation, run_at, extra
-- ('finished' in 'enqueue' mode with the unique flag: 'finished', generation of
-- the finished job, when it finished, its state; 'duplicate': extra is
-- 'state:task' of the job holding the id; 'wrong_task' in 'replace' mode:
-- extra is the task of the job of another task holding the id).
-- 'replace' mode returns a fifth value per job: the generation of the pending
-- job (deferred, queued, or waiting behind the running one) the new job took
-- the place of, 0 when it replaced none.
-- Layout 'uniform' returns the run time of the jobs it created first, then one
-- entry per job: the generation alone for a job it created, else the array
-- {code, generation, run_at, extra}. (A value costs Redis and the client a few
-- thousand instructions to send and decode: 1 per created job instead of 4.)
--
-- In 'enqueue' mode with two or more distinct ids (a bulk enqueue), the hashes are read
-- once for the batch (one HMGET each of pending, active and results) and the new jobs are
-- written together at the end (one INCRBY of seq for their count, generations
-- assigned in job order, one HSET, one ZADD). Ids are distinct, so no job of
-- the batch reads what another one writes: same replies, same final state as
-- the per-job path, which 'replace' and batches with a repeated id keep.
local mode, if_running, wake_channel, abort_channel = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local cap = tonumber(ARGV[5])
local uniform = ARGV[6] == 'uniform'
-- Where the jobs start in ARGV, and how many values each takes.
local FIRST, STRIDE = 7, 8
local routed = ARGV[6] == 'routed'
local traced = ARGV[6] == 'traced' or routed
if traced then STRIDE = 9 end
if routed then STRIDE = 12 end
-- The shared values of a uniform batch (its run time is worked out once, at the first job).
local u_task, u_max_attempts, u_kind, u_when, u_unique, u_run_at, u_run_at_text
if uniform then
  FIRST, STRIDE = 12, 3
  u_task, u_max_attempts, u_kind, u_when = ARGV[7], tonumber(ARGV[8]), ARGV[9], ARGV[10]
  u_unique = ARGV[11] == '1'
end
local replacing = mode == 'replace'
local now, now_us = now_ms_us()
local out = {}
local earliest = nil

-- Appends one job's reply (4 values, none nil).
local function reply(code, generation, run_at, extra)
  local n = #out
  if uniform then
    out[n + 1] = {code, generation, run_at, extra}
  else
    out[n + 1], out[n + 2], out[n + 3], out[n + 4] = code, generation, run_at, extra
  end
end
-- A uniform batch's reply starts with the run time of the jobs it creates
-- (set at the end: it is worked out at the first job).
if uniform then out[1] = 0 end

local ids = {}
for i = FIRST, #ARGV, STRIDE do ids[#ids + 1] = ARGV[i] end
-- One job takes the per-job path: plain HGET/INCR/HSET/ZADD cost less than
-- building the batch (measured with callgrind on redis-server: about 17 % of
-- a single enqueue's instructions).
local batched = mode == 'enqueue' and #ids > 1
if batched then
  local seen = {}
  for j = 1, #ids do
    if seen[ids[j]] then batched = false end
    seen[ids[j]] = true
  end
end
local pending_blobs, active_blobs, result_blobs
if batched then
  pending_blobs = call_many('HMGET', K_PENDING, ids)
  active_blobs = call_many('HMGET', K_ACTIVE, ids)
  result_blobs = call_many('HMGET', K_RESULTS, ids)
end
-- Jobs created by a batched call, written at the end: {table and index of the
-- generation in the reply, id, record, score} (unpacked into names in write_created).
local created = {}

local now_text = string.format('%d', now)

-- The run time, and the same as text for ZADD when it is at hand (Redis would
-- format a Lua number with %.17g for every score of a batch otherwise).
local function run_at_of(kind, value)
  if kind == 'at' then return instant_ms(value) end
  if kind == 'after' then return instant_ms(now_us + tonumber(value)) end
  return now, now_text
end

-- The current job's run time as text, or nil (set by the loop below, read by create).
local run_at_text
-- The generation of the pending job the current one replaces, as text for
-- its 'enqueued' event, or nil (set by the loop below, read by create).
local replaced_now
-- The current job's trace context, or nil (set by the loop below, read by create).
local trace_now
-- The current job's queue, priority and limit key, or nil (layout 'routed').
local route_now
-- The set of the earliest job created (to wake the workers for it).
local earliest_key = K_DUE
-- Whether jobs left a park (slots freed): the workers are woken for them.
local moved_out = false

-- Creates a job and appends its reply (code, generation, run_at, extra).
local function create(id, task, payload, max_attempts, run_at, nonce, blocked, code, extra)
  -- The required fields: task, payload, generation (set below), attempts
  -- started, max attempts, enqueued_ms, nonce.
  local rec = {task, payload, 0, 0, max_attempts, now, nonce}
  if trace_now then rec[JOB_TRACE] = trace_now end
  if route_now then
    if route_now[1] ~= '' and route_now[1] ~= DEFAULT_QUEUE then rec[JOB_QUEUE] = route_now[1] end
    if route_now[2] ~= 0 then rec[JOB_PRIORITY] = route_now[2] end
    if route_now[3] ~= '' then rec[JOB_LIMIT_KEY] = route_now[3] end
    register_level(rec[JOB_QUEUE], rec[JOB_PRIORITY] or 0)
  end
  local due = index_key(rec)
  if not blocked then due = place(rec, run_at, now) end
  local score = run_at_text or run_at
  if blocked then
    rec[JOB_BLOCKED_RUN_AT] = run_at
    score = blocked
  end
  if not blocked and (earliest == nil or run_at < earliest) then
    earliest, earliest_key = run_at, due
  end
  -- holder[at] is the generation in the reply, filled in once it is known.
  local holder, at = out, #out + 2
  if uniform and not blocked and code == 'enqueued' then
    at = #out + 1
    out[at] = 0
  else
    reply(code, 0, run_at, extra)
    if uniform then holder, at = out[#out], 2 end
  end
  if batched then
    created[#created + 1] = {holder, at, id, rec, score, due}
    return
  end
  local gen = redis.call('INCR', K_SEQ)
  rec[JOB_GENERATION] = gen
  holder[at] = gen
  redis.call('HSET', K_PENDING, id, encode(rec))
  redis.call('ZADD', due, score, id)
  emit('enqueued', id, task, gen, 0, now, run_at, replaced_now)
  replaced_now = nil
end

-- Writes the jobs a batched call created.
local function write_created()
  local n = #created
  if n == 0 then return end
  local first = redis.call('INCRBY', K_SEQ, n) - n
  -- scores per due set (one set, `due`, unless the jobs are routed)
  local fields, by_key, order = {}, {}, {}
  for k = 1, n do
    local entry = created[k]
    local holder, at, id, rec, score, due = entry[1], entry[2], entry[3], entry[4], entry[5], entry[6]
    rec[JOB_GENERATION] = first + k
    holder[at] = first + k
    fields[2 * k - 1] = id
    fields[2 * k] = encode(rec)
    emit('enqueued', id, rec[JOB_TASK], first + k, 0, now, rec[JOB_BLOCKED_RUN_AT] or tonumber(score))
    local scores = by_key[due]
    if not scores then
      scores = {}
      by_key[due] = scores
      order[#order + 1] = due
    end
    scores[#scores + 1] = score
    scores[#scores + 1] = id
  end
  call_many('HSET', K_PENDING, fields)
  for _, due in ipairs(order) do call_many('ZADD', due, by_key[due]) end
end

local function running_lease(id, rec)
  return tonumber(LEASE.expiry(id, rec) or now)
end

for j = 1, #ids do
  local i = FIRST + (j - 1) * STRIDE
  local id, task, payload, max_attempts, nonce, unique, run_at
  if uniform then
    id, payload, nonce = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    task, max_attempts, unique = u_task, u_max_attempts, u_unique
    if not u_run_at then
      u_run_at, u_run_at_text = run_at_of(u_kind, u_when)
      u_run_at_text = u_run_at_text or string.format('%d', u_run_at)
    end
    run_at, run_at_text = u_run_at, u_run_at_text
  else
    id, task, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    max_attempts = tonumber(ARGV[i + 3])
    run_at, run_at_text = run_at_of(ARGV[i + 4], ARGV[i + 5])
    nonce = ARGV[i + 6]
    unique = ARGV[i + 7] == '1'
    trace_now = nil
    if traced and ARGV[i + 8] ~= '' then trace_now = ARGV[i + 8] end
    if routed then route_now = {ARGV[i + 9], tonumber(ARGV[i + 10]) or 0, ARGV[i + 11]} end
  end
  local pending_blob, active_blob
  if batched then
    pending_blob, active_blob = pending_blobs[j], active_blobs[j]
  else
    pending_blob = redis.call('HGET', K_PENDING, id)
    active_blob = redis.call('HGET', K_ACTIVE, id)
  end
  local pending = pending_blob and decode(pending_blob)
  local active = active_blob and decode(active_blob)
  -- 'replace' mode: the generation of the pending job this one replaces (the reply's fifth value).
  local replaced = 0
  if pending_blob and not pending then
    -- Garbage under this id: keep it for inspection, then start afresh.
    dead_letter(id, pending_blob, nil, 'corrupt job record replaced by a new enqueue', now, cap)
    redis.call('HDEL', K_PENDING, id)
    redis.call('ZREM', K_DUE, id)
  end
  if active_blob and not active then
    dead_letter(id, active_blob, nil, 'corrupt running job record replaced by a new enqueue', now, cap)
    redis.call('HDEL', K_ACTIVE, id)
    drop_lease(id)
  end

  -- The outcome record of a finished job under this id, read when no job is
  -- pending or running (the same request may have created it and be re-sent,
  -- and a request with the unique flag reports it), and in 'enqueue' mode when
  -- the pending or running job is another request's: a re-sent request whose
  -- job ran and was superseded since is answered with its own job, not as a
  -- duplicate of the newer one (a duplicate costs one more read).
  local done
  local mine = (pending and pending[JOB_NONCE] == nonce) or (active and active[JOB_NONCE] == nonce)
  if not pending and not active then
    local outcome_blob
    if batched then outcome_blob = result_blobs[j] else outcome_blob = redis.call('HGET', K_RESULTS, id) end
    done = decode_result(outcome_blob)
  elseif mode == 'enqueue' and not mine then
    done = decode_result(redis.call('HGET', K_RESULTS, id))
  end

  if pending and pending[JOB_NONCE] == nonce then
    -- The same request, re-sent after a reconnect: report what it did the first time.
    reply('enqueued', pending[JOB_GENERATION], tonumber(entry_score(pending, id) or now), 0)
  elseif active and active[JOB_NONCE] == nonce then
    reply('enqueued', active[JOB_GENERATION], active[JOB_RUN_AT] or now, 0)
  elseif done and done[OUTCOME_NONCE] == nonce and type(done[OUTCOME_GENERATION]) == 'number' then
    -- Re-sent after its job already ran (or was cancelled): still one job.
    reply('enqueued', done[OUTCOME_GENERATION], tonumber(done[OUTCOME_RUN_AT]) or tonumber(done[OUTCOME_FINISHED_MS])
      or now, 0)
  elseif mode == 'enqueue' then
    if pending then
      local score = tonumber(entry_score(pending, id) or now)
      local planned = pending[JOB_BLOCKED_RUN_AT] or score
      local state = 'deferred'
      if pending[JOB_BLOCKED_RUN_AT] or score <= now then state = 'queued' end
      reply('duplicate', pending[JOB_GENERATION], planned, state .. ':' .. pending[JOB_TASK])
    elseif active then
      reply('duplicate', active[JOB_GENERATION], active[JOB_RUN_AT] or now, 'running:' .. active[JOB_TASK])
    else
      -- Asked to keep the id taken while a finished outcome is kept: report it.
      -- (The record read above, unless its retention is over: live_result.)
      local finished = nil
      if unique and done and type(done[OUTCOME_STATE]) == 'string' then
        local expires = redis.call('ZSCORE', K_RESULTS_EXP, id)
        if not (expires and tonumber(expires) <= now) then finished = done end
      end
      if finished then
        reply('finished', tonumber(finished[OUTCOME_GENERATION]) or 0, tonumber(finished[OUTCOME_FINISHED_MS]) or now,
          finished[OUTCOME_STATE])
      else
        create(id, task, payload, max_attempts, run_at, nonce, nil, 'enqueued', 0)
      end
    end
  else
    -- The policy decides whenever a job runs, whether or not a replacement
    -- already waits behind it: 'keep' changes nothing (a waiting replacement
    -- keeps waiting), 'after' and 'abort' put the new job in the waiting
    -- one's place and name it (the fifth value).
    -- A replace acts only on a job of its own task (job ids are shared by
    -- all tasks): a job of another task is kept, answered 'wrong_task'.
    local holder = (active and active[JOB_TASK] ~= task and active)
      or (pending and pending[JOB_TASK] ~= task and pending)
    if holder then
      reply('wrong_task', holder[JOB_GENERATION], holder[JOB_RUN_AT] or now, holder[JOB_TASK])
    elseif active then
      if if_running == 'keep' then
        reply('running', active[JOB_GENERATION], active[JOB_RUN_AT] or now, 0)
      else
        local code = 'queued_after'
        -- The running job learns that a replacement waits and, with
        -- 'abort', that it is asked to stop: one write.
        local abort = if_running == 'abort'
        if active[JOB_REPLACEMENT_WAITS] ~= 1 or (abort and (active[JOB_CANCEL_REQUESTED] ~= 1 or active[JOB_SLOTS])) then
          active[JOB_REPLACEMENT_WAITS] = 1
          if abort then
            active[JOB_CANCEL_REQUESTED] = 1
            -- An aborted job's concurrency slots are free at once.
            local moved = release_slots(active)
            if moved then moved_out = true end
          end
          redis.call('HSET', K_ACTIVE, id, encode(active))
        end
        if abort then
          code = 'aborted'
          redis.call(PUBLISH, abort_channel, active[JOB_GENERATION] .. ':' .. id)
        end
        if pending then
          replaced = pending[JOB_GENERATION]
          replaced_now = string.format('%d', replaced)
          drop_pending_entry(id, pending)
        end
        create(id, task, payload, max_attempts, run_at, nonce, running_lease(id, active), code, active[JOB_GENERATION])
      end
    elseif pending then
      local score = tonumber(entry_score(pending, id) or now)
      if drop_pending_entry(id, pending) then moved_out = true end
      replaced = pending[JOB_GENERATION]
      replaced_now = string.format('%d', replaced)
      create(id, task, payload, max_attempts, run_at, nonce, nil, 'replaced', pending[JOB_BLOCKED_RUN_AT] or score)
    else
      create(id, task, payload, max_attempts, run_at, nonce, nil, 'enqueued', 0)
    end
  end
  if replacing then out[#out + 1] = replaced end
end

write_created()
if uniform then out[1] = u_run_at or now end
if moved_out then
  redis.call(PUBLISH, wake_channel, now_text)
elseif earliest ~= nil then
  wake_if_earliest(earliest, wake_channel, earliest_key)
end
return out
