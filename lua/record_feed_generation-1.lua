-- record_feed_generation: remember the generation of the newest feed loaded, and refuse
-- an older one before anything is written. (Two loaders racing are ordered merchant
-- by merchant too: replace_inventory keeps each merchant's generation.)
--
-- KEYS[1]  feed record      HASH    generation_timestamp, nonce, loaded_ms
--
-- ARGV[1]  the feed's generation_timestamp, seconds since the epoch
-- ARGV[2]  the feed's nonce, or "" when it has none
--
-- Returns {OUTCOME.OK, previous generation or -1}   recorded: the feed may be loaded
--         {OUTCOME.FEED_OUTDATED, newer generation} a newer feed was loaded: refused
--         {OUTCOME.BAD_ARGUMENT, i}   ARGV[i] is malformed (checked before any write)

local bad = bad_argument({1, 'int', 2, 'u64?'})
if bad then
  return {OUTCOME.BAD_ARGUMENT, bad}
end

local stored = tonumber(redis.call('HGET', KEYS[1], 'generation_timestamp'))
local generation = tonumber(ARGV[1])
if stored and stored > generation then
  return {OUTCOME.FEED_OUTDATED, stored}
end
redis.call('HSET', KEYS[1], 'generation_timestamp', ARGV[1], 'nonce', ARGV[2],
  'loaded_ms', now_ms())
return {OUTCOME.OK, stored or -1}
