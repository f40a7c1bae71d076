-- consume_lease: turn a live lease into a booking (v0 CreateBooking), atomically.
--
-- KEYS[1]  lease record     HASH    the lease being consumed
-- KEYS[2]  slot occupancy   ZSET    the lease's slot (as read from the record by the caller)
-- KEYS[3]  inventory        HASH    slot field -> capacity
-- KEYS[4]  booking record   HASH    the new booking (fields listed at the write below)
-- KEYS[5]  booking index    ZSET    booking id -> slot start ms
-- KEYS[6]  lease index      ZSET    lease id -> expiry ms
-- KEYS[7]  events           STREAM  the merchant's event stream
--
-- ARGV[1]  lease id
-- ARGV[2]  booking id to assign (fresh; unused on a replay)
-- ARGV[3]  client fingerprint (same client_information <=> same fingerprint)
-- ARGV[4]  booking data (msgpack, opaque here)
-- ARGV[5]  default capacity for merchants without inventory
-- ARGV[6]  expected fencing token, or "" to skip the check
-- ARGV[7]  record retention after the lease ended, ms
-- ARGV[8]  event retention, ms: older entries are trimmed (approximately); 0: no event
-- ARGV[9]  slot start, ns since the epoch (stored as text)
-- ARGV[10] slot duration, ns (stored as text)
-- ARGV[11] the caller's deadline, ms on Redis's clock, or "" for none
--
-- Returns {OUTCOME.OK, booking_id, fence, now_ms}         booking written, lease consumed
--         {OUTCOME.BOOKING_REPLAYED, booking_id, fence}   consumed before by the same client
--         {OUTCOME.LEASE_CONSUMED, booking_id}            consumed before by another client
--         {OUTCOME.LEASE_NOT_FOUND}                       no such lease (or not this slot)
--         {OUTCOME.LEASE_EXPIRED}                         its expiry is not after now
--         {OUTCOME.LEASE_RELEASED}                        released early
--         {OUTCOME.FENCE_MISMATCH, fence}                 ARGV[6] is not the lease's token
--         {OUTCOME.SLOT_FULL, capacity}                   capacity fell to the bookings made
--         {OUTCOME.DEADLINE_PASSED}   the caller's deadline passed: nothing written
--         {OUTCOME.BAD_ARGUMENT, i}   ARGV[i] is malformed (checked before any write)

local bad = bad_argument({5, 'int', 6, 'int?', 7, 'int', 8, 'int', 9, 'ns',
  10, 'ns', 11, 'int?'})
if bad then
  return {OUTCOME.BAD_ARGUMENT, bad}
end

local now = now_ms()
if past_deadline(now, ARGV[11]) then
  return {OUTCOME.DEADLINE_PASSED}
end
local lease = redis.call('HMGET', KEYS[1], 'state', 'slot_field', 'expires_ms', 'fence',
  'booking_id', 'booking_fp', 'start_ms')
local lease_id, state, field = ARGV[1], lease[1], lease[2]
local expires, fence, booked_as, booked_fp = tonumber(lease[3]), lease[4], lease[5], lease[6]
if not state or not is_slot_key(KEYS[2], field) then
  return {OUTCOME.LEASE_NOT_FOUND}
end
if state == LEASE_STATE.CONSUMED then
  if booked_fp == ARGV[3] then
    return {OUTCOME.BOOKING_REPLAYED, booked_as, tonumber(fence)}
  end
  return {OUTCOME.LEASE_CONSUMED, booked_as}
end
if state == LEASE_STATE.RELEASED then
  return {OUTCOME.LEASE_RELEASED}
end
if state ~= LEASE_STATE.HELD or expires <= now then
  return {OUTCOME.LEASE_EXPIRED}
end
if ARGV[6] ~= '' and ARGV[6] ~= fence then
  return {OUTCOME.FENCE_MISMATCH, tonumber(fence)}
end

-- Capacity may have been lowered since the lease was granted. A slot dropped from
-- the inventory keeps honouring leases already made, so only a listed capacity
-- (or the default, for merchants without inventory) is checked.
local capacity, source = slot_capacity(KEYS[3], field, ARGV[5])
if source ~= CAPACITY_SOURCE.UNLISTED and redis.call('ZCOUNT', KEYS[2], '+inf', '+inf') >= capacity then
  return {OUTCOME.SLOT_FULL, capacity}
end

-- The booking record is the first write, and one that grows memory: under
-- maxmemory (noeviction) Redis refuses the script there, before anything changed.
local booking_id = ARGV[2]
local start_ms = lease[7]
local now_text = int_text(now)  -- passed five times below
redis.call('HSET', KEYS[4],
  'booking_id', booking_id, 'lease_id', lease_id, 'status', BOOKING_STATUS.CONFIRMED,
  'slot', KEYS[2], 'slot_field', field, 'start_ms', start_ms, 'start_ns', ARGV[9], 'duration_ns', ARGV[10],
  'fence', fence, 'fp', ARGV[3], 'created_ms', now_text, 'updated_ms', now_text, 'data', ARGV[4])
redis.call('ZADD', KEYS[5], start_ms, booking_id)

redis.call('ZREM', KEYS[2], lease_id)
redis.call('ZADD', KEYS[2], '+inf', booking_id)
refresh_slot_ttl(KEYS[2])

redis.call('HSET', KEYS[1], 'state', LEASE_STATE.CONSUMED, 'booking_id', booking_id,
  'booking_fp', ARGV[3], 'ended_ms', now_text)
-- Kept as long as the lease's client-reference entry can still replay this lease id
-- (until its original expiry), plus the retention: a replayed id must stay bookable.
redis.call('PEXPIREAT', KEYS[1], int_text(expires + tonumber(ARGV[7])))
redis.call('ZREM', KEYS[6], lease_id)

emit(KEYS[7], ARGV[8], now, 'lease.consumed', {'lease_id', lease_id, 'slot', field,
  'fence', fence, 'booking_id', booking_id, 'at_ms', now_text})
emit(KEYS[7], ARGV[8], now, 'booking.created', {'booking_id', booking_id, 'slot', field,
  'lease_id', lease_id, 'fence', fence, 'at_ms', now_text})
return {OUTCOME.OK, booking_id, tonumber(fence), now}
