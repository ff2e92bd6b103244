-- ARGV: id, when kind ('now' | 'at' | 'after'), when (at: microseconds since the epoch; after: microseconds from now), wake channel,
-- generation (0: whichever job the id holds; else only that generation, and
-- 'not_found' for any other)
-- Moves a deferred or queued job to another run time. It stays the same job:
-- same generation, arguments and attempts (a re-sent call moves it to the
-- same time again). A job waiting for a running job of its id keeps waiting,
-- with its own run time moved. A running or finished job is not moved.
-- Returns {code, generation, run_at}: 'moved' | 'running' | 'not_found' |
-- 'corrupt' (its record cannot be read: the next claim dead-letters it).
local id, kind, when, wake_channel = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local want = tonumber(ARGV[5]) or 0
local function other(rec)
  return want > 0 and tonumber(rec[JOB_GENERATION]) ~= want
end
local now, now_us = now_ms_us()
local blob = redis.call('HGET', K_PENDING, id)
if not blob then
  local running = redis.call('HGET', K_ACTIVE, id)
  local rec = running and decode(running)
  if rec and not other(rec) then return {'running', rec[JOB_GENERATION], rec[JOB_RUN_AT] or now} end
  return {'not_found', 0, 0}
end
local rec = decode(blob)
if not rec then return {'corrupt', 0, 0} end
if other(rec) then return {'not_found', 0, 0} end
local run_at = when
if kind == 'at' then run_at = instant_ms(ARGV[3]) end
if kind == 'after' then run_at = instant_ms(now_us + when) elseif kind == 'now' then run_at = now end
if rec[JOB_BLOCKED_RUN_AT] then
  rec[JOB_BLOCKED_RUN_AT] = run_at
  redis.call('HSET', K_PENDING, id, encode(rec))
else
  -- A job waiting in a park for a slot goes back to its due set at the new
  -- time (the claim that takes it checks its slots again); one moved far
  -- from now waits in the far twin (common.lua, far-future jobs).
  if rec[JOB_PARKED] then
    redis.call('ZREM', rec[JOB_PARKED], id)
    rec[JOB_PARKED] = false
    redis.call('HSET', K_PENDING, id, encode(rec))
  end
  -- Its entry leaves the due set or its far twin for the other when the
  -- new time is on the other side of FAR_MS.
  local near = index_key(rec)
  local due = place(rec, run_at, now)
  if due == near then redis.call('ZREM', far_key(near), id) else redis.call('ZREM', near, id) end
  redis.call('ZADD', due, string.format('%.3f', run_at), id)
  wake_if_earliest(run_at, wake_channel, due)
end
emit_job('rescheduled', id, rec, now, run_at)
return {'moved', rec[JOB_GENERATION], run_at}
