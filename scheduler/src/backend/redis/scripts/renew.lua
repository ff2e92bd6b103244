-- ARGV: lease ms, worker id, dead-letter cap, then 3 values per running job:
--       id, generation, attempt
-- Extends the worker's lease (common.lua, Leases), which covers every job it
-- holds, when at least one of them is still its own, and the leases of their
-- own that such jobs have.
-- Returns one code per job: 'ok' (lease extended), 'cancel' (abort requested), 'lost'
-- A job whose running record is gone (evicted, deleted by hand) while its
-- worker held it is dead-lettered at once, and one whose record cannot be
-- read gets a lease of its own (common.lua abandon_lease), so that it expires
-- and is dead-lettered with the reason: the renewals of the worker's other
-- jobs would keep the worker's lease from ever running out.
local lease_ms, worker, cap = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local now = now_ms()
-- The ids still this worker's, whose leases are extended below.
local out, kept = {}, {}
for i = 4, #ARGV, 3 do
  local id, gen, attempt = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local blob = redis.call('HGET', K_ACTIVE, id)
  local rec = blob and decode(blob)
  if not rec or rec[JOB_GENERATION] ~= gen or rec[JOB_ATTEMPTS] ~= attempt then
    out[#out + 1] = 'lost'
    if not blob and redis.call('SREM', held_key(worker), id) == 1 then
      dead_letter(id, nil, nil, LOST_RUNNING, now, cap)
    elseif not rec and redis.call('SISMEMBER', held_key(worker), id) == 1 then
      abandon_lease(id, worker, now)
    end
  else
    kept[#kept + 1] = id
    if rec[JOB_CANCEL_REQUESTED] == 1 then out[#out + 1] = 'cancel' else out[#out + 1] = 'ok' end
  end
end
if #kept == 0 then return out end
local lease_until = string.format('%d', now + lease_ms)
redis.call('ZADD', worker_leases_key(), lease_until, worker)
-- Those with a lease of their own too (common.lua, Leases): extended alike.
if redis.call('EXISTS', K_LEASES) == 1 then
  for _, id in ipairs(kept) do redis.call('ZADD', K_LEASES, 'XX', lease_until, id) end
end
return out
