-- ARGV: state ('deferred' | 'queued' | 'running' | 'finished' | 'dead'),
--       task ('' for every task), outcome ('' | 'completed' | 'failed' | 'cancelled': finished only),
--       limit, cursor score ('' to start), cursor id, scan cap, queue ('' for
--       every queue; not for 'finished': an outcome does not keep its queue)
-- One page of the jobs in a state, read from the index that holds them, in
-- its order: deferred from `due` after now (soonest first), queued from `due`
-- up to now (longest waiting first), running from the leases (soonest expiry
-- first), finished from `results_exp` and dead-lettered from `dead_order`
-- (most recent first). It costs O(log n + what it examines): at most `scan
-- cap` entries, `limit` of them returned; a filter (task, outcome) that
-- matches few entries gives a short page with a cursor to go on from.
-- The cursor is the last entry examined (score and id): the next page starts
-- after it (at its rank when it is still there with that score, else at the
-- first entry past its score).
-- Returns {now, cursor score, cursor id, entries...} where the cursor is '' ''
-- when nothing follows, and each entry is {id, section}, the section
-- record_section's ('pending', 'active', 'result' or 'dead', with its index
-- score); a record gone meanwhile is left out.
local state, task, outcome = ARGV[1], ARGV[2], ARGV[3]
local limit, cursor_score, cursor_id, cap = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
local queue = ARGV[8] or ''
-- The queue of a section (record_section's fields: job records' JOB_QUEUE,
-- dead entries' DEAD_QUEUE; '' is the default queue).
local function queue_of(kind, section)
  local q
  if kind == 'dead' then q = section[3 + DEAD_QUEUE] else q = section[3 + JOB_QUEUE] end
  if q == nil or q == '' then return DEFAULT_QUEUE end
  return q
end
local now = now_ms()
local now_text = string.format('%d', now)

-- Entries merged from several sets, in (score, id) order: each set's entries
-- after the cursor are added with add_set (a set read only in part, cap
-- entries, sets the horizon: a page stops at the last entry read from such a
-- set, else it would skip that set's unread entries before another set's
-- later ones) or one by one with add.
local merged, horizon = {}, nil
local function after_cursor(score, id)
  return cursor_id == '' or not cursor_score or score > cursor_score or (score == cursor_score and id > cursor_id)
end
local function add(score, id)
  if after_cursor(score, id) then merged[#merged + 1] = {score, id} end
end
local function add_set(key, min, max)
  local entries = redis.call('ZRANGEBYSCORE', key, min, max, 'WITHSCORES', 'LIMIT', '0', string.format('%d', cap))
  if #entries >= 2 * cap then
    local score, id = tonumber(entries[#entries]), entries[#entries - 1]
    if horizon == nil or score < horizon[1] or (score == horizon[1] and id < horizon[2]) then
      horizon = {score, id}
    end
  end
  for i = 1, #entries, 2 do add(tonumber(entries[i + 1]), entries[i]) end
end

-- The page of the merged entries: their records read from `hash`, of kind
-- `kind` (record_section's), filtered by task and queue.
local function merged_page(hash, kind)
  table.sort(merged, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end)
  local out = {now, '', ''}
  local found, examined = 0, 0
  local function past_horizon(e)
    return horizon ~= nil and (e[1] > horizon[1] or (e[1] == horizon[1] and e[2] > horizon[2]))
  end
  while found < limit and examined < cap and examined < #merged and not past_horizon(merged[examined + 1]) do
    examined = examined + 1
    local score, id = merged[examined][1], merged[examined][2]
    local blob = redis.call('HGET', hash, id)
    if blob then
      local section = record_section(kind, string.format('%d', score), blob, JOB_SLOTS)
      if (task == '' or (section[3] == 'ok' and section[3 + JOB_TASK] == task))
        and (queue == '' or (section[3] == 'ok' and queue_of(kind, section) == queue)) then
        found = found + 1
        out[#out + 1] = {id, section}
      end
    end
  end
  if examined > 0 and (examined < #merged or horizon ~= nil) then
    -- %.17g: a due instant's fraction reads back as the same score.
    out[2], out[3] = string.format('%.17g', merged[examined][1]), merged[examined][2]
  end
  return out
end

-- Running jobs: those with a lease of their own (`leases`) and those of
-- each worker's set, at its worker's lease (common.lua, Leases), soonest
-- expiry first. Every worker's set is read: O(running jobs) per page.
if state == 'running' then
  add_set(K_LEASES, cursor_id ~= '' and cursor_score and ARGV[5] or '-inf', '+inf')
  local workers = redis.call('ZRANGE', worker_leases_key(), '0', '-1', 'WITHSCORES')
  for i = 1, #workers, 2 do
    local score = tonumber(workers[i + 1])
    for _, id in ipairs(redis.call('SMEMBERS', held_key(workers[i]))) do add(score, id) end
  end
  return merged_page(K_ACTIVE, 'active')
end

-- Pending jobs in more than one set (queues, priorities, far twins, parks).
if state == 'deferred' or state == 'queued' then
  local keys = all_due_keys()
  -- The far twins that hold jobs (common.lua, far-future jobs).
  for k = 1, #keys do
    local far = far_key(keys[k])
    if redis.call('EXISTS', far) == 1 then keys[#keys + 1] = far end
  end
  local parks = {}
  if state == 'queued' then parks = redis.call('SMEMBERS', parks_key()) end
  if #keys > 1 or #parks > 0 then
    for _, park in ipairs(parks) do keys[#keys + 1] = park end
    local lo_text, hi_text = '-inf', now_text
    if state == 'deferred' then lo_text = '(' .. now_text; hi_text = '+inf' end
    if cursor_id ~= '' and cursor_score then lo_text = ARGV[5] end
    for k, key in ipairs(keys) do
      -- A park holds queued jobs whatever their score.
      if k > #keys - #parks then
        add_set(key, cursor_id ~= '' and cursor_score and ARGV[5] or '-inf', '+inf')
      else
        add_set(key, lo_text, hi_text)
      end
    end
    return merged_page(K_PENDING, 'pending')
  end
end

-- The index, its direction, the ranks the state covers (inclusive; hi -1
-- for the end), the hash of its records, their kind and field count.
local key, desc, lo, hi, hash, kind, n
if state == 'deferred' then
  key, lo, hi, hash, kind, n = K_DUE, redis.call('ZCOUNT', K_DUE, '-inf', now_text), -1, K_PENDING, 'pending', JOB_SLOTS
elseif state == 'queued' then
  key, lo, hi, hash, kind, n = K_DUE, 0, redis.call('ZCOUNT', K_DUE, '-inf', now_text) - 1, K_PENDING, 'pending', JOB_SLOTS
elseif state == 'finished' then
  -- Expired outcomes not swept yet sort last (their expiry is past): left out below.
  key, desc, lo, hi, hash, kind, n = K_RESULTS_EXP, true, 0, -1, K_RESULTS, 'result', OUTCOME_PROGRESS
elseif state == 'dead' then
  key, desc, lo, hi, hash, kind, n = K_DEAD_ORDER, true, 0, -1, K_DEAD, 'dead', DEAD_LIMIT_KEY
else
  return redis.error_reply('browse: unknown state ' .. tostring(state))
end
if hi < 0 then hi = redis.call('ZCARD', key) - 1 end

local start = lo
if cursor_id ~= '' and cursor_score then
  local rank, score
  if desc then rank = redis.call('ZREVRANK', key, cursor_id) else rank = redis.call('ZRANK', key, cursor_id) end
  if rank then score = tonumber(redis.call('ZSCORE', key, cursor_id)) end
  if rank and score == cursor_score then
    start = rank + 1
  elseif desc then
    start = redis.call('ZCOUNT', key, '(' .. ARGV[5], '+inf')
  else
    start = redis.call('ZCOUNT', key, '-inf', '(' .. ARGV[5])
  end
  if start < lo then start = lo end
end

local out = {now, '', ''}
local found, examined, last_score, last_id = 0, 0, nil, nil
local rank = start
while found < limit and examined < cap and rank <= hi do
  local stop = math.min(hi, rank + math.min(cap - examined, 100) - 1)
  local entries
  if desc then
    entries = redis.call('ZREVRANGE', key, rank, stop, 'WITHSCORES')
  else
    entries = redis.call('ZRANGE', key, rank, stop, 'WITHSCORES')
  end
  if #entries == 0 then break end
  local ids = {}
  for i = 1, #entries, 2 do ids[#ids + 1] = entries[i] end
  local blobs = call_many('HMGET', hash, ids)
  for j, id in ipairs(ids) do
    if found >= limit then break end
    local score = entries[2 * j]
    examined, rank, last_score, last_id = examined + 1, rank + 1, score, id
    local blob = blobs[j]
    local keep = blob ~= nil and blob ~= false
    if keep and state == 'finished' and tonumber(score) <= now then keep = false end
    if keep and (task ~= '' or outcome ~= '' or queue ~= '') then
      local section = record_section(kind, score, blob, n)
      -- The task is a job record's field 1, an outcome's OUTCOME_TASK, a dead entry's DEAD_TASK.
      local rec_task
      if kind == 'result' then rec_task = section[3 + OUTCOME_TASK]
      elseif kind == 'dead' then rec_task = section[3 + DEAD_TASK]
      else rec_task = section[3 + JOB_TASK] end
      if section[3] ~= 'ok' then
        keep = task == '' and outcome == '' and queue == ''
      else
        if task ~= '' and rec_task ~= task then keep = false end
        if outcome ~= '' and section[3 + OUTCOME_STATE] ~= outcome then keep = false end
        if queue ~= '' and queue_of(kind, section) ~= queue then keep = false end
      end
      if keep then
        found = found + 1
        out[#out + 1] = {id, section}
      end
    elseif keep then
      found = found + 1
      out[#out + 1] = {id, record_section(kind, score, blob, n)}
    end
    if examined >= cap then break end
  end
end
if rank <= hi and last_id then
  out[2], out[3] = last_score, last_id
end
return out
