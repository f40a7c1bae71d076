-- release_lease: end a live lease early and free its spot at once. Idempotent.
--
-- KEYS[1]  lease record     HASH    the lease
-- KEYS[2]  slot occupancy   ZSET    its slot (as read from the record by the caller)
-- KEYS[3]  client ref       STRING  its idempotency entry (freed with it, if still its)
-- KEYS[4]  lease index      ZSET    lease id -> expiry ms
-- KEYS[5]  events           STREAM  the merchant's event stream
--
-- ARGV[1]  lease id
-- ARGV[2]  record retention after the lease ended, ms
-- ARGV[3]  event retention, ms: older entries are trimmed (approximately); 0: no event
--
-- Returns {OUTCOME.OK}                      released now
--         {OUTCOME.UNCHANGED}               already released, or already expired
--         {OUTCOME.LEASE_NOT_FOUND}         no such lease (or not this slot)
--         {OUTCOME.LEASE_CONSUMED, booking_id}  it became a booking: cancel that instead
--         {OUTCOME.BAD_ARGUMENT, i}   ARGV[i] is malformed (checked before any write)

local bad = bad_argument({2, 'int', 3, 'int'})
if bad then
  return {OUTCOME.BAD_ARGUMENT, bad}
end

local now = now_ms()
local lease = redis.call('HMGET', KEYS[1], 'state', 'slot_field', 'expires_ms', 'booking_id',
  'fence')
local state, field = lease[1], lease[2]
if not state or not is_slot_key(KEYS[2], field) then
  return {OUTCOME.LEASE_NOT_FOUND}
end
if state == LEASE_STATE.CONSUMED then
  return {OUTCOME.LEASE_CONSUMED, lease[4]}
end
if state ~= LEASE_STATE.HELD or tonumber(lease[3]) <= now then
  return {OUTCOME.UNCHANGED}
end

redis.call('ZREM', KEYS[2], ARGV[1])
refresh_slot_ttl(KEYS[2])
if read_ref(KEYS[3]) == ARGV[1] then
  redis.call('DEL', KEYS[3])
end
redis.call('ZREM', KEYS[4], ARGV[1])
local now_text = int_text(now)
redis.call('HSET', KEYS[1], 'state', LEASE_STATE.RELEASED, 'ended_ms', now_text)
redis.call('PEXPIREAT', KEYS[1], int_text(now + tonumber(ARGV[2])))
emit(KEYS[5], ARGV[3], now, 'lease.released', {'lease_id', ARGV[1], 'slot', field,
  'fence', lease[5], 'at_ms', now_text})
return {OUTCOME.OK}
