-- ARGV: op ('list' | 'requeue' | 'purge'), then
--   list: offset, count          -> {id, task, generation, attempts, reason, failed_ms} per entry, newest first
--                                   (count 0: none)
--   requeue: id, nonce, wake channel -> {'requeued', generation} | {'not_found'} | {'busy'} (id pending or running)
--   purge: (none)                 -> {removed count}
--   delete: id                    -> {1} removed | {0} no such dead letter
local op = ARGV[1]
local now = now_ms()
if op == 'list' then
  local offset, count = tonumber(ARGV[2]), tonumber(ARGV[3])
  -- count 0 is an empty page (ZREVRANGE offset offset-1 would be read as
  -- "to the end" for offset 0), as in memory.rs.
  if count <= 0 then return {} end
  local ids = redis.call('ZREVRANGE', K_DEAD_ORDER, offset, offset + count - 1)
  local out = {}
  for _, id in ipairs(ids) do
    local blob = redis.call('HGET', K_DEAD, id)
    local ok, e = false, nil
    if blob then ok, e = pcall(cmsgpack.unpack, blob) end
    if ok and type(e) == 'table' then
      out[#out + 1] = {id, tostring(e[DEAD_TASK]), string.format('%d', tonumber(e[DEAD_GENERATION]) or 0),
        string.format('%d', tonumber(e[DEAD_ATTEMPTS]) or 0), tostring(e[DEAD_REASON]),
        string.format('%d', tonumber(e[DEAD_FAILED_MS]) or 0)}
    else
      out[#out + 1] = {id, '', '0', '0', 'unreadable dead-letter entry', '0'}
    end
  end
  return out
elseif op == 'requeue' then
  local id, nonce, wake_channel = ARGV[2], ARGV[3], ARGV[4]
  local blob = redis.call('HGET', K_DEAD, id)
  if not blob then return {'not_found', 0} end
  if redis.call('HEXISTS', K_PENDING, id) == 1 or redis.call('HEXISTS', K_ACTIVE, id) == 1 then
    return {'busy', 0}
  end
  local ok, e = pcall(cmsgpack.unpack, blob)
  if not ok or type(e) ~= 'table' or type(e[DEAD_TASK]) ~= 'string' or e[DEAD_TASK] == '' then
    return {'unreadable', 0}
  end
  local max_attempts = tonumber(e[DEAD_MAX_ATTEMPTS]) or 5
  if max_attempts < 1 then max_attempts = 5 end
  local route = nil
  if type(e[DEAD_QUEUE]) == 'string' then
    route = {e[DEAD_QUEUE], tonumber(e[DEAD_PRIORITY]) or 0, tostring(e[DEAD_LIMIT_KEY] or '')}
  end
  local gen = new_job(id, e[DEAD_TASK], e[DEAD_PAYLOAD], max_attempts, now, nonce, now, route)
  redis.call('HDEL', K_DEAD, id)
  redis.call('ZREM', K_DEAD_ORDER, id)
  local rec = decode(redis.call('HGET', K_PENDING, id))
  wake_if_earliest(now, wake_channel, rec and index_key(rec))
  return {'requeued', gen}
elseif op == 'delete' then
  local id = ARGV[2]
  local removed = redis.call('HDEL', K_DEAD, id)
  redis.call('ZREM', K_DEAD_ORDER, id)
  return {removed}
else
  local n = redis.call('ZCARD', K_DEAD_ORDER)
  redis.call('DEL', K_DEAD, K_DEAD_ORDER)
  return {n}
end
