-- reschedule_booking: move a booking to another slot of the merchant if it has room,
-- atomically; otherwise leave it exactly where it was (v0 UpdateBooking, start_time/duration).
--
-- KEYS[1]  booking record   HASH    the booking
-- KEYS[2]  old occupancy    ZSET    its current slot (as read from the record by the caller)
-- KEYS[3]  new occupancy    ZSET    the slot it moves to
-- KEYS[4]  inventory        HASH    slot field -> capacity
-- KEYS[5]  booking index    ZSET    booking id -> slot start ms
-- KEYS[6]  events           STREAM  the merchant's event stream
-- KEYS[7]  fences           HASH    slot field -> last fencing token handed out
--
-- ARGV[1]  booking id
-- ARGV[2]  new slot field
-- ARGV[3]  new slot start, ms since the epoch (floor)
-- ARGV[4]  new slot start, ns (stored as text)
-- ARGV[5]  new slot duration, ns (stored as text)
-- ARGV[6]  default capacity for merchants without inventory (0: such slots are not offered)
-- ARGV[7]  event retention, ms: older entries are trimmed (approximately); 0: no event
-- ARGV[8]  the caller's deadline, ms on Redis's clock, or "" for none
--
-- Returns {OUTCOME.OK, fence, now_ms}   moved; fence is the new slot's token for it
--         {OUTCOME.UNCHANGED}           the new slot is the one it already has
--         {OUTCOME.BOOKING_NOT_FOUND}   no such booking
--         {OUTCOME.BOOKING_CANCELLED}   a cancelled booking cannot move
--         {OUTCOME.SLOT_MOVED}          it moved since the caller read it: read again
--         {OUTCOME.SLOT_STARTED}        its current slot has started: too late to move
--         {OUTCOME.START_TIME_PASSED, now_ms}   the new slot's start is not after now
--         {OUTCOME.SLOT_NOT_OFFERED}    the new slot is not offered
--         {OUTCOME.SLOT_FULL, capacity} the new slot has no free spot
--         {OUTCOME.DEADLINE_PASSED}   the caller's deadline passed: nothing written
--         {OUTCOME.BAD_ARGUMENT, i}   ARGV[i] is malformed (checked before any write)

local bad = bad_argument({3, 'int', 4, 'ns', 5, 'ns', 6, 'int', 7, 'int', 8, 'int?'})
if bad then
  return {OUTCOME.BAD_ARGUMENT, bad}
end

local now = now_ms()
if past_deadline(now, ARGV[8]) then
  return {OUTCOME.DEADLINE_PASSED}
end
local booking = redis.call('HMGET', KEYS[1], 'booking_id', 'status', 'slot', 'slot_field',
  'start_ms')
if booking[1] ~= ARGV[1] then
  return {OUTCOME.BOOKING_NOT_FOUND}
end
if booking[2] == BOOKING_STATUS.CANCELLED then
  return {OUTCOME.BOOKING_CANCELLED}
end
if booking[3] ~= KEYS[2] then
  return {OUTCOME.SLOT_MOVED}
end
-- Already there (a retry of a reschedule that went through): answered as the first
-- call was, even once that slot has started.
if KEYS[3] == KEYS[2] then
  return {OUTCOME.UNCHANGED}
end
if tonumber(booking[5]) <= now then
  return {OUTCOME.SLOT_STARTED}
end
if tonumber(ARGV[3]) <= now then
  return {OUTCOME.START_TIME_PASSED, now}
end

local capacity, source = slot_capacity(KEYS[4], ARGV[2], ARGV[6])
if not is_offered(capacity, source) then
  return {OUTCOME.SLOT_NOT_OFFERED}
end
if spots_taken(KEYS[3], now) >= capacity then
  return {OUTCOME.SLOT_FULL, capacity}
end

-- The booking now holds a spot of another slot, so it gets that slot's next token:
-- a booking database keyed by slot sees tokens grow there too. HINCRBY goes first
-- as the first write that may grow memory, so maxmemory refuses before any change.
local fence = redis.call('HINCRBY', KEYS[7], ARGV[2], '1')
local now_text, fence_text = int_text(now), int_text(fence)
redis.call('ZADD', KEYS[3], '+inf', ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now_text)
refresh_slot_ttl(KEYS[3])
redis.call('ZREM', KEYS[2], ARGV[1])
refresh_slot_ttl(KEYS[2])
redis.call('HSET', KEYS[1], 'slot', KEYS[3], 'slot_field', ARGV[2], 'start_ms', ARGV[3],
  'start_ns', ARGV[4], 'duration_ns', ARGV[5], 'fence', fence_text, 'updated_ms', now_text)
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
emit(KEYS[6], ARGV[7], now, 'booking.rescheduled', {'booking_id', ARGV[1], 'from_slot', booking[4],
  'slot', ARGV[2], 'fence', fence_text, 'at_ms', now_text})
return {OUTCOME.OK, fence, now}
