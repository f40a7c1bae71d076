-- prune_fences: drop the fencing counters of slots that started before a cutoff. No
-- lease can be granted on a slot that has started, so such a counter is never used again.
--
-- KEYS[1]  fences   HASH  slot field -> last fencing token handed out
--
-- ARGV[1]  cutoff, ms since the epoch (only fields of slots starting before it go)
-- ARGV[2..] pairs: slot field, its start in ms since the epoch
--
-- Returns {OUTCOME.OK, number of counters removed}
--         {OUTCOME.BAD_ARGUMENT, i}   ARGV[i] is malformed (checked before any write)
--
-- The caller reads the slot starts from the field names (Lua cannot parse them); the
-- script checks each against the cutoff on Redis's clock, so a caller's clock never
-- decides what is removed.

local spec = {1, 'int'}
for i = 3, #ARGV, 2 do
  spec[#spec + 1] = i
  spec[#spec + 1] = 'int'
end
local bad = bad_argument(spec)
if bad then
  return {OUTCOME.BAD_ARGUMENT, bad}
end

local cutoff = math.min(tonumber(ARGV[1]), now_ms())
local removed = 0
for i = 2, #ARGV, 2 do
  if tonumber(ARGV[i + 1]) < cutoff then
    removed = removed + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return {OUTCOME.OK, removed}
