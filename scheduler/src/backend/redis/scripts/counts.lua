-- ARGV: none
-- How many jobs are in each state, at one instant, from the sizes of the
-- namespace's own indexes (ZCOUNT is O(log n), HLEN and ZCARD O(1): no scan):
-- one ZCOUNT and ZCARD per due set (queue and priority), the jobs waiting in
-- a park (for a concurrency slot or a worker) counted as queued.
-- Returns {deferred, queued, running, dead_lettered}.
local now_text = string.format('%d', now_ms())
local deferred, queued = 0, 0
for _, key in ipairs(all_due_keys()) do
  local due_now = redis.call('ZCOUNT', key, '-inf', now_text)
  queued = queued + due_now
  deferred = deferred + redis.call('ZCARD', key) - due_now
end
for _, park in ipairs(redis.call('SMEMBERS', parks_key())) do
  queued = queued + redis.call('ZCARD', park)
end
return {deferred, queued, redis.call('HLEN', K_ACTIVE), redis.call('ZCARD', K_DEAD_ORDER)}
