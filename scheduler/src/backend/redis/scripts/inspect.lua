-- ARGV: id
-- Returns the records stored for the id:
--   {'active', lease, fields...} then/or {'pending', score, fields...}, then {'result', '', fields...}
-- as a flat list of sections; fields are the msgpack records' entries as strings:
-- a job record's up to JOB_PROGRESS, an outcome record's up to
-- OUTCOME_PROGRESS (record.rs reads them).
local id = ARGV[1]
local now = now_ms()
local out = {now}
local function fields(rec, n)
  local f = {}
  for i = 1, n do
    local v = rec[i]
    if v == nil or v == false then f[i] = '' else f[i] = tostring(v) end
  end
  return f
end
local function section(kind, score, blob, n)
  -- Job records are checked field by field (decode); outcome records are read as they are.
  local rec
  if kind == 'result' then rec = decode_result(blob) else rec = decode(blob) end
  if not rec then
    out[#out + 1] = {kind, score, 'corrupt'}
  else
    local f = fields(rec, n)
    -- numbers as integers: tostring of a large double would use an exponent
    for i = 1, n do
      if type(rec[i]) == 'number' then f[i] = string.format('%d', rec[i]) end
    end
    out[#out + 1] = {kind, score, 'ok', unpack(f)}
  end
end
local active = redis.call('HGET', K_ACTIVE, id)
if active then section('active', redis.call('ZSCORE', K_LEASES, id) or '', active, JOB_PROGRESS) end
local pending = redis.call('HGET', K_PENDING, id)
if pending then section('pending', redis.call('ZSCORE', K_DUE, id) or '', pending, JOB_PROGRESS) end
local result = live_result(id, now)
if result then section('result', '', result, OUTCOME_PROGRESS) end
return out
