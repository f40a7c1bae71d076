-- cancel_booking: cancel a booking and free its spot at once (v0 UpdateBooking, status).
--
-- KEYS[1]  booking record   HASH    the booking
-- KEYS[2]  slot occupancy   ZSET    its slot (as read from the record by the caller)
-- KEYS[3]  events           STREAM  the merchant's event stream
--
-- ARGV[1]  booking id
-- ARGV[2]  event retention, ms: older entries are trimmed (approximately); 0: no event
-- ARGV[3]  the caller's deadline, ms on Redis's clock, or "" for none
--
-- Returns {OUTCOME.OK, now_ms}          cancelled now (its updated_ms)
--         {OUTCOME.UNCHANGED}           it was cancelled already
--         {OUTCOME.BOOKING_NOT_FOUND}   no such booking
--         {OUTCOME.SLOT_MOVED}          it was rescheduled since the caller read it: read again
--         {OUTCOME.SLOT_STARTED}        its slot has started: too late to cancel
--         {OUTCOME.DEADLINE_PASSED}   the caller's deadline passed: nothing written
--         {OUTCOME.BAD_ARGUMENT, i}   ARGV[i] is malformed (checked before any write)

local bad = bad_argument({2, 'int', 3, 'int?'})
if bad then
  return {OUTCOME.BAD_ARGUMENT, bad}
end

local now = now_ms()
if past_deadline(now, ARGV[3]) then
  return {OUTCOME.DEADLINE_PASSED}
end
local booking = redis.call('HMGET', KEYS[1], 'booking_id', 'status', 'slot', 'slot_field',
  'start_ms', 'lease_id', 'fence')
if booking[1] ~= ARGV[1] then
  return {OUTCOME.BOOKING_NOT_FOUND}
end
if booking[2] == BOOKING_STATUS.CANCELLED then
  return {OUTCOME.UNCHANGED}
end
if booking[3] ~= KEYS[2] then
  return {OUTCOME.SLOT_MOVED}
end
if tonumber(booking[5]) <= now then
  return {OUTCOME.SLOT_STARTED}
end

redis.call('ZREM', KEYS[2], ARGV[1])
refresh_slot_ttl(KEYS[2])
local now_text = int_text(now)
redis.call('HSET', KEYS[1], 'status', BOOKING_STATUS.CANCELLED, 'updated_ms', now_text)
emit(KEYS[3], ARGV[2], now, 'booking.cancelled', {'booking_id', ARGV[1], 'slot', booking[4],
  'lease_id', booking[6], 'fence', booking[7], 'at_ms', now_text})
return {OUTCOME.OK, now}
