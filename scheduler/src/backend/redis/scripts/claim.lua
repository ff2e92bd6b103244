-- ARGV: worker id, max jobs, lease ms, keep_result ms, dead-letter cap,
--       claim nonce, '1' when this call retries a claim whose reply was lost,
--       then, optional: the queues served in the order to claim from them
--       ('\n'-joined; '' for 'default', '*' for every queue), the tasks served ('\n'-joined; ''
--       for all), their limits (lines 'task\tconcurrency\tper-key concurrency\t
--       rate count\trate window ms\tper-key rate count\tper-key window ms', 0
--       for none), the wake channel (for jobs let out of a park), '1' when the
--       limits are kept in the home shard of a sharded namespace
-- Reaps expired leases, then claims up to max due jobs.
-- Idempotent per nonce: each worker's last claim (nonce and ids) is logged
-- under the worker's id for a lease; a claim retried after a lost reply
-- (reconnect, client timeout) with the same nonce gets the same jobs back
-- instead of leaving them to wait out their lease.
-- Returns {now, next wake (microseconds, rounded up) or -1, jobs, microseconds past now (0..999),
-- candidates} where each job is begin_attempt's entry (common.lua)
-- and bad records found on the way are returned as {id, '', reason} after being dead-lettered.
local worker, max_jobs, lease_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local keep_ms, cap = tonumber(ARGV[4]), tonumber(ARGV[5])
local nonce, retry = ARGV[6], ARGV[7] == '1'
-- Read here rather than with common.lua's now_ms_us: this body already uses
-- 60 of common.lua's locals, the most a Lua 5.1 function can (one more and
-- the library does not load).
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local sub_ms_us = tonumber(time[2]) % 1000
-- Numbers go to Redis as text formatted once here: Redis formats each Lua
-- number argument with snprintf('%.17g'), a few thousand instructions each.
local now_text = string.format('%d', now)
-- Due sets hold instants to the microsecond (common.lua instant_ms): they are
-- compared with Redis time to the microsecond.
local now_due_text = string.format('%d.%03d', now, sub_ms_us)
local now_precise = now + sub_ms_us / 1000
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

LEASE.sweep(now, now_text, keep_ms, cap)

-- The queues this worker serves, in the order it asks for them ('\n'-joined;
-- '' for 'default' alone), each as its due sets, highest priority first.
-- A queue's due sets are named when a claim first visits it: a claim that
-- fills its batch from the first queue builds no other queue's names.
local served_queues = {}
local queue_order, levels, fixed_keys = {}, nil, nil
local queues_arg = ARGV[8] or ''
if queues_arg == '' then
  fixed_keys = {K_DUE}
  served_queues[DEFAULT_QUEUE] = true
elseif queues_arg == '*' then
  -- Every queue (test helpers): every due set, whatever its queue.
  fixed_keys = all_due_keys()
  setmetatable(served_queues, {__index = function() return true end})
else
  levels = queue_levels_lazy()
  for queue in string.gmatch(queues_arg, '[^\n]+') do
    served_queues[queue] = true
    queue_order[#queue_order + 1] = queue
  end
end
-- Calls visit(due_set) for each served due set in claim order until it
-- returns true.
local function each_due_set(visit)
  if fixed_keys then
    for _, due_set in ipairs(fixed_keys) do
      if visit(due_set) then return end
    end
    return
  end
  for _, queue in ipairs(queue_order) do
    for _, due_set in ipairs(queue_due_keys(queue, levels, {})) do
      if visit(due_set) then return end
    end
  end
end
-- The tasks it can run ('\n'-joined; '' for every task): a job of another
-- task waits in its queue's `park:u:` park for a worker that serves both,
-- using no attempt.
-- Both lists are looked up lazily, once per task a claim meets (a plain
-- find in the argument): parsing them whole cost every claim, however few
-- jobs it took.
local serves_all = (ARGV[9] or '') == ''
local tasks_arg = '\n' .. (ARGV[9] or '') .. '\n'
local served_tasks = setmetatable({}, {__index = function(t, task)
  local found = string.find(tasks_arg, '\n' .. task .. '\n', 1, true) ~= nil
  rawset(t, task, found)
  return found
end})
-- The limits of the tasks it serves (common.lua, limits_by_task).
local any_limits = (ARGV[10] or '') ~= ''
local limits = limits_by_task(ARGV[10] or '')
local wake_channel = ARGV[11] or ''
-- '1' on a sharded namespace: a limited job is not started here but parked
-- and returned as a candidate {id, task, key or '', generation, the attempt it
-- would start} for the home shard to grant (common.lua, global_park).
local global_limits = ARGV[12] == '1'
local candidates = {}
-- The parks whose timer this claim set (once each).
local armed = {}
-- Slot counts read once per claim and kept up to date here.
local counts = {}
local function slot_count(field)
  local c = counts[field]
  if c == nil then
    c = tonumber(redis.call('HGET', slots_key(), field) or '0')
    counts[field] = c
  end
  return c
end
-- Slots taken by this claim, per field, written with one HINCRBY each at
-- the end (a batch of one task's jobs costs one command, not one per job).
local taken, taken_order = {}, {}
local function take_slot(field)
  counts[field] = slot_count(field) + 1
  if not taken[field] then
    taken[field] = 0
    taken_order[#taken_order + 1] = field
  end
  taken[field] = taken[field] + 1
end
-- Jobs claimed (rejected records aside): a full batch has the worker claim
-- again at once, so it needs no next wake-up time.
local claimed_count = 0
local unparked = false
-- The parks that may hold jobs (`parks`), read once per claim and only when
-- needed; nearly always empty, so a claim pays one SMEMBERS for the unserved,
-- rate and slot parks together.
local parks_list = nil
local function parks_now()
  if parks_list == nil then parks_list = redis.call('SMEMBERS', parks_key()) end
  return parks_list
end
-- Whether a park with a timer (a rate's, or one of the limits kept across
-- shards) may hold jobs (the timers are then read).
local function timed_parks_exist()
  local rate, global = key_prefix(K_DUE) .. 'park:r', key_prefix(K_DUE) .. 'park:g'
  for _, park in ipairs(parks_now()) do
    local head = string.sub(park, 1, #rate)
    if head == rate or head == global then return true end
  end
  return false
end
local rate_parked = false
-- The ids claimed from each due set, NUL-joined (for the claim log).
local claimed_all = {}

local jobs = {}
-- Claims up to want due jobs of one due set.
local function claim_from(due_set, want)
  promote_far(due_set, now, 1000)
  local due = redis.call('ZRANGEBYSCORE', due_set, '-inf', now_due_text, 'WITHSCORES', 'LIMIT', '0',
    string.format('%d', want))
  if #due == 0 then return end
  -- One read of each hash for the whole batch, one write of each for the jobs
  -- claimed (the ids are distinct, so batching changes no outcome).
  local ids = {}
  for i = 1, #due, 2 do ids[#ids + 1] = due[i] end
  local blobs = call_many('HMGET', K_PENDING, ids)
  local running = call_many('HMGET', K_ACTIVE, ids)
  local claimed, active_args = {}, {}
  -- Jobs parked, written once for the batch (common.lua park_jobs).
  local parked = {}
  for j, id in ipairs(ids) do
    local run_at, blob = tonumber(due[2 * j]), blobs[j]
    if not blob then
      redis.call('ZREM', due_set, id)
      local reason = 'the job record is missing (index entry without a job)'
      dead_letter(id, nil, nil, reason, now, cap)
      jobs[#jobs + 1] = {id, '', reason}
    else
      local rec, why = decode(blob)
      local task = rec and rec[JOB_TASK]
      local lim = rec and limits[task]
      local park = nil
      if rec and not running[j] and not (rec[JOB_BLOCKED_RUN_AT] and rec[JOB_BLOCKED_RUN_AT] > now_precise) then
        if not serves_all and not served_tasks[task] then
          local queue = rec[JOB_QUEUE] or DEFAULT_QUEUE
          park = unserved_park(queue, task)
        elseif lim and global_limits then
          -- Its limits are kept in the home shard: the worker asks there.
          park = global_park('gs', task)
          candidates[#candidates + 1] = {id, task, rec[JOB_LIMIT_KEY] or '', rec[JOB_GENERATION],
            rec[JOB_ATTEMPTS] + 1}
          -- Let out a second from now if the worker never comes back.
          if not armed[park] then
            armed[park] = true
            arm_timer(park, now + 1000)
          end
        elseif lim then
          local key = rec[JOB_LIMIT_KEY]
          -- The instant its key's rate, else its task's, allows it (now if it does).
          local log, rpark, n, w, at = nil, nil, 0, 0, now
          if lim.krn > 0 and key then
            log, rpark, n, w = key_rate_log(task, key), key_rate_park(task, key), lim.krn, lim.krw
            at = rate_next(log, n, w, now)
          end
          if at <= now and lim.rn > 0 then
            log, rpark, n, w = rate_log(task), rate_park(task), lim.rn, lim.rw
            at = rate_next(log, n, w, now)
          end
          if at > now then
            park = rpark
            rate_parked = true
            -- Over its rate: it waits for the instant the budget allows.
            redis.call('HSET', rates_key(), park, string.format('%d:%d:', n, w) .. log)
            arm_timer(park, at)
          elseif lim.kc > 0 and key and slot_count(key_slot(task, key)) >= lim.kc then
            park = key_park(task, key)
          elseif lim.c > 0 and slot_count(task_slot(task)) >= lim.c then
            park = task_park(task)
          end
        end
      end
      if not rec then
        redis.call('ZREM', due_set, id)
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
        redis.call('ZADD', due_set, tonumber(LEASE.expiry(id, previous) or (now + lease_ms)), id)
      elseif rec[JOB_BLOCKED_RUN_AT] and rec[JOB_BLOCKED_RUN_AT] > now_precise then
        -- It waited for a run of this id that ended without releasing it (a
        -- record without JOB_REPLACEMENT_WAITS, written by an older
        -- version): it is due at its own time, never earlier.
        local own = rec[JOB_BLOCKED_RUN_AT]
        rec[JOB_BLOCKED_RUN_AT] = false
        redis.call('HSET', K_PENDING, id, encode(rec))
        redis.call('ZADD', due_set, own, id)
      elseif park then
        -- Its slots are taken, it waits for a grant, or no worker here runs
        -- its task: it waits, using no attempt (written below, for the batch).
        parked[#parked + 1] = {id, rec, park, run_at}
      else
        if lim then
          local key = rec[JOB_LIMIT_KEY]
          -- Its start counts against its rates; jobs waiting for the budget
          -- get a timer for the instant it allows the next.
          if lim.rn > 0 then count_start(rate_log(task), rate_park(task), lim.rn, lim.rw, now) end
          if lim.krn > 0 and key then
            count_start(key_rate_log(task, key), key_rate_park(task, key), lim.krn, lim.krw, now)
          end
          if lim.c > 0 or (lim.kc > 0 and key) then
            take_slot(task_slot(task))
            rec[JOB_SLOTS] = 1
            if lim.kc > 0 and key then
              take_slot(key_slot(task, key))
              rec[JOB_SLOTS] = 2
            end
          end
        end
        jobs[#jobs + 1] = begin_attempt(id, rec, run_at, worker, now, active_args)
        claimed[#claimed + 1] = id
      end
    end
  end
  if #parked > 0 then park_jobs(due_set, parked) end
  if #claimed > 0 then
    call_many('ZREM', due_set, claimed)
    write_started(claimed, active_args, worker, lease_until)
    claimed_all[#claimed_all + 1] = table.concat(claimed, '\0')
    claimed_count = claimed_count + #claimed
  end
end
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
  -- Jobs of a task no running worker served, parked by another worker's
  -- claim: back to their due sets when this worker serves the task.
  if serves_all == false then
    local prefix = key_prefix(K_DUE) .. 'park:u:'
    for _, park in ipairs(parks_now()) do
      if string.sub(park, 1, #prefix) == prefix then
        -- park:u:<queue length>:<queue>:<task>
        local len, rest = string.match(string.sub(park, #prefix + 1), '^(%d+):(.*)$')
        if len then
          local queue = string.sub(rest, 1, tonumber(len))
          local task = string.sub(rest, tonumber(len) + 2)
          if served_queues[queue] and served_tasks[task] and not unpark(park, 10000) then
            redis.call('SREM', parks_key(), park)
          end
        end
      end
    end
  end
  -- Rate parks whose timer is due: as many jobs as the budget allows now
  -- (at least one) go back to their due sets; if others wait, the timer is
  -- set a window later, in case the ones let out do not start (the start of
  -- one sets it to the exact instant).
  local fired = {}
  if timed_parks_exist() then
    fired = redis.call('ZRANGEBYSCORE', timers_key(), '-inf', now_text, 'LIMIT', '0', '20')
  end
  for _, park in ipairs(fired) do
    redis.call('ZREM', timers_key(), park)
    local spec = redis.call('HGET', rates_key(), park)
    local n, w, log = nil, nil, nil
    if spec then n, w, log = string.match(spec, '^(%d+):(%d+):(.*)$') end
    local allowed, window = 1, 1000
    if log then
      n, w = tonumber(n), tonumber(w)
      allowed, window = math.max(rate_left(log, n, w, now), 1), w
    end
    unpark(park, allowed)
    if redis.call('EXISTS', park) == 1 then
      arm_timer(park, now + window)
    else
      redis.call('HDEL', rates_key(), park)
      redis.call('SREM', parks_key(), park)
    end
  end
  -- Candidates take room in the batch: the worker can run every one granted.
  each_due_set(function(due_set)
    if #jobs + #candidates >= max_jobs then return true end
    claim_from(due_set, max_jobs - #jobs - #candidates)
    return false
  end)
end

-- A task whose slots are free while jobs wait in its park (their turn was
-- handed to a job that then waited for its key, or was taken by a job that
-- came due meanwhile): as many as there are free slots go back to due.
-- (Only parks in the registry hold jobs: one SMEMBERS, not a read per task.)
if any_limits then
  local task_parks = task_park('')
  for _, park in ipairs(parks_now()) do
    if string.sub(park, 1, #task_parks) == task_parks then
      local task = string.sub(park, #task_parks + 1)
      local lim = limits[task]
      if lim and lim.c > 0 then
        local free = lim.c - slot_count(task_slot(task))
        if free > 0 then
          if unpark(park, free) then
            unparked = true
          elseif redis.call('EXISTS', park) == 0 then
            redis.call('SREM', parks_key(), park)
          end
        end
      end
    end
  end
end
for _, field in ipairs(taken_order) do
  redis.call('HINCRBY', slots_key(), field, string.format('%d', taken[field]))
end
if unparked then redis.call(PUBLISH, wake_channel, now_text) end
if #claimed_all > 0 then
  -- Nonces and job ids never contain control characters: NUL separates them.
  redis.call('HSET', K_CLAIM_LOG, worker, nonce .. '\0' .. table.concat(claimed_all, '\0'))
  redis.call('ZADD', K_CLAIM_EXP, lease_until, worker)
end

local next_wake = -1
-- A full batch: the worker claims again at once and reads no wake-up time
-- (one ZRANGE per due set saved, 40 with 10 queues of 4 priorities).
if max_jobs > 0 and claimed_count + #candidates >= max_jobs then
  return {now, now * 1000 + sub_ms_us, jobs, sub_ms_us, candidates}
end
each_due_set(function(due_set)
  local head = redis.call('ZRANGE', due_set, '0', '0', 'WITHSCORES')
  if head[2] ~= nil then
    local t = tonumber(head[2])
    if next_wake < 0 or t < next_wake then next_wake = t end
  end
  -- A far-parked job is moved to the due set FAR_MS before its time.
  local far_head = redis.call('ZRANGE', far_key(due_set), '0', '0', 'WITHSCORES')
  if far_head[2] ~= nil then
    local t = tonumber(far_head[2]) - FAR_MS
    if t < now then t = now end
    if next_wake < 0 or t < next_wake then next_wake = t end
  end
  return false
end)
-- A rate park's timer.
if rate_parked or timed_parks_exist() then
  local timer_head = redis.call('ZRANGE', timers_key(), '0', '0', 'WITHSCORES')
  if timer_head[2] ~= nil then
    local t = tonumber(timer_head[2])
    if next_wake < 0 or t < next_wake then next_wake = t end
  end
end
local lease_end = LEASE.earliest()
if lease_end and (next_wake < 0 or lease_end < next_wake) then next_wake = lease_end end
-- More expired outcomes than one sweep takes: come back at once.
if swept == SWEEP or unparked then next_wake = now end
-- In microseconds, rounded up: a due set's instant keeps its fraction.
if next_wake >= 0 then next_wake = math.ceil(next_wake * 1000) end
return {now, next_wake, jobs, sub_ms_us, candidates}
