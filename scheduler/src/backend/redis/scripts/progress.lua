-- ARGV: id, generation, attempt, progress (JSON text, bounded by the client)
-- Records the progress a running attempt reports (JobContext::progress) in its
-- record, fenced by (generation, attempt) as complete.lua is: an attempt
-- whose lease was taken over changes nothing. The last value is kept with the
-- job's outcome (result_blob) and published as a 'progress' event.
-- Returns 'ok' | 'stale'
local id, gen, attempt, progress = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local now = now_ms()
local blob = redis.call('HGET', K_ACTIVE, id)
local rec = blob and decode(blob)
if not rec or rec[JOB_GENERATION] ~= gen or rec[JOB_ATTEMPTS] ~= attempt then return 'stale' end
rec[JOB_PROGRESS] = progress
redis.call('HSET', K_ACTIVE, id, encode(rec))
emit_job('progress', id, rec, now, nil, progress)
return 'ok'
