-- create_lease: hold one spot of a slot until the lease expires, atomically.
--
-- KEYS[1]  slot occupancy   ZSET    member lease/booking id, score expiry ms (bookings: +inf)
-- KEYS[2]  inventory        HASH    slot field -> capacity (absent: merchant has no inventory)
-- KEYS[3]  client ref       STRING  "<lease id> <fp> <expires_ms> <fence>" (idempotency entry)
-- KEYS[4]  lease record     HASH    for the new lease (fields listed at the write below)
-- KEYS[5]  fences           HASH    slot field -> last fencing token handed out
-- KEYS[6]  lease index      ZSET    lease id -> expiry ms, every lease not yet swept
-- KEYS[7]  events           STREAM  the merchant's event stream
--
-- ARGV[1]  lease id to assign (fresh, unguessable; unused on a replay)
-- ARGV[2]  request fingerprint (same request <=> same fingerprint)
-- ARGV[3]  slot field (name of the slot within the merchant)
-- ARGV[4]  default capacity for merchants without inventory (0: such slots are not offered)
-- ARGV[5]  slot start, ms since the epoch (floor)
-- ARGV[6]  requested expiry, ms since the epoch (floor), or "" for the default hold
-- ARGV[7]  default hold, ms
-- ARGV[8]  maximum hold, ms
-- ARGV[9]  client reference (stored in the record as it is)
-- ARGV[10] record retention after expiry, ms (for inspection and the sweeper)
-- ARGV[11] event retention, ms: older entries are trimmed (approximately); 0: no event
-- ARGV[12] the caller's deadline, ms on Redis's clock, or "" for none
-- ARGV[13] the service marker field of the slot's service (in the inventory HASH)
-- ARGV[14] the "nothing offered" marker field of a withdrawn merchant
-- ARGV[15] availability tag, or "" for none (not stored then)
--
-- Returns {OUTCOME.OK, lease_id, expires_ms, fence}          new hold written
--         {OUTCOME.REPLAYED, lease_id, expires_ms, fence}    same reference + request: that lease
--         {OUTCOME.CLIENT_REFERENCE_IN_USE, lease_id}        same reference, other request
--         {OUTCOME.SLOT_NOT_OFFERED}                         a known service's slot is not listed
--         {OUTCOME.UNKNOWN_MERCHANT}                         no inventory and no default capacity
--         {OUTCOME.UNKNOWN_SERVICE}                          the inventory lists no slot of it
--         {OUTCOME.SLOT_FULL, capacity}                      every spot is taken
--         {OUTCOME.START_TIME_PASSED, now_ms}                slot start is not after now
--         {OUTCOME.EXPIRY_NOT_IN_FUTURE, now_ms}             requested expiry is not after now
--         {OUTCOME.DEADLINE_PASSED}   the caller's deadline passed: nothing written
--         {OUTCOME.BAD_ARGUMENT, i}   ARGV[i] is malformed (checked before any write)
--
-- Redis TIME is the only clock: a hold is live while its expiry is after now, and
-- stops counting at that very millisecond, whether or not Redis has dropped it yet.
--
-- The record keeps only what cannot be derived: the slot's service, start, duration,
-- staff and room are in its name, the merchant and token in the key. Every value is
-- short, so Redis keeps the HASH in its compact listpack encoding.

local bad = bad_argument({4, 'int', 5, 'int', 6, 'int?', 7, 'int', 8, 'int',
  10, 'int', 11, 'int', 12, 'int?'})
if bad then
  return {OUTCOME.BAD_ARGUMENT, bad}
end

local now = now_ms()
if past_deadline(now, ARGV[12]) then
  return {OUTCOME.DEADLINE_PASSED}
end

local held, held_fp, held_until, held_fence = read_ref(KEYS[3])
if held and held_until > now then
  -- An entry written before fingerprints were shortened holds 64 digits, of which
  -- today's are the first 32.
  if string.sub(held_fp, 1, #ARGV[2]) == ARGV[2] then
    return {OUTCOME.REPLAYED, held, held_until, held_fence}
  end
  return {OUTCOME.CLIENT_REFERENCE_IN_USE, held}
end

local start = tonumber(ARGV[5])
if start <= now then
  return {OUTCOME.START_TIME_PASSED, now}
end

local expires = now + math.min(tonumber(ARGV[7]), tonumber(ARGV[8]))
if ARGV[6] ~= '' then
  local requested = tonumber(ARGV[6])
  if requested <= now then
    return {OUTCOME.EXPIRY_NOT_IN_FUTURE, now}
  end
  expires = math.min(requested, now + tonumber(ARGV[8]))
end
expires = math.min(expires, start)

local capacity, source = slot_capacity(KEYS[2], ARGV[3], ARGV[4])
if not is_offered(capacity, source) then
  if source == CAPACITY_SOURCE.DEFAULT then
    return {OUTCOME.UNKNOWN_MERCHANT}
  end
  if redis.call('HEXISTS', KEYS[2], ARGV[13]) == 0
      and redis.call('HEXISTS', KEYS[2], ARGV[14]) == 0 then
    return {OUTCOME.UNKNOWN_SERVICE}
  end
  return {OUTCOME.SLOT_NOT_OFFERED}
end
local taken = spots_taken(KEYS[1], now)
if taken >= capacity then
  return {OUTCOME.SLOT_FULL, capacity}
end

-- HINCRBY is the first write, and one that may grow memory: under maxmemory
-- (noeviction) Redis refuses the script there, before anything has changed.
local lease_id = ARGV[1]
local fence = redis.call('HINCRBY', KEYS[5], ARGV[3], '1')
-- Each passed several times below: formatted once (int_text).
local now_text, expires_text, fence_text = int_text(now), int_text(expires), int_text(fence)
redis.call('ZADD', KEYS[1], expires_text, lease_id)
if taken == 0 then
  -- Nothing else live: no booking (those count forever), and any hold left has
  -- expired, so the key's own TTL has passed too. The new hold sets it.
  redis.call('PEXPIREAT', KEYS[1], expires_text)
else
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_text)
  refresh_slot_ttl(KEYS[1])
end

local record = {'state', LEASE_STATE.HELD, 'slot_field', ARGV[3], 'ref', ARGV[9],
  'fence', fence_text, 'start_ms', int_text(start), 'created_ms', now_text,
  'expires_ms', expires_text}
if ARGV[15] ~= '' then
  record[#record + 1] = 'tag'
  record[#record + 1] = ARGV[15]
end
redis.call('HSET', KEYS[4], unpack(record))
redis.call('PEXPIREAT', KEYS[4], int_text(expires + tonumber(ARGV[10])))

write_ref(KEYS[3], lease_id, ARGV[2], expires_text, fence_text)

redis.call('ZADD', KEYS[6], expires_text, lease_id)
emit(KEYS[7], ARGV[11], now, 'lease.created', {'lease_id', lease_id, 'slot', ARGV[3],
  'fence', fence_text, 'expires_ms', expires_text, 'at_ms', now_text})

return {OUTCOME.OK, lease_id, expires, fence}
