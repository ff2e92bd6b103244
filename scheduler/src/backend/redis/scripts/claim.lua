-- ARGV: worker id, max jobs, lease ms, keep_result ms, dead-letter cap,
--       claim nonce, '1' when this call retries a claim whose reply was lost
-- Reaps expired leases, then claims up to max due jobs.
-- Idempotent per nonce: each worker's last claim (nonce and ids) is logged
-- under the worker's id for a lease; a claim retried after a lost reply
-- (reconnect, client timeout) with the same nonce gets the same jobs back
-- instead of leaving them to wait out their lease.
-- Returns {now, next_wake_ms_or_-1, jobs, microseconds past now (0..999)}
-- where each job is
--   {id, task, payload, generation, attempt, max_attempts, enqueued_ms, run_at, trace}
-- (trace left out when the job has none: rec[JOB_TRACE] is nil)
-- and bad records found on the way are returned as {id, '', reason} after being dead-lettered.
local worker, max_jobs, lease_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local keep_ms, cap = tonumber(ARGV[4]), tonumber(ARGV[5])
local nonce, retry = ARGV[6], ARGV[7] == '1'
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local sub_ms_us = tonumber(time[2]) % 1000
-- Numbers go to Redis as text formatted once here: Redis formats each Lua
-- number argument with snprintf('%.17g'), a few thousand instructions each.
local now_text = string.format('%d', now)
local lease_until = string.format('%d', now + lease_ms)

-- Log entries of workers that stopped claiming a lease ago are dropped.
local stale_claims = redis.call('ZRANGEBYSCORE', K_CLAIM_EXP, '-inf', now_text, 'LIMIT', '0', '20')
if #stale_claims > 0 then
  call_many('HDEL', K_CLAIM_LOG, stale_claims)
  call_many('ZREM', K_CLAIM_EXP, stale_claims)
end
local replay = nil
if retry then
  local logged = redis.call('HGET', K_CLAIM_LOG, worker)
  if logged then
    local parts = {}
    for part in string.gmatch(logged, '[^%z]+') do parts[#parts + 1] = part end
    if parts[1] == nonce then
      table.remove(parts, 1)
      replay = parts
    end
  end
end

-- Finishing a job sweeps a few expired outcomes; once the queue is idle only
-- claims run, so they sweep too (else the last outcomes would stay forever).
local SWEEP = 2000
local swept = sweep_results(now, SWEEP)

local expired = redis.call('ZRANGEBYSCORE', K_LEASES, '-inf', now_text, 'LIMIT', '0', '100')
for _, id in ipairs(expired) do
  expire_lease(id, now, keep_ms, cap)
end

local jobs = {}
if replay then
  -- This claim already ran: return the jobs it took that are still ours.
  local ids = replay
  local running = call_many('HMGET', K_ACTIVE, ids)
  for j, id in ipairs(ids) do
    local rec = running[j] and decode(running[j])
    if rec and rec[JOB_WORKER] == worker then
      jobs[#jobs + 1] = {id, rec[JOB_TASK], rec[JOB_PAYLOAD], rec[JOB_GENERATION], rec[JOB_ATTEMPTS],
        rec[JOB_MAX_ATTEMPTS], rec[JOB_ENQUEUED_MS], rec[JOB_RUN_AT] or now, rec[JOB_TRACE]}
    end
  end
elseif max_jobs > 0 then
  local due = redis.call('ZRANGEBYSCORE', K_DUE, '-inf', now_text, 'WITHSCORES', 'LIMIT', '0', ARGV[2])
  if #due > 0 then
    -- One read of each hash for the whole batch, one write of each for the jobs
    -- claimed (the ids are distinct, so batching changes no outcome).
    local ids = {}
    for i = 1, #due, 2 do ids[#ids + 1] = due[i] end
    local blobs = call_many('HMGET', K_PENDING, ids)
    local running = call_many('HMGET', K_ACTIVE, ids)
    local claimed, active_args, lease_args = {}, {}, {}
    for j, id in ipairs(ids) do
      local run_at, blob = tonumber(due[2 * j]), blobs[j]
      if not blob then
        redis.call('ZREM', K_DUE, id)
        local reason = 'the job record is missing (index entry without a job)'
        dead_letter(id, nil, nil, reason, now, cap)
        jobs[#jobs + 1] = {id, '', reason}
      else
        local rec, why = decode(blob)
        if not rec then
          redis.call('ZREM', K_DUE, id)
          redis.call('HDEL', K_PENDING, id)
          dead_letter(id, blob, nil, why, now, cap)
          record_result(id, nil, 'failed', '', why, now, keep_ms)
          jobs[#jobs + 1] = {id, '', why}
        elseif running[j] then
          -- The previous run of this id is still going: start after it, and
          -- make sure finishing that run releases this job.
          local previous = decode(running[j])
          if previous then mark_replacement_waits(id, previous) end
          rec[JOB_BLOCKED_RUN_AT] = rec[JOB_BLOCKED_RUN_AT] or run_at
          redis.call('HSET', K_PENDING, id, encode(rec))
          redis.call('ZADD', K_DUE, tonumber(redis.call('ZSCORE', K_LEASES, id) or (now + lease_ms)), id)
        elseif rec[JOB_BLOCKED_RUN_AT] and rec[JOB_BLOCKED_RUN_AT] > now then
          -- It waited for a run of this id that ended without releasing it (a
          -- record without JOB_REPLACEMENT_WAITS, written by an older
          -- version): it is due at its own time, never earlier.
          local own = rec[JOB_BLOCKED_RUN_AT]
          rec[JOB_BLOCKED_RUN_AT] = false
          redis.call('HSET', K_PENDING, id, encode(rec))
          redis.call('ZADD', K_DUE, own, id)
        else
          rec[JOB_ATTEMPTS] = rec[JOB_ATTEMPTS] + 1
          rec[JOB_RUN_AT] = run_at
          rec[JOB_STARTED_MS] = now
          rec[JOB_WORKER] = worker
          rec[JOB_CANCEL_REQUESTED] = false
          rec[JOB_BLOCKED_RUN_AT] = false
          claimed[#claimed + 1] = id
          active_args[#active_args + 1] = id
          active_args[#active_args + 1] = encode(rec)
          lease_args[#lease_args + 1] = lease_until
          lease_args[#lease_args + 1] = id
          jobs[#jobs + 1] = {id, rec[JOB_TASK], rec[JOB_PAYLOAD], rec[JOB_GENERATION], rec[JOB_ATTEMPTS],
            rec[JOB_MAX_ATTEMPTS], rec[JOB_ENQUEUED_MS], run_at, rec[JOB_TRACE]}
          emit_job('started', id, rec, now, run_at)
        end
      end
    end
    if #claimed > 0 then
      call_many('ZREM', K_DUE, claimed)
      call_many('HDEL', K_PENDING, claimed)
      call_many('HSET', K_ACTIVE, active_args)
      call_many('ZADD', K_LEASES, lease_args)
      -- Nonces and job ids never contain control characters: NUL separates them.
      redis.call('HSET', K_CLAIM_LOG, worker, nonce .. '\0' .. table.concat(claimed, '\0'))
      redis.call('ZADD', K_CLAIM_EXP, lease_until, worker)
    end
  end
end

local next_wake = -1
local head = redis.call('ZRANGE', K_DUE, '0', '0', 'WITHSCORES')
if head[2] ~= nil then next_wake = tonumber(head[2]) end
local lease_head = redis.call('ZRANGE', K_LEASES, '0', '0', 'WITHSCORES')
if lease_head[2] ~= nil then
  local l = tonumber(lease_head[2])
  if next_wake < 0 or l < next_wake then next_wake = l end
end
-- More expired outcomes than one sweep takes: come back at once.
if swept == SWEEP then next_wake = now end
return {now, next_wake, jobs, sub_ms_us}
