-- extend_lease: push a live lease's expiry later, within its bounds.
--
-- KEYS[1]  lease record     HASH    the lease
-- KEYS[2]  slot occupancy   ZSET    its slot (as read from the record by the caller)
-- KEYS[3]  client ref       STRING  its idempotency entry (lives as long as the lease)
-- KEYS[4]  lease index      ZSET    lease id -> expiry ms
-- KEYS[5]  events           STREAM  the merchant's event stream
--
-- ARGV[1]  lease id
-- ARGV[2]  target expiry, ms since the epoch (the expiry the caller read + its extension)
-- ARGV[3]  maximum hold, ms (counted from the lease's creation)
-- ARGV[4]  expected fencing token, or "" to skip the check
-- ARGV[5]  record retention after the lease ended, ms
-- ARGV[6]  event retention, ms: older entries are trimmed (approximately); 0: no event
--
-- Returns {OUTCOME.OK, expires_ms}           new expiry (the bounds may cap it)
--         {OUTCOME.LEASE_NOT_FOUND}          no such lease (or not this slot)
--         {OUTCOME.LEASE_EXPIRED}            its expiry is not after now
--         {OUTCOME.LEASE_RELEASED}           released early
--         {OUTCOME.LEASE_CONSUMED, booking_id}  it became a booking
--         {OUTCOME.FENCE_MISMATCH, fence}    ARGV[4] is not the lease's token
--         {OUTCOME.BAD_ARGUMENT, i}   ARGV[i] is malformed (checked before any write)
--
-- Bounds: never past created + maximum hold, never past the slot's start.
-- The expiry becomes max(current, min(target, bounds)): a retry of the same call (say
-- after a lost reply) finds it done and changes nothing, so one call never extends twice.

local bad = bad_argument({2, 'int', 3, 'int', 4, 'int?', 5, 'int', 6, 'int'})
if bad then
  return {OUTCOME.BAD_ARGUMENT, bad}
end

local now = now_ms()
local lease = redis.call('HMGET', KEYS[1], 'state', 'slot_field', 'expires_ms', 'booking_id',
  'fence', 'created_ms', 'start_ms')
local state, field, fence = lease[1], lease[2], lease[5]
if not state or not is_slot_key(KEYS[2], field) then
  return {OUTCOME.LEASE_NOT_FOUND}
end
if state == LEASE_STATE.CONSUMED then
  return {OUTCOME.LEASE_CONSUMED, lease[4]}
end
if state == LEASE_STATE.RELEASED then
  return {OUTCOME.LEASE_RELEASED}
end
local expires = tonumber(lease[3])
if state ~= LEASE_STATE.HELD or expires <= now then
  return {OUTCOME.LEASE_EXPIRED}
end
if ARGV[4] ~= '' and ARGV[4] ~= fence then
  return {OUTCOME.FENCE_MISMATCH, tonumber(fence)}
end

local bound = math.min(tonumber(lease[6]) + tonumber(ARGV[3]), tonumber(lease[7]))
local extended = math.max(expires, math.min(tonumber(ARGV[2]), bound))
if extended > expires then
  local extended_text = int_text(extended)  -- passed five times below
  redis.call('ZADD', KEYS[2], 'XX', extended_text, ARGV[1])
  refresh_slot_ttl(KEYS[2])
  redis.call('HSET', KEYS[1], 'expires_ms', extended_text)
  redis.call('PEXPIREAT', KEYS[1], int_text(extended + tonumber(ARGV[5])))
  local held, held_fp = read_ref(KEYS[3])
  if held == ARGV[1] then
    write_ref(KEYS[3], held, held_fp, extended_text, fence)
  end
  redis.call('ZADD', KEYS[4], extended_text, ARGV[1])
  emit(KEYS[5], ARGV[6], now, 'lease.extended', {'lease_id', ARGV[1], 'slot', field,
    'fence', fence, 'expires_ms', extended_text, 'at_ms', int_text(now)})
end
return {OUTCOME.OK, extended}
