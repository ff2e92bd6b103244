-- ARGV: task ('' for every task), cursor, count
-- Walks the pending jobs of the namespace (not the keyspace) with HSCAN.
-- Returns {next cursor, entries...}; each entry {id, task, generation, run_at, attempts, payload}.
local task, cursor, count = ARGV[1], ARGV[2], tonumber(ARGV[3])
local page = redis.call('HSCAN', K_PENDING, cursor, 'COUNT', count)
local out = {page[1]}
local fields = page[2]
for i = 1, #fields, 2 do
  local id, rec = fields[i], decode(fields[i + 1])
  if rec and (task == '' or rec[JOB_TASK] == task) then
    local run_at = rec[JOB_BLOCKED_RUN_AT] or tonumber(entry_score(rec, id) or 0)
    out[#out + 1] = {id, rec[JOB_TASK], string.format('%d', rec[JOB_GENERATION]), string.format('%d', run_at),
      string.format('%d', rec[JOB_ATTEMPTS]), rec[JOB_PAYLOAD]}
  end
end
return out
