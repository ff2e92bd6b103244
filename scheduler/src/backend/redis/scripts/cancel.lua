-- ARGV: id, generation ('' for any), keep_result ms, abort channel,
--       expected task ('' or absent for any)
-- Returns {code, generation, extra, removed, removed task}: 'removed' | 'abort_signalled' |
-- 'not_found' | 'finished' (extra = state) | 'wrong_task' (extra = the task of the job
-- holding the id; nothing changed); with 'abort_signalled', removed is the generation of a
-- replacement that waited behind the running job and was removed (else false); with
-- both, removed task is the task of the pending job removed (for metrics; else false).
local id, want, keep_ms, abort_channel = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local now = now_ms()
-- Each record is read and decoded once (a cancel is one round trip on the
-- caller's path: every command it does not need shows in its time).
local pending_blob = redis.call('HGET', K_PENDING, id)
local active_blob = redis.call('HGET', K_ACTIVE, id)
local pending_rec = pending_blob and decode(pending_blob)
local active_rec = active_blob and decode(active_blob)
-- A typed cancel acts only on a job of its task (job ids are shared by all
-- tasks): the pending, running or else finished job of another task is kept.
local expected = ARGV[5] or ''
if expected ~= '' then
  if active_rec and active_rec[JOB_TASK] ~= expected then
    return {'wrong_task', active_rec[JOB_GENERATION], active_rec[JOB_TASK]}
  end
  if pending_rec and pending_rec[JOB_TASK] ~= expected then
    return {'wrong_task', pending_rec[JOB_GENERATION], pending_rec[JOB_TASK]}
  end
  if not active_rec and not pending_rec then
    local r = decode_result(live_result(id, now))
    local task = r and r[OUTCOME_TASK]
    if type(task) == 'string' and task ~= '' and task ~= expected then
      return {'wrong_task', tonumber(r[OUTCOME_GENERATION]) or 0, task}
    end
  end
end
local removed, removed_task = nil, false
-- The earliest run time of the jobs moved out of a park (the slots this
-- cancel gave back): the workers are woken for them.
local moved = nil
local function wake_moved()
  if moved then
    -- The wake channel is the abort channel's sibling (same namespace and scope).
    local prefix = key_prefix(K_DUE)
    redis.call(PUBLISH, prefix .. 'wake' .. string.sub(abort_channel, #prefix + 6), string.format('%d', moved))
  end
end
if pending_blob then
  local rec = pending_rec
  if not rec or want == nil or rec[JOB_GENERATION] == want then
    redis.call('HDEL', K_PENDING, id)
    if rec then
      moved = drop_pending_entry(id, rec)
    else
      redis.call('ZREM', K_DUE, id)
      redis.call('ZREM', far_key(K_DUE), id)
    end
    if rec then
      record_result(id, rec, 'cancelled', '', 'cancelled before it started', now, keep_ms, true)
      removed, removed_task = rec[JOB_GENERATION], rec[JOB_TASK]
    else
      removed = 0
    end
  end
end
if active_blob then
  local rec = active_rec
  if rec and (want == nil or rec[JOB_GENERATION] == want) then
    if rec[JOB_CANCEL_REQUESTED] ~= 1 or rec[JOB_SLOTS] then
      rec[JOB_CANCEL_REQUESTED] = 1
      -- A cancelled job's concurrency slots are free at once.
      moved = earlier(moved, release_slots(rec))
      redis.call('HSET', K_ACTIVE, id, encode(rec))
    end
    redis.call(PUBLISH, abort_channel, rec[JOB_GENERATION] .. ':' .. id)
    wake_moved()
    return {'abort_signalled', rec[JOB_GENERATION], '', removed or false, removed_task}
  end
end
wake_moved()
if removed ~= nil then return {'removed', removed, '', false, removed_task} end
local result = live_result(id, now)
if result then
  local ok, r = pcall(cmsgpack.unpack, result)
  if ok and type(r) == 'table' and (want == nil or r[OUTCOME_GENERATION] == want) then
    return {'finished', r[OUTCOME_GENERATION], r[OUTCOME_STATE]}
  end
end
return {'not_found', 0, ''}
