-- ARGV: mode, cursor, count, dead-letter cap, keep_result ms, lease ms
-- Finds what eviction (maxmemory-policy allkeys-*) or a hand edit left
-- inconsistent, and repairs it so that no job is stranded silently. Every
-- script keeps each pair below in step, so in a sound namespace the counts
-- of a pair are equal and the walks find nothing:
--   'count'   {HLEN pending, ZCARD of every due set, far twin and park, HLEN active,
--             ZCARD leases + SCARD of the set of each worker with a lease}
--   'pending' walks pending: a record without its due entry can never be
--             claimed; it is dead-lettered with the reason (its run time is
--             gone with the entry, so running it could start it early)
--   'due'     walks due (the default queue's set at priority 0 only: the
--             others come due and are checked by the claim that takes them):
--             an entry without its record is removed and
--             dead-lettered, as claim does once it comes due
--   'far'     walks the default queue's far twin (common.lua, far-future
--             jobs) as 'due' walks due: jobs due next year are checked now
--   'active'  walks active: a running record that is neither in `leases`
--             nor in its worker's set `held` with a lease in `worker_leases`
--             (common.lua, Leases) would never expire if its worker died; it
--             goes back in its worker's set, and the worker gets a lease
--             ending in lease ms unless it has one (a live worker renews it
--             as usual)
--   'leases'  walks leases: an entry without its running record is removed
--             and dead-lettered: the job was running and its record is gone
--   'held'    walks worker_leases, and each worker's set as 'leases' walks
--             leases (an id whose record says another worker runs it is only
--             removed)
--   'slots'   counts the concurrency slots the running records hold and sets
--             `slots` to match (a record deleted by hand, or the hash
--             evicted, would leave a slot taken for ever, or free one too
--             many); a count found too high lets a job of its park out.
--             Returns {'0', repaired...} as a walk does.
-- The walks return {next cursor, repaired...}, each {id, what was done}.
local mode, cursor, count = ARGV[1], ARGV[2], ARGV[3]
local cap, keep_ms, lease_ms = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
if mode == 'count' then
  -- Every due set (queues, priorities) and every park holds pending jobs' entries.
  local entries = 0
  for _, key in ipairs(all_due_keys()) do
    entries = entries + redis.call('ZCARD', key) + redis.call('ZCARD', far_key(key))
  end
  for _, park in ipairs(redis.call('SMEMBERS', parks_key())) do entries = entries + redis.call('ZCARD', park) end
  local leased = redis.call('ZCARD', K_LEASES)
  for _, worker in ipairs(redis.call('ZRANGE', worker_leases_key(), '0', '-1')) do
    leased = leased + redis.call('SCARD', held_key(worker))
  end
  return {redis.call('HLEN', K_PENDING), entries, redis.call('HLEN', K_ACTIVE), leased}
end
local now = now_ms()
local out = {}
if mode == 'slots' then
  local truth = {}
  for _, blob in ipairs(redis.call('HVALS', K_ACTIVE)) do
    local rec = decode(blob)
    local held = rec and rec[JOB_SLOTS]
    if held == 1 or held == 2 then
      local field = task_slot(rec[JOB_TASK])
      truth[field] = (truth[field] or 0) + 1
      if held == 2 and rec[JOB_LIMIT_KEY] then
        field = key_slot(rec[JOB_TASK], rec[JOB_LIMIT_KEY])
        truth[field] = (truth[field] or 0) + 1
      end
    end
  end
  local stored = {}
  local flat = redis.call('HGETALL', slots_key())
  for i = 1, #flat, 2 do stored[flat[i]] = tonumber(flat[i + 1]) or 0 end
  out[1] = '0'
  for field, n in pairs(stored) do
    local t = truth[field] or 0
    if n ~= t then
      if t == 0 then redis.call('HDEL', slots_key(), field) else redis.call('HSET', slots_key(), field, t) end
      out[#out + 1] = {'slots ' .. field, 'held by ' .. t .. ' running jobs, counted ' .. n .. '; set to ' .. t}
      if t < n then
        -- 't:<task>' or 'k:<task length>:<task>:<key>': its park may hold a job that can start now.
        local task = string.match(field, '^t:(.*)$')
        if task then
          unpark(task_park(task), n - t)
        else
          local len, rest = string.match(field, '^k:(%d+):(.*)$')
          if len then
            unpark(key_park(string.sub(rest, 1, tonumber(len)), string.sub(rest, tonumber(len) + 2)), n - t)
          end
        end
      end
    end
  end
  for field, t in pairs(truth) do
    if stored[field] == nil then
      redis.call('HSET', slots_key(), field, t)
      out[#out + 1] = {'slots ' .. field, 'held by ' .. t .. ' running jobs, counted 0; set to ' .. t}
    end
  end
  return out
end
local page, members = nil, {}
-- The sorted set a 'due', 'far', 'leases' or 'held' walk scans.
local index = K_LEASES
if mode == 'due' then index = K_DUE elseif mode == 'far' then index = far_key(K_DUE) end
if mode == 'held' then index = worker_leases_key() end
if mode == 'pending' or mode == 'active' then
  page = redis.call('HSCAN', mode == 'pending' and K_PENDING or K_ACTIVE, cursor, 'COUNT', count)
else
  page = redis.call('ZSCAN', index, cursor, 'COUNT', count)
end
out[1] = page[1]
for i = 1, #page[2], 2 do members[#members + 1] = page[2][i] end
for i, id in ipairs(members) do
  if mode == 'pending' then
    local blob = page[2][2 * i]
    local rec, why = decode(blob)
    if not entry_score(rec, id) then
      local reason = 'its due-time entry is missing (evicted under maxmemory, or deleted by hand); '
        .. 'not run, since its run time is lost'
      if not rec then reason = reason .. '; ' .. why end
      redis.call('HDEL', K_PENDING, id)
      dead_letter(id, blob, rec, reason, now, cap)
      record_result(id, rec, 'failed', '', reason, now, keep_ms)
      out[#out + 1] = {id, 'dead-lettered: ' .. reason}
    end
  elseif mode == 'due' or mode == 'far' then
    if redis.call('HEXISTS', K_PENDING, id) == 0 then
      local reason = 'the job record is missing (index entry without a job)'
      redis.call('ZREM', index, id)
      dead_letter(id, nil, nil, reason, now, cap)
      out[#out + 1] = {id, 'dead-lettered: ' .. reason}
    end
  elseif mode == 'active' then
    local rec = decode(page[2][2 * i])
    local worker = rec and rec[JOB_WORKER]
    local leased = redis.call('ZSCORE', K_LEASES, id)
      or (worker and redis.call('SISMEMBER', held_key(worker), id) == 1
        and redis.call('ZSCORE', worker_leases_key(), worker))
    if not leased then
      local lease_until = string.format('%d', now + lease_ms)
      if worker then
        redis.call('SADD', held_key(worker), id)
        redis.call('ZADD', worker_leases_key(), 'NX', lease_until, worker)
      else
        redis.call('ZADD', K_LEASES, lease_until, id)
      end
      out[#out + 1] = {id, 'running without a lease entry (evicted?); given a lease of ' .. lease_ms .. ' ms'}
    end
  elseif mode == 'leases' then
    if redis.call('HEXISTS', K_ACTIVE, id) == 0 then
      redis.call('ZREM', K_LEASES, id)
      dead_letter(id, nil, nil, LOST_RUNNING, now, cap)
      out[#out + 1] = {id, 'dead-lettered: ' .. LOST_RUNNING}
    end
  elseif mode == 'held' then
    -- id is a worker: its set's members.
    local worker = id
    for _, job in ipairs(redis.call('SMEMBERS', held_key(worker))) do
      local blob = redis.call('HGET', K_ACTIVE, job)
      local rec = blob and decode(blob)
      if not blob then
        redis.call('SREM', held_key(worker), job)
        dead_letter(job, nil, nil, LOST_RUNNING, now, cap)
        out[#out + 1] = {job, 'dead-lettered: ' .. LOST_RUNNING}
      elseif rec and rec[JOB_WORKER] ~= worker then
        redis.call('SREM', held_key(worker), job)
        out[#out + 1] = {job, 'removed from the set of worker ' .. worker .. ', which does not run it'}
      end
    end
  end
end
return out
