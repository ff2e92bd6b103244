-- ARGV: mode ('add' | 'remove'), channel, ttl ms (add)
-- The processes waiting for outcomes (`Scheduler::wait`): `listeners` maps
-- each one's own channel to when its registration expires (Redis time, ms).
-- While a channel is registered and unexpired, every script that ends a job
-- publishes '<generation>:<id>' on it (common.lua announce_finished). A
-- process that stops waiting removes its channel; one that dies stops
-- renewing it, and it expires; expired entries are dropped here.
local mode, channel = ARGV[1], ARGV[2]
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', K_LISTENERS, '-inf', string.format('%d', now))
if mode == 'add' then
  redis.call('ZADD', K_LISTENERS, string.format('%d', now + tonumber(ARGV[3])), channel)
elseif mode == 'remove' then
  redis.call('ZREM', K_LISTENERS, channel)
else
  return redis.error_reply('listeners: unknown mode ' .. tostring(mode))
end
return 1
