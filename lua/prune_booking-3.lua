-- prune_booking: forget a booking whose slot started before a cutoff, with its slot's
-- occupancy set. Nothing can change such a booking any more: its slot has started, so
-- it can no longer be cancelled or moved, and no lease can be granted on that slot.
--
-- KEYS[1]  booking index    ZSET    booking id -> slot start ms
-- KEYS[2]  booking record   HASH    the booking
-- KEYS[3]  slot occupancy   ZSET    its slot (as read from the record by the caller)
--
-- ARGV[1]  booking id
-- ARGV[2]  cutoff, ms since the epoch: only slots that started before it are pruned
--
-- Returns {OUTCOME.OK}          record, index entry and occupancy set removed
--         {OUTCOME.NOT_DUE}     the slot starts at or after the cutoff: kept
--         {OUTCOME.SLOT_MOVED}  the record names another slot now: read again
--         {OUTCOME.BAD_ARGUMENT, i}   ARGV[i] is malformed (checked before any write)
--
-- A booking record that is already gone leaves only its index entry, which goes too.

local bad = bad_argument({2, 'int'})
if bad then
  return {OUTCOME.BAD_ARGUMENT, bad}
end

local now = now_ms()
local cutoff = math.min(tonumber(ARGV[2]), now)
local booking = redis.call('HMGET', KEYS[2], 'booking_id', 'slot', 'start_ms')
if booking[1] ~= ARGV[1] then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return {OUTCOME.OK}
end
if tonumber(booking[3]) >= cutoff then
  return {OUTCOME.NOT_DUE}
end
if booking[2] ~= KEYS[3] then
  return {OUTCOME.SLOT_MOVED}
end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[1], ARGV[1])
return {OUTCOME.OK}
