-- sweep_lease: record that a lease's hold has ended by expiry, once, and tidy its entries.
-- Safe to run from several processes at once: only the first run finds it due.
--
-- KEYS[1]  lease index      ZSET    lease id -> expiry ms
-- KEYS[2]  lease record     HASH    the lease
-- KEYS[3]  slot occupancy   ZSET    its slot (as read from the record by the caller)
-- KEYS[4]  events           STREAM  the merchant's event stream
--
-- ARGV[1]  lease id
-- ARGV[2]  event retention, ms: older entries are trimmed (approximately); 0: no event
--
-- Returns {OUTCOME.OK}         marked expired, lease.expired emitted
--         {OUTCOME.NOT_DUE}    still live, already swept, or ended another way
--         {OUTCOME.BAD_ARGUMENT, i}   ARGV[i] is malformed (checked before any write)
--
-- Correctness never depends on this script: an expired hold stops counting at its
-- expiry whether or not it has been swept.

local bad = bad_argument({2, 'int'})
if bad then
  return {OUTCOME.BAD_ARGUMENT, bad}
end

local now = now_ms()
local indexed = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not indexed then
  return {OUTCOME.NOT_DUE}
end
local lease = redis.call('HMGET', KEYS[2], 'state', 'slot_field', 'expires_ms', 'fence')
if lease[1] ~= LEASE_STATE.HELD then
  -- Record gone (retention passed) or ended another way: only the index entry is left.
  redis.call('ZREM', KEYS[1], ARGV[1])
  return {OUTCOME.NOT_DUE}
end
local expires = tonumber(lease[3])
if expires > now then
  redis.call('ZADD', KEYS[1], lease[3], ARGV[1])
  return {OUTCOME.NOT_DUE}
end
if not is_slot_key(KEYS[3], lease[2]) then
  return {OUTCOME.NOT_DUE}
end

redis.call('ZREM', KEYS[3], ARGV[1])
refresh_slot_ttl(KEYS[3])
redis.call('ZREM', KEYS[1], ARGV[1])
local now_text = int_text(now)
redis.call('HSET', KEYS[2], 'state', LEASE_STATE.EXPIRED, 'ended_ms', now_text)
emit(KEYS[4], ARGV[2], now, 'lease.expired', {'lease_id', ARGV[1], 'slot', lease[2],
  'fence', lease[4], 'expires_ms', lease[3], 'at_ms', now_text})
return {OUTCOME.OK}
