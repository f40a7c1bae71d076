-- replace_inventory: replace a merchant's whole inventory at once.
--
-- KEYS[1]  inventory   HASH    slot field -> capacity, and one marker field per service
-- KEYS[2]  events      STREAM  the merchant's event stream
--
-- ARGV[1]  event retention, ms: older entries are trimmed (approximately); 0: no event
-- ARGV[2]  the "nothing offered" marker field, written when no slot is given
-- ARGV[3]  the feed's generation_timestamp (kept in the field ~generation), or ""
-- ARGV[4]  n, the number of slots
-- ARGV[5..4+2n]  pairs: slot field, capacity, slot field, capacity, ... (may be none)
-- ARGV[5+2n..]   the service marker field of each service the slots offer
--
-- Returns {OUTCOME.OK, number of slots written}
--         {OUTCOME.FEED_OUTDATED, generation}   the merchant holds a newer feed's slots
--         {OUTCOME.BAD_ARGUMENT, i}   ARGV[i] is malformed (checked before any write)
--
-- A merchant with an inventory key offers only the slots in it, so the old
-- inventory is dropped and the new one written in one atomic step: no caller
-- ever sees a half-loaded merchant. With no slots the key keeps only the marker
-- (which names no slot), so the merchant offers nothing, rather than falling back
-- to the default capacity. Leases and bookings are not touched.

local spec = {1, 'int', 3, 'int?', 4, 'int'}
local bad = bad_argument(spec)
if bad then
  return {OUTCOME.BAD_ARGUMENT, bad}
end
local slots = tonumber(ARGV[4])
local last_pair = 4 + 2 * slots
if slots < 0 or last_pair > #ARGV then
  return {OUTCOME.BAD_ARGUMENT, 4}
end
for i = 6, last_pair, 2 do
  spec[#spec + 1] = i
  spec[#spec + 1] = 'int'
end
bad = bad_argument(spec)
if bad then
  return {OUTCOME.BAD_ARGUMENT, bad}
end

-- Per merchant, atomically: of two loaders racing, the older feed never overwrites a
-- merchant the newer one has written.
local loaded = tonumber(redis.call('HGET', KEYS[1], '~generation'))
if ARGV[3] ~= '' and loaded and loaded > tonumber(ARGV[3]) then
  return {OUTCOME.FEED_OUTDATED, loaded}
end

local now = now_ms()
-- The first write must be one that may grow memory: under maxmemory (noeviction) Redis
-- refuses the script there, before the old inventory is gone. That is the event, or,
-- with the streams off, a scratch field that the DEL drops again.
if not emit(KEYS[2], ARGV[1], now, 'inventory.loaded', {'slots', slots, 'at_ms', now}) then
  redis.call('HSET', KEYS[1], '~replacing', 1)
end
redis.call('DEL', KEYS[1])
if slots == 0 then
  redis.call('HSET', KEYS[1], ARGV[2], 0)
end
-- HSET in chunks: unpack() of thousands of arguments overflows Lua's C stack.
local chunk = 1000
for i = 5, last_pair, chunk do
  local last = math.min(i + chunk - 1, last_pair)
  redis.call('HSET', KEYS[1], unpack(ARGV, i, last))
end
for i = last_pair + 1, #ARGV do
  redis.call('HSET', KEYS[1], ARGV[i], 1)
end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], '~generation', ARGV[3])
end
return {OUTCOME.OK, slots}
