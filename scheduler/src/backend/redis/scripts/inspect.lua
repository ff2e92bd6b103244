-- ARGV: id
-- Returns the records stored for the id:
--   {'active', lease, fields...} then/or {'pending', score, fields...}, then {'result', '', fields...}
-- as a flat list of sections; fields are the msgpack records' entries as strings:
-- a job record's up to JOB_SLOTS, an outcome record's up to
-- OUTCOME_PROGRESS (record.rs reads them).
local id = ARGV[1]
local now = now_ms()
local out = {now}
local function section(kind, score, blob, n)
  out[#out + 1] = record_section(kind, score, blob, n)
end
local active = redis.call('HGET', K_ACTIVE, id)
if active then section('active', LEASE.expiry(id, decode(active)) or '', active, JOB_SLOTS) end
local pending = redis.call('HGET', K_PENDING, id)
if pending then
  section('pending', entry_score(decode(pending), id) or '', pending, JOB_SLOTS)
end
local result = live_result(id, now)
if result then section('result', '', result, OUTCOME_PROGRESS) end
return out
