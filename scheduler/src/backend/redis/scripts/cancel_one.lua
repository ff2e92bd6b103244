-- A cancel (cancel.lua) called with the keys it touches rather than the
-- namespace's thirteen. Library form only (see scripts.rs); with EVALSHA,
-- cancel.lua takes every key.
-- KEYS: due, pending, active, results, results_exp, listeners of one
--       namespace (every key of a namespace is `{namespace}:<suffix>`, see
--       common.lua)
-- ARGV: as cancel.lua's, the reply log's request last
-- The keys it does not declare are named here from the namespace's prefix,
-- so that cancel.lua's body runs as it is, whatever path it takes.
--
-- Why a function of its own: a cancel is one round trip on its caller's
-- path, and each key a call declares costs the client about 1,000
-- instructions (fred encodes it and hashes its slot): 7,400 fewer per cancel.
-- Redis spends about what it saved on the keys naming them here (leaving
-- them unset would save 4,300 more, but a helper reaching one would fail in
-- the middle of a cancel). bench/README.md, session 17.
local due = KEYS[1]
local prefix = key_prefix(due)
return run_cancel({due, KEYS[2], KEYS[3], prefix .. 'leases', KEYS[4], KEYS[5], prefix .. 'dead',
  prefix .. 'dead_order', prefix .. 'seq', prefix .. 'claim_log', prefix .. 'claim_exp', prefix .. 'schedules',
  KEYS[6]}, ARGV)
