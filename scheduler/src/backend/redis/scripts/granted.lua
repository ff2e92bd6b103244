-- A shard's side of the limits kept in the home shard (common.lua,
-- global_park; grants.lua). ARGV[1] is the operation:
--   'take', worker id, lease ms, claim nonce, wake channel, then the number
--     of granted candidates and 3 values each (id, generation, attempt), the
--     number of refused ones and 3 values each (id, the park it waits in,
--     the instant a rate allows it or 0), then 4 values per task or key with
--     room for more starts (grants.lua's spares: 't'|'k', task, key, n).
--     Starts the granted candidates still parked as claim.lua left them (the
--     claim log of the nonce names them too, so that a claim retried after a
--     lost reply gets them back), moves each refused one to its park with a
--     timer, and lets up to n jobs out of the parks of each task or key with
--     room. Returns claim.lua's reply (no next wake, no candidates) and the
--     ids of granted candidates not found as they were (their grants are to
--     be released): {now, -1, jobs, microseconds past now, {}, ids}.
--   'unpark', wake channel, then pairs (park, n): lets up to n jobs out of
--     each park of this shard (a slot was released in the home shard).
local op = ARGV[1]
local now, now_us = now_ms_us()
local now_text = string.format('%d', now)
local prefix = key_prefix(K_DUE)
local woke = false

-- Lets up to n jobs out of a park of this shard; the number left to let out.
local function let_out(park, n)
  if n <= 0 or string.sub(park, 1, #prefix) ~= prefix then return n end
  local there = redis.call('ZCARD', park)
  if there == 0 then return n end
  unpark(park, n)
  woke = true
  return n - math.min(n, there)
end

if op == 'take' then
  local worker, lease_ms, nonce, channel = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
  local lease_until = string.format('%d', now + lease_ms)
  local i = 6
  local jobs, lost, ids = {}, {}, {}
  local asked = {}
  for k = 1, tonumber(ARGV[i]) do asked[k] = ARGV[i + 3 * k - 2] end
  -- One read of each hash for the whole batch, one write of each for the
  -- jobs started (as claim.lua does).
  local blobs = #asked > 0 and call_many('HMGET', K_PENDING, asked) or {}
  local running = #asked > 0 and call_many('HMGET', K_ACTIVE, asked) or {}
  local active_args, emptied = {}, {}
  for k, id in ipairs(asked) do
    local gen, attempt = tonumber(ARGV[i + 3 * k - 1]), tonumber(ARGV[i + 3 * k])
    local rec = blobs[k] and decode(blobs[k])
    local park = rec and global_park('gs', rec[JOB_TASK])
    local run_at = rec and rec[JOB_PARKED] == park and not running[k] and redis.call('ZSCORE', park, id)
    if run_at and rec[JOB_GENERATION] == gen and rec[JOB_ATTEMPTS] + 1 == attempt then
      redis.call('ZREM', park, id)
      emptied[park] = true
      rec[JOB_PARKED] = false
      jobs[#jobs + 1] = begin_attempt(id, rec, tonumber(run_at), worker, now, active_args)
      ids[#ids + 1] = id
    else
      lost[#lost + 1] = id
    end
  end
  if #ids > 0 then write_started(ids, active_args, worker, lease_until) end
  for park in pairs(emptied) do
    if redis.call('ZCARD', park) == 0 then redis.call('SREM', parks_key(), park) end
  end
  i = i + 3 * #asked
  i = i + 1
  for _ = 1, tonumber(ARGV[i]) do
    local id, kind, at = ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
    i = i + 3
    local blob = redis.call('HGET', K_PENDING, id)
    local rec = blob and decode(blob)
    local from = rec and global_park('gs', rec[JOB_TASK])
    -- Left alone when it is no longer where the claim put it: a release
    -- let it out meanwhile, or it was cancelled or replaced.
    if rec and rec[JOB_PARKED] == from then
      local to = from
      if kind == 'gk' or kind == 'grk' then
        to = global_park(kind, rec[JOB_TASK], rec[JOB_LIMIT_KEY] or '')
      elseif kind == 'gr' then
        to = global_park(kind, rec[JOB_TASK])
      end
      if to ~= from then
        park_jobs(from, {{id, rec, to, tonumber(redis.call('ZSCORE', from, id) or now_text)}})
      end
      if at <= now then at = now + 1000 end
      arm_timer(to, at)
    end
  end
  i = i + 1
  while i + 3 <= #ARGV do
    local kind, task, key, n = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
    i = i + 4
    if kind == 't' then
      let_out(global_park('gr', task), let_out(global_park('gs', task), n))
    else
      let_out(global_park('grk', task, key), let_out(global_park('gk', task, key), n))
    end
  end
  if #ids > 0 then
    local head = nonce .. '\0'
    local logged = redis.call('HGET', K_CLAIM_LOG, worker)
    if logged and string.sub(logged, 1, #head) == head then
      logged = logged .. '\0' .. table.concat(ids, '\0')
    else
      logged = head .. table.concat(ids, '\0')
    end
    redis.call('HSET', K_CLAIM_LOG, worker, logged)
    redis.call('ZADD', K_CLAIM_EXP, lease_until, worker)
  end
  if woke then redis.call(PUBLISH, channel, now_text) end
  return {now, -1, jobs, now_us % 1000, {}, lost}
elseif op == 'unpark' then
  for i = 3, #ARGV, 2 do
    let_out(ARGV[i], tonumber(ARGV[i + 1]))
  end
  if woke then redis.call(PUBLISH, ARGV[2], now_text) end
  return woke and 1 or 0
end
return redis.error_reply('granted: unknown operation ' .. tostring(op))
