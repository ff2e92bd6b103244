-- Periodic schedules: their definitions in `schedules`, and the planning of
-- their ticks. Each tick is an ordinary job `schedule:<name>:<tick ms>`.
-- A definition is a JSON object of strings (numbers as text, so that no
-- float formatting touches them):
--   task, payload (the job's arguments, as stored for jobs), max_attempts,
--   spec (the schedule's stored form), source ('code' | 'runtime'),
--   version (a hash of task, payload, attempts and spec), paused ('0' | '1'),
--   cursor (the instant, ms, through which ticks are planned; '' when never
--   planned), cursor_gen (the generation of the tick job created at the
--   cursor; '0' when none was).
-- ARGV[1] is the mode; the rest depends on it:
--   list                          -> {now, name, definition, name, definition, ...}
--   put    name task payload max_attempts spec source version keep_ms wake_channel [queue]
--          (the task's queue, '' or absent for 'default': its ticks go there)
--                                 -> {'created' | 'replaced' | 'unchanged'}
--   plan   name version expected_cursor cancel_cursor_tick new_cursor keep_ms wake_channel
--          then (id, run_at ms, nonce) per tick job to create
--                                 -> {'planned', created, cancelled generation or 0}
--                                  | {'gone' | 'stale_version' | 'paused' | 'cursor_moved'}
--   pause  name keep_ms           -> {'paused' | 'unchanged' | 'gone', cancelled generation or 0}
--   resume name wake_channel      -> {'resumed' | 'unchanged' | 'gone'}
-- A put that stores something and a resume publish SCHEDULES_CHANGED on the
-- wake channel: every worker's planner reads the schedules again, and so
-- plans the next tick by the instant of the one just planned.
--   remove name keep_ms           -> {'removed' | 'gone', cancelled generation or 0}
-- Every mode but list changes state and goes through the reply log.
local mode = ARGV[1]
-- The wake channel message that asks planners to read the schedules again
-- (any other message there is a due time; older workers take it as a wake).
local SCHEDULES_CHANGED = 'schedules'
local now = now_ms()
local now_text = string.format('%d', now)

if mode == 'list' then
  local out = {now}
  local all = redis.call('HGETALL', K_SCHEDULES)
  for i = 1, #all do out[#out + 1] = all[i] end
  return out
end

local name = ARGV[2]

-- The stored definition, or nil (absent or unreadable: a corrupt one is
-- treated as gone, and a put writes over it).
local function load()
  local raw = redis.call('HGET', K_SCHEDULES, name)
  if not raw then return nil end
  local ok, def = pcall(cjson.decode, raw)
  if not ok or type(def) ~= 'table' then return nil end
  return def
end

local function save(def)
  redis.call('HSET', K_SCHEDULES, name, cjson.encode(def))
end

-- Removes the tick job created at the cursor if it has not started (the same
-- generation still pending), recording it cancelled with the reason. Returns
-- its generation, or nil when there was none to remove (never planned,
-- already running or finished).
local function drop_cursor_tick(def, why, keep_ms)
  local cursor, generation = def.cursor or '', tonumber(def.cursor_gen or '0') or 0
  if cursor == '' or generation == 0 then return nil end
  local id = 'schedule:' .. name .. ':' .. cursor
  local blob = redis.call('HGET', K_PENDING, id)
  local rec = blob and decode(blob)
  if not rec or rec[JOB_GENERATION] ~= generation then return nil end
  redis.call('HDEL', K_PENDING, id)
  drop_pending_entry(id, rec)
  record_result(id, rec, 'cancelled', '', why, now, keep_ms)
  return generation
end

if mode == 'put' then
  local def = load()
  local version, keep_ms = ARGV[8], tonumber(ARGV[9])
  if def and def.version == version then return {'unchanged'} end
  local new = {task = ARGV[3], payload = ARGV[4], max_attempts = ARGV[5], spec = ARGV[6], source = ARGV[7],
    version = version, paused = '0', cursor = '', cursor_gen = '0', queue = ARGV[11] or ''}
  local code = 'created'
  if def then
    code = 'replaced'
    new.paused = def.paused or '0'
    -- Replaced in place: the old expression's tick that has not started is
    -- removed, and the new one plans after now, or after the old tick that
    -- started (never a second tick for one instant).
    local cursor = def.cursor or ''
    if cursor ~= '' then
      if drop_cursor_tick(def, 'superseded by a new definition of its schedule', keep_ms) then
        new.cursor = now_text
      elseif tonumber(cursor) > now then
        new.cursor = cursor
      else
        new.cursor = now_text
      end
    end
  end
  save(new)
  redis.call(PUBLISH, ARGV[10], SCHEDULES_CHANGED)
  return {code}
end

if mode == 'plan' then
  local version, expected, cancel, new_cursor = ARGV[3], ARGV[4], ARGV[5] == '1', ARGV[6]
  local keep_ms, wake_channel = tonumber(ARGV[7]), ARGV[8]
  local def = load()
  if not def then return {'gone'} end
  if def.version ~= version then return {'stale_version'} end
  if def.paused == '1' then return {'paused'} end
  if (def.cursor or '') ~= expected then return {'cursor_moved'} end
  local cancelled = 0
  if cancel then
    cancelled = drop_cursor_tick(def, 'missed: no worker started it in time', keep_ms) or 0
  end
  local created, at_cursor, earliest = 0, '0', nil
  local max_attempts = tonumber(def.max_attempts) or 1
  for i = 9, #ARGV, 3 do
    local id, run_at_text, nonce = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    -- Dedup by id, as an enqueue: a tick whose job exists is not created again.
    if redis.call('HEXISTS', K_PENDING, id) == 0 and redis.call('HEXISTS', K_ACTIVE, id) == 0 then
      local generation = new_job(id, def.task, def.payload, max_attempts, run_at_text, nonce, now,
        {def.queue or '', 0, ''})
      created = created + 1
      if run_at_text == new_cursor then at_cursor = string.format('%d', generation) end
      local run_at = tonumber(run_at_text)
      if earliest == nil or run_at < earliest then earliest = run_at end
    end
  end
  def.cursor, def.cursor_gen = new_cursor, at_cursor
  save(def)
  if earliest ~= nil then wake_if_earliest(earliest, wake_channel, due_key(def.queue, 0)) end
  return {'planned', created, cancelled}
end

if mode == 'pause' then
  local def = load()
  if not def then return {'gone', 0} end
  if def.paused == '1' then return {'unchanged', 0} end
  local cancelled = drop_cursor_tick(def, 'its schedule was paused', tonumber(ARGV[3])) or 0
  def.paused, def.cursor_gen = '1', '0'
  save(def)
  return {'paused', cancelled}
end

if mode == 'resume' then
  local def = load()
  if not def then return {'gone'} end
  if def.paused ~= '1' then return {'unchanged'} end
  -- The paused period's ticks never run: planning goes on after now.
  def.paused, def.cursor, def.cursor_gen = '0', now_text, '0'
  save(def)
  redis.call(PUBLISH, ARGV[3], SCHEDULES_CHANGED)
  return {'resumed'}
end

if mode == 'remove' then
  local def = load()
  if not def and redis.call('HEXISTS', K_SCHEDULES, name) == 0 then return {'gone', 0} end
  local cancelled = def and drop_cursor_tick(def, 'its schedule was removed', tonumber(ARGV[3])) or 0
  redis.call('HDEL', K_SCHEDULES, name)
  return {'removed', cancelled}
end

return redis.error_reply('schedules: unknown mode ' .. tostring(mode))
