-- slot_status: a consistent view of one slot's capacity and use. Writes nothing.
--
-- KEYS[1]  slot occupancy   ZSET    member lease/booking id, score expiry ms (bookings: +inf)
-- KEYS[2]  inventory        HASH    slot field -> capacity
--
-- ARGV[1]  slot field
-- ARGV[2]  default capacity for merchants without inventory
--
-- Returns {OUTCOME.OK, capacity, source, live holds, bookings, now_ms}
--   capacity: spots (0 when not offered); source: 'inventory', 'default', or
--   'unlisted' (the merchant has inventory and this slot is not in it).
--         {OUTCOME.BAD_ARGUMENT, i}   ARGV[i] is malformed (checked before any write)

local bad = bad_argument({2, 'int'})
if bad then
  return {OUTCOME.BAD_ARGUMENT, bad}
end

local now = now_ms()
local capacity, source = slot_capacity(KEYS[2], ARGV[1], ARGV[2])
local holds = redis.call('ZCOUNT', KEYS[1], '(' .. now, '(+inf')
local bookings = redis.call('ZCOUNT', KEYS[1], '+inf', '+inf')
return {OUTCOME.OK, capacity, source, holds, bookings, now}
