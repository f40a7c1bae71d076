-- create_lease: hold one spot of a slot until the lease expires, atomically.
--
-- KEYS[1]  slot occupancy   ZSET  member lease id, score expiry (ms since the epoch)
-- KEYS[2]  inventory        HASH  slot field -> capacity (absent: merchant has no inventory)
-- KEYS[3]  client ref       HASH  lease, fp, expires_ms (idempotency entry)
-- KEYS[4]  lease record     HASH  for the new lease (fields listed at the write below)
--
-- ARGV[1]  lease id to assign (fresh, unguessable; unused on a replay)
-- ARGV[2]  request fingerprint (same request <=> same fingerprint)
-- ARGV[3]  slot field (name of the slot within the merchant's inventory)
-- ARGV[4]  default capacity for merchants without inventory (0: such slots are not offered)
-- ARGV[5]  slot start, ms since the epoch (floor)
-- ARGV[6]  requested expiry, ms since the epoch (floor), or "" for the default hold
-- ARGV[7]  default hold, ms
-- ARGV[8]  maximum hold, ms
-- ARGV[9]  lease data (msgpack, opaque here: stored as it is, never decoded)
--
-- Returns {OUTCOME.OK, lease_id, expires_ms}            new hold written
--         {OUTCOME.REPLAYED, lease_id, expires_ms}      same reference + request: that lease
--         {OUTCOME.CLIENT_REFERENCE_IN_USE, lease_id}   same reference, other request
--         {OUTCOME.SLOT_NOT_OFFERED}                    not in inventory / capacity unknown
--         {OUTCOME.SLOT_FULL, capacity}                 every spot is taken
--         {OUTCOME.START_TIME_PASSED, now_ms}           slot start is not after now
--         {OUTCOME.EXPIRY_NOT_IN_FUTURE, now_ms}        requested expiry is not after now
--
-- Redis TIME is the only clock: a hold is live while its expiry is after now, and
-- stops counting at that very millisecond, whether or not Redis has dropped it yet.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local ref = redis.call('HMGET', KEYS[3], 'lease', 'fp', 'expires_ms')
if ref[1] and tonumber(ref[3]) > now then
  if ref[2] == ARGV[2] then
    return {OUTCOME.REPLAYED, ref[1], tonumber(ref[3])}
  end
  return {OUTCOME.CLIENT_REFERENCE_IN_USE, ref[1]}
end

local start = tonumber(ARGV[5])
if start <= now then
  return {OUTCOME.START_TIME_PASSED, now}
end

local expires = now + tonumber(ARGV[7])
if ARGV[6] ~= '' then
  local requested = tonumber(ARGV[6])
  if requested <= now then
    return {OUTCOME.EXPIRY_NOT_IN_FUTURE, now}
  end
  expires = math.min(requested, now + tonumber(ARGV[8]))
end
expires = math.min(expires, start)

local capacity = redis.call('HGET', KEYS[2], ARGV[3])
if capacity then
  capacity = tonumber(capacity)
elseif redis.call('EXISTS', KEYS[2]) == 1 then
  return {OUTCOME.SLOT_NOT_OFFERED}
else
  capacity = tonumber(ARGV[4])
  if capacity <= 0 then
    return {OUTCOME.SLOT_NOT_OFFERED}
  end
end

-- Holds that have expired no longer count; drop them before counting.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= capacity then
  return {OUTCOME.SLOT_FULL, capacity}
end

local lease_id = ARGV[1]
redis.call('ZADD', KEYS[1], expires, lease_id)
-- The occupancy key lives as long as its longest hold.
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])

redis.call('HSET', KEYS[4],
  'lease_id', lease_id, 'state', 'held', 'slot', KEYS[1], 'client_ref', KEYS[3],
  'fp', ARGV[2], 'created_ms', now, 'expires_ms', expires, 'data', ARGV[9])
redis.call('PEXPIREAT', KEYS[4], expires)

redis.call('HSET', KEYS[3], 'lease', lease_id, 'fp', ARGV[2], 'expires_ms', expires)
redis.call('PEXPIREAT', KEYS[3], expires)

return {OUTCOME.OK, lease_id, expires}
