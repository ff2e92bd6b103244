-- ARGV: mode ('enqueue' | 'replace'), if_running ('abort' | 'after' | 'keep'), wake channel,
--       abort channel, then 7 values per job:
--       id, task, payload, max_attempts, when kind ('now' | 'at' | 'after'), when ms, nonce
-- Returns one array per job: {code, generation, run_at, extra}
local mode, if_running, wake_channel, abort_channel = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now = now_ms()
local out = {}
local earliest = nil

local function run_at_of(kind, value)
  if kind == 'at' then return tonumber(value) end
  if kind == 'after' then return now + tonumber(value) end
  return now
end

local function create(id, task, payload, max_attempts, run_at, nonce, blocked)
  local gen = redis.call('INCR', K_SEQ)
  local rec = {task, payload, gen, 0, max_attempts, now, nonce}
  local score = run_at
  if blocked then
    rec[13] = run_at
    score = blocked
  end
  redis.call('HSET', K_PENDING, id, encode(rec))
  redis.call('ZADD', K_DUE, score, id)
  if not blocked and (earliest == nil or run_at < earliest) then earliest = run_at end
  return gen
end

local function running_lease(id)
  return tonumber(redis.call('ZSCORE', K_LEASES, id) or now)
end

for i = 5, #ARGV, 7 do
  local id, task, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local max_attempts = tonumber(ARGV[i + 3])
  local run_at = run_at_of(ARGV[i + 4], ARGV[i + 5])
  local nonce = ARGV[i + 6]
  local pending_blob = redis.call('HGET', K_PENDING, id)
  local active_blob = redis.call('HGET', K_ACTIVE, id)
  local pending = pending_blob and decode(pending_blob)
  local active = active_blob and decode(active_blob)
  if pending_blob and not pending then
    -- Garbage under this id: keep it for inspection, then start afresh.
    dead_letter(id, pending_blob, nil, 'corrupt job record replaced by a new enqueue', now, 10000)
    redis.call('HDEL', K_PENDING, id)
    redis.call('ZREM', K_DUE, id)
  end
  if active_blob and not active then
    dead_letter(id, active_blob, nil, 'corrupt running job record replaced by a new enqueue', now, 10000)
    redis.call('HDEL', K_ACTIVE, id)
    redis.call('ZREM', K_LEASES, id)
  end

  if pending and pending[7] == nonce then
    -- The same request, re-sent after a reconnect: report what it did the first time.
    out[#out + 1] = {'enqueued', pending[3], tonumber(redis.call('ZSCORE', K_DUE, id) or now), 0}
  elseif active and active[7] == nonce then
    out[#out + 1] = {'enqueued', active[3], active[9] or now, 0}
  elseif mode == 'enqueue' then
    if pending then
      local score = tonumber(redis.call('ZSCORE', K_DUE, id) or now)
      local planned = pending[13] or score
      local state = 'deferred'
      if pending[13] or score <= now then state = 'queued' end
      out[#out + 1] = {'duplicate', pending[3], planned, state}
    elseif active then
      out[#out + 1] = {'duplicate', active[3], active[9] or now, 'running'}
    else
      local gen = create(id, task, payload, max_attempts, run_at, nonce, nil)
      out[#out + 1] = {'enqueued', gen, run_at, 0}
    end
  else
    if pending then
      local score = tonumber(redis.call('ZSCORE', K_DUE, id) or now)
      local previous = pending[13] or score
      local blocked = nil
      if active then blocked = running_lease(id) end
      local gen = create(id, task, payload, max_attempts, run_at, nonce, blocked)
      out[#out + 1] = {'replaced', gen, run_at, previous}
    elseif active then
      if if_running == 'keep' then
        out[#out + 1] = {'running', active[3], active[9] or now, 0}
      else
        local code = 'queued_after'
        if if_running == 'abort' then
          code = 'aborted'
          if active[12] ~= 1 then
            active[12] = 1
            redis.call('HSET', K_ACTIVE, id, encode(active))
          end
          redis.call('PUBLISH', abort_channel, active[3] .. ':' .. id)
        end
        local gen = create(id, task, payload, max_attempts, run_at, nonce, running_lease(id))
        out[#out + 1] = {code, gen, run_at, active[3]}
      end
    else
      local gen = create(id, task, payload, max_attempts, run_at, nonce, nil)
      out[#out + 1] = {'enqueued', gen, run_at, 0}
    end
  end
end

if earliest ~= nil then wake_if_earliest(earliest, wake_channel) end
return out
