-- ARGV: keep_result ms, dead-letter cap, wake channel, then 6 values per finished attempt:
--   id, generation, attempt, outcome ('ok' | 'retry' | 'fail' | 'cancelled' | 'release'
--   | 'abandon'), result JSON or error text, retry delay ms
-- Every entry is fenced by (generation, attempt): a worker whose lease was taken
-- over cannot change the job any more.
-- 'abandon': the worker stopped the job without an outcome, because it could
-- not confirm the lease in time. The job keeps running here until its lease
-- runs out, as it would have had the worker died (another worker may not
-- start it sooner: the stopped run may not be quite over), then expires;
-- but the lease is now the job's own, which the worker's later renewals
-- (for its other jobs) do not extend (common.lua abandon_lease).
-- Returns one code per entry: 'completed' | 'retrying' | 'dead_lettered' (failed for good)
-- | 'failed' (failed for good, not dead-lettered: a replacement waited behind it)
-- | 'cancelled' | 'released' | 'abandoned' | 'stale'
local keep_ms, cap, wake_channel = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local now = now_ms()
-- As text, formatted once (see claim.lua).
local keep_until = string.format('%d', now + keep_ms)
local out = {}
-- Jobs put back in `due` (a retry, a release, a replacement that waited)
-- wake the workers: a worker may have planned its next claim before they were
-- there (e.g. at the lease expiry of the very job now retried).
local earliest = nil
local function due_at(t)
  if t and (earliest == nil or t < earliest) then earliest = t end
end

-- The running records of the whole batch in one read. Only when every id is
-- distinct: then each entry touches its own job alone, and the successes can
-- be written together at the end (same writes, fewer calls).
local ids, seen, distinct = {}, {}, true
for i = 4, #ARGV, 6 do
  local id = ARGV[i]
  if seen[id] then distinct = false end
  seen[id] = true
  ids[#ids + 1] = id
end
local prefetched = distinct and #ids > 0 and call_many('HMGET', K_ACTIVE, ids) or nil
local ok_ids, ok_recs, ok_results, ok_exp = {}, {}, {}, {}
-- Those of ok_ids whose running record says a replacement waits.
local ok_waited = {}

for i = 4, #ARGV, 6 do
  local id, gen, attempt = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local outcome, text, delay = ARGV[i + 3], ARGV[i + 4], tonumber(ARGV[i + 5])
  local blob
  if prefetched then blob = prefetched[(i - 4) / 6 + 1] else blob = redis.call('HGET', K_ACTIVE, id) end
  local rec = blob and decode(blob)
  if not rec or rec[JOB_GENERATION] ~= gen or rec[JOB_ATTEMPTS] ~= attempt then
    out[#out + 1] = 'stale'
  elseif outcome == 'abandon' then
    abandon_lease(id, rec[JOB_WORKER], now)
    out[#out + 1] = 'abandoned'
  elseif outcome == 'ok' and prefetched and rec[JOB_CANCEL_REQUESTED] ~= 1 then
    -- finish_active, batched below
    ok_ids[#ok_ids + 1] = id
    ok_recs[#ok_recs + 1] = rec
    if rec[JOB_REPLACEMENT_WAITS] == 1 then ok_waited[#ok_waited + 1] = id end
    if keep_ms > 0 then
      ok_results[#ok_results + 1] = id
      ok_results[#ok_results + 1] = result_blob(rec, 'completed', text, '', now)
      ok_exp[#ok_exp + 1] = keep_until
      ok_exp[#ok_exp + 1] = id
    end
    out[#out + 1] = 'completed'
  elseif outcome == 'ok' and rec[JOB_CANCEL_REQUESTED] ~= 1 then
    due_at(finish_active(id, rec, 'completed', text, '', now, keep_ms))
    out[#out + 1] = 'completed'
  elseif outcome == 'cancelled' or rec[JOB_CANCEL_REQUESTED] == 1 then
    -- An abort was answered (AbortSignalled) before this outcome arrived: the
    -- job ends Cancelled, whatever its run did meanwhile, as the answer said.
    due_at(finish_active(id, rec, 'cancelled', '', 'cancelled', now, keep_ms))
    out[#out + 1] = 'cancelled'
  elseif outcome == 'release' then
    if redis.call('HEXISTS', K_PENDING, id) == 1 then
      rec[JOB_REPLACEMENT_WAITS] = 1
      due_at(finish_active(id, rec, 'cancelled', '', 'superseded by a replacement at shutdown', now, keep_ms))
      out[#out + 1] = 'cancelled'
    else
      -- The attempt counter stays (a fence token is never handed out
      -- twice: a release delivered again is stale); the allowance grows
      -- instead, so that a release uses up no attempt.
      rec[JOB_MAX_ATTEMPTS] = rec[JOB_MAX_ATTEMPTS] + 1
      due_at(requeue_active(id, rec, now, nil, now))
      due_at(now)
      out[#out + 1] = 'released'
    end
  elseif outcome == 'retry' and rec[JOB_ATTEMPTS] < rec[JOB_MAX_ATTEMPTS]
    and redis.call('HEXISTS', K_PENDING, id) == 0 then
    due_at(requeue_active(id, rec, now + delay, text, now))
    due_at(now + delay)
    out[#out + 1] = 'retrying'
  elseif outcome == 'retry' and rec[JOB_ATTEMPTS] < rec[JOB_MAX_ATTEMPTS] then
    -- A replacement is waiting: it wins over retrying the old arguments.
    rec[JOB_REPLACEMENT_WAITS] = 1
    due_at(finish_active(id, rec, 'failed', '', text, now, keep_ms))
    out[#out + 1] = 'failed'
  else
    local reason = text
    if outcome == 'retry' then
      reason = 'attempts exhausted (' .. rec[JOB_ATTEMPTS] .. ' of ' .. rec[JOB_MAX_ATTEMPTS] .. '): ' .. text
    end
    dead_letter(id, nil, rec, reason, now, cap)
    due_at(finish_active(id, rec, 'failed', '', reason, now, keep_ms))
    out[#out + 1] = 'dead_lettered'
  end
end

if #ok_ids > 0 then
  call_many('HDEL', K_ACTIVE, ok_ids)
  end_leases(ok_ids, ok_recs)
  if keep_ms > 0 then
    call_many('HSET', K_RESULTS, ok_results)
    call_many('ZADD', K_RESULTS_EXP, ok_exp)
  else
    call_many('HDEL', K_RESULTS, ok_ids)
    call_many('ZREM', K_RESULTS_EXP, ok_ids)
  end
  -- As much sweeping as one record_result per job would do.
  sweep_results(now, 20 * #ok_ids)
  -- The slots they held (as release_slots does, one HINCRBY and one park
  -- read per slot field for the whole batch), and unblock_pending for each
  -- whose replacement waits (as finish_active does).
  local freed, freed_order, parks_of = {}, {}, {}
  local function free(field, park)
    if not freed[field] then
      freed[field] = 0
      freed_order[#freed_order + 1] = field
      parks_of[field] = park
    end
    freed[field] = freed[field] + 1
  end
  for _, rec in ipairs(ok_recs) do
    local held, task, key = rec[JOB_SLOTS], rec[JOB_TASK], rec[JOB_LIMIT_KEY]
    if held == 1 or held == 2 then
      free(task_slot(task), task_park(task))
      if held == 2 and key then free(key_slot(task, key), key_park(task, key)) end
    end
  end
  for _, field in ipairs(freed_order) do due_at(give_back(field, parks_of[field], freed[field])) end
  for _, id in ipairs(ok_waited) do due_at(unblock_pending(id, now)) end
  -- announce_finished and emit for each, as record_result does.
  if anyone_listens(now) then
    for j, id in ipairs(ok_ids) do
      announce_finished(id, ok_recs[j][JOB_GENERATION], now)
      emit_job('completed', id, ok_recs[j], now)
    end
  end
end
-- (The job may be in any due set: when in doubt, wake.)
if earliest ~= nil then redis.call(PUBLISH, wake_channel, string.format('%d', earliest)) end
return out
