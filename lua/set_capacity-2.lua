-- set_capacity: set one slot's capacity in a merchant's inventory.
--
-- KEYS[1]  inventory   HASH    slot field -> capacity
-- KEYS[2]  events      STREAM  the merchant's event stream
--
-- ARGV[1]  slot field
-- ARGV[2]  capacity (0 or more)
-- ARGV[3]  event retention, ms: older entries are trimmed (approximately); 0: no event
-- ARGV[4]  the service marker field of the slot's service (the service becomes known)
--
-- Returns {OUTCOME.OK, previous capacity or -1 when the slot was not listed}
--         {OUTCOME.UNCHANGED, capacity}   it already had that capacity: nothing written
--                                         and no event (so a retried call is a no-op)
--         {OUTCOME.BAD_ARGUMENT, i}   ARGV[i] is malformed (checked before any write)
--
-- Lowering a capacity never cancels a lease or booking already made; it only
-- refuses new leases (and bookings of leases beyond it) from now on. A merchant
-- with no inventory gets one by this: from then on only its listed slots are offered.

local bad = bad_argument({2, 'int', 3, 'int'})
if bad then
  return {OUTCOME.BAD_ARGUMENT, bad}
end

local now = now_ms()
local previous = redis.call('HGET', KEYS[1], ARGV[1])
if previous == ARGV[2] then
  return {OUTCOME.UNCHANGED, tonumber(previous)}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], ARGV[4], 1)
emit(KEYS[2], ARGV[3], now, 'inventory.capacity_set', {'slot', ARGV[1], 'capacity', ARGV[2],
  'at_ms', now})
return {OUTCOME.OK, tonumber(previous or -1)}
