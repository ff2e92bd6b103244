-- The registry of this crate's function libraries: which versions of the
-- scripts are still in use, so that the libraries of versions no longer
-- running can be deleted (see libraries.rs). Library form only.
-- KEYS: the registry (a hash: library name -> server time in ms when a
--       scheduler using that library last recorded itself); it lives in
--       database 0 whatever the caller's database, as the libraries are
--       server-wide. Every version reads and writes it: keep its format.
-- ARGV: this scheduler's library, the age in ms after which a library not
--       recorded again is stale, then the other libraries of this crate that
--       are loaded on the server
-- Records this scheduler's library as seen now. Returns the libraries of
-- ARGV[3..] to delete: those recorded longer ago than the stale age (their
-- entries are removed with them). A loaded library without an entry (loaded
-- by a version older than the registry, or the registry was lost) is
-- recorded now: it is deleted only if nothing records it for the stale age.
-- Entries of libraries no longer loaded are removed once stale.
redis.call('SELECT', 0)
local registry, current, stale_ms = KEYS[1], ARGV[1], tonumber(ARGV[2])
local now = now_ms()
redis.call('HSET', registry, current, now)
local loaded, stale = {[current] = true}, {}
for i = 3, #ARGV do
  local name = ARGV[i]
  loaded[name] = true
  local seen = tonumber(redis.call('HGET', registry, name))
  if not seen then
    redis.call('HSET', registry, name, now)
  elseif now - seen > stale_ms then
    redis.call('HDEL', registry, name)
    stale[#stale + 1] = name
  end
end
local entries = redis.call('HGETALL', registry)
for i = 1, #entries, 2 do
  local name, seen = entries[i], tonumber(entries[i + 1])
  if not loaded[name] and (not seen or now - seen > stale_ms) then
    redis.call('HDEL', registry, name)
  end
end
return stale
