-- ARGV: none
-- How many jobs are in each state, at one instant, from the sizes of the
-- namespace's own indexes (ZCOUNT is O(log n), HLEN and ZCARD O(1): no scan).
-- Returns {deferred, queued, running, dead_lettered}.
local now_text = string.format('%d', now_ms())
local due_now = redis.call('ZCOUNT', K_DUE, '-inf', now_text)
return {redis.call('ZCARD', K_DUE) - due_now, due_now, redis.call('HLEN', K_ACTIVE),
  redis.call('ZCARD', K_DEAD_ORDER)}
