-- ARGV: lease ms, then 3 values per running job: id, generation, attempt
-- Returns one code per job: 'ok' (lease extended), 'cancel' (abort requested), 'lost'
local lease_ms = tonumber(ARGV[1])
local now = now_ms()
-- As text, formatted once (see claim.lua).
local lease_until = string.format('%d', now + lease_ms)
local out = {}
for i = 2, #ARGV, 3 do
  local id, gen, attempt = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local blob = redis.call('HGET', K_ACTIVE, id)
  local rec = blob and decode(blob)
  if not rec or rec[JOB_GENERATION] ~= gen or rec[JOB_ATTEMPTS] ~= attempt then
    out[#out + 1] = 'lost'
  else
    redis.call('ZADD', K_LEASES, lease_until, id)
    if rec[JOB_CANCEL_REQUESTED] == 1 then out[#out + 1] = 'cancel' else out[#out + 1] = 'ok' end
  end
end
return out
