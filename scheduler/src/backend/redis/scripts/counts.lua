-- ARGV: none, or 'queues'
-- How many jobs are in each state, at one instant, from the sizes of the
-- namespace's own indexes (ZCOUNT is O(log n), HLEN and ZCARD O(1): no scan):
-- one ZCOUNT and ZCARD per due set (queue and priority) and per far twin
-- (common.lua, far-future jobs), the jobs waiting in a park (for a
-- concurrency slot, a rate or a worker) counted as queued.
-- Returns {deferred, queued, running, dead_lettered}.
--
-- 'queues': per queue, {name, deferred, queued, waiting, workers} for every
-- queue with a due set, a park or a live worker (`workers`: ZSET worker id ->
-- expiry ms; `worker_queues`: HASH worker id -> its queues, '\n'-joined). A
-- park of a task is counted in the queue of its longest-waiting job (a task
-- belongs to one queue).
local now = now_ms()
local now_text = string.format('%d', now)
-- The jobs of a due set and its far twin: deferred (due after now), queued.
local function due_and_far(due)
  local deferred, queued = 0, 0
  for _, key in ipairs({due, far_key(due)}) do
    local due_now = redis.call('ZCOUNT', key, '-inf', now_text)
    queued = queued + due_now
    deferred = deferred + redis.call('ZCARD', key) - due_now
  end
  return deferred, queued
end
if ARGV[1] == 'queues' then
  local rows, order = {}, {}
  local function row(queue)
    local r = rows[queue]
    if not r then
      r = {queue, 0, 0, 0, 0}
      rows[queue] = r
      order[#order + 1] = queue
    end
    return r
  end
  row(DEFAULT_QUEUE)
  local levels = queue_levels()
  for queue, _ in pairs(levels) do row(queue) end
  for _, queue in ipairs(order) do
    local r = rows[queue]
    for _, due in ipairs(queue_due_keys(queue, levels, {})) do
      local deferred, queued = due_and_far(due)
      r[2], r[3] = r[2] + deferred, r[3] + queued
    end
  end
  local unserved = named('park:u:')
  for _, park in ipairs(redis.call('SMEMBERS', parks_key())) do
    local n = redis.call('ZCARD', park)
    if n > 0 then
      local queue = nil
      if string.sub(park, 1, #unserved) == unserved then
        local len, rest = string.match(string.sub(park, #unserved + 1), '^(%d+):(.*)$')
        if len then queue = string.sub(rest, 1, tonumber(len)) end
      else
        local first = redis.call('ZRANGE', park, '0', '0')[1]
        local rec = first and decode(redis.call('HGET', K_PENDING, first) or '')
        if rec then queue = rec[JOB_QUEUE] or DEFAULT_QUEUE end
      end
      local r = row(queue or DEFAULT_QUEUE)
      r[4] = r[4] + n
    end
  end
  local live = redis.call('ZRANGEBYSCORE', named('workers'), now_text, '+inf')
  if #live > 0 then
    local served = redis.call('HMGET', named('worker_queues'), unpack(live))
    for i = 1, #live do
      for queue in string.gmatch(served[i] or '', '[^\n]+') do
        local r = row(queue)
        r[5] = r[5] + 1
      end
    end
  end
  local out = {}
  for i, queue in ipairs(order) do out[i] = rows[queue] end
  return out
end
local deferred, queued = 0, 0
for _, due in ipairs(all_due_keys()) do
  local d, q = due_and_far(due)
  deferred, queued = deferred + d, queued + q
end
for _, park in ipairs(redis.call('SMEMBERS', parks_key())) do
  queued = queued + redis.call('ZCARD', park)
end
return {deferred, queued, redis.call('HLEN', K_ACTIVE), redis.call('ZCARD', K_DEAD_ORDER)}
