-- The limits of a sharded namespace, kept in its home shard (see common.lua,
-- global_park): which runs hold a slot (`g:slots:t:<task>`,
-- `g:slots:k:<task length>:<task>:<key>`: ZSET token -> lease expiry, ms),
-- the starts counted against each rate (`g:rate:t:...`, `g:rate:k:...`, as
-- common.lua's rate logs) and the parks of other shards that wait for a slot
-- (`g:wait:t:...`, `g:wait:k:...`: SET of park names).
-- A token names one attempt: '<id>\0<generation>\0<attempt>'. A slot whose
-- lease runs out (its worker stopped renewing it) is free again.
-- ARGV[1] is the operation:
--   'acquire', lease ms, the limits (claim.lua's lines), the asking shard's
--     key prefix ('{tag}:'), then 5 values per candidate: id, task, key ('':
--     none), generation, attempt. Returns {verdicts, spares}: per candidate
--     {verdict, instant}, the verdict 'slot' (granted, holds a slot), 'free'
--     (granted, holds none: rates only) or the park it waits in ('gs', 'gk',
--     'gr', 'grk'), the instant a rate allows it (ms; 0 for a slot); then
--     {'t', task, '', n} or {'k', task, key, n} for each task or key asked
--     about that has room for n more starts now. A token already granted is
--     granted again (a retried call), its start not counted twice.
--   'renew', lease ms, then 3 values per running attempt: task, key, token.
--     Returns 'ok' or 'lost' (its slot ran out) per attempt.
--   'release', then 3 values per ended attempt: task, key, token. Returns the
--     parks to let one job out of, one entry per freed slot that had waiters.
local op = ARGV[1]
local now = now_ms()
local now_text = string.format('%d', now)

local function field(kind, task, key)
  if key ~= '' then return key_prefix(K_DUE) .. 'g:' .. kind .. ':k:' .. #task .. ':' .. task .. ':' .. key end
  return named('g:' .. kind .. ':t:' .. task)
end

-- Running attempts holding a slot of `slots`, expired leases dropped first.
local held_counts = {}
local function held(slots)
  local n = held_counts[slots]
  if n == nil then
    redis.call('ZREMRANGEBYSCORE', slots, '-inf', '(' .. now_text)
    n = redis.call('ZCARD', slots)
    held_counts[slots] = n
  end
  return n
end

if op == 'acquire' then
  local lease_until = string.format('%d', now + tonumber(ARGV[2]))
  local limits, prefix = limits_by_task(ARGV[3]), ARGV[4]
  local verdicts, asked, asked_order = {}, {}, {}
  local function ask(kind, task, key)
    local name = kind .. '\0' .. task .. '\0' .. key
    if not asked[name] then
      asked[name] = true
      asked_order[#asked_order + 1] = {kind, task, key}
    end
  end
  for i = 5, #ARGV, 5 do
    local id, task, key, token = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i] .. '\0' .. ARGV[i + 3] .. '\0' .. ARGV[i + 4]
    local lim = limits[task]
    local verdict, at = 'free', 0
    if lim then
      local tslots = lim.c > 0 and field('slots', task, '') or nil
      local kslots = (lim.kc > 0 and key ~= '') and field('slots', task, key) or nil
      local again = (tslots and redis.call('ZSCORE', tslots, token)) or (kslots and redis.call('ZSCORE', kslots, token))
      if not again then
        if lim.krn > 0 and key ~= '' then
          at = rate_next(field('rate', task, key), lim.krn, lim.krw, now)
          if at > now then verdict = 'grk' end
        end
        if verdict == 'free' and lim.rn > 0 then
          at = rate_next(field('rate', task, ''), lim.rn, lim.rw, now)
          if at > now then verdict = 'gr' end
        end
        if verdict == 'free' then
          at = 0
          if kslots and held(kslots) >= lim.kc then
            verdict = 'gk'
            redis.call('SADD', field('wait', task, key), global_park_of(prefix, 'gk', task, key))
          elseif tslots and held(tslots) >= lim.c then
            verdict = 'gs'
            redis.call('SADD', field('wait', task, ''), global_park_of(prefix, 'gs', task))
          end
        end
      end
      if verdict == 'free' then
        if not again then
          if lim.krn > 0 and key ~= '' then count_start(field('rate', task, key), nil, lim.krn, lim.krw, now) end
          if lim.rn > 0 then count_start(field('rate', task, ''), nil, lim.rn, lim.rw, now) end
        end
        for _, slots in ipairs({tslots or false, kslots or false}) do
          if slots then
            if not again then held_counts[slots] = held(slots) + 1 end
            redis.call('ZADD', slots, lease_until, token)
            verdict = 'slot'
          end
        end
      end
      ask('t', task, '')
      if key ~= '' then ask('k', task, key) end
    end
    verdicts[#verdicts + 1] = {verdict, at}
  end
  -- Room for more starts now, per task and key asked about (at most 100 a
  -- call): the shard lets that many waiting jobs out.
  local spares = {}
  for _, a in ipairs(asked_order) do
    local kind, task, key = a[1], a[2], a[3]
    local lim = limits[task]
    local room = 100
    local c, rn, rw = lim.c, lim.rn, lim.rw
    if kind == 'k' then c, rn, rw = lim.kc, lim.krn, lim.krw end
    if c > 0 then room = math.min(room, c - held(field('slots', task, key))) end
    if rn > 0 then room = math.min(room, rate_left(field('rate', task, key), rn, rw, now)) end
    if room > 0 then spares[#spares + 1] = {kind, task, key, room} end
  end
  return {verdicts, spares}
elseif op == 'renew' then
  local lease_until = string.format('%d', now + tonumber(ARGV[2]))
  local out = {}
  for i = 3, #ARGV, 3 do
    local task, key, token = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    local kept = false
    for _, slots in ipairs({field('slots', task, ''), key ~= '' and field('slots', task, key) or false}) do
      local until_ms = slots and redis.call('ZSCORE', slots, token)
      if until_ms and tonumber(until_ms) >= now then
        redis.call('ZADD', slots, lease_until, token)
        kept = true
      end
    end
    out[#out + 1] = kept and 'ok' or 'lost'
  end
  return out
elseif op == 'release' then
  local out = {}
  for i = 2, #ARGV, 3 do
    local task, key, token = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    for _, k in ipairs({'', key}) do
      if (k == '' or key ~= '') and redis.call('ZREM', field('slots', task, k), token) == 1 then
        local wait = field('wait', task, k)
        local parks = redis.call('SMEMBERS', wait)
        if #parks > 0 then
          redis.call('DEL', wait)
          for _, park in ipairs(parks) do out[#out + 1] = park end
        end
      end
    end
  end
  return out
end
return redis.error_reply('grants: unknown operation ' .. tostring(op))
