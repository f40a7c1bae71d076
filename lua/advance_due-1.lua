-- advance_due: move a merchant's entry in the sweeper's due index to its next expiry,
-- unless a CreateLease lowered it meanwhile (compare and set on this one key).
--
-- KEYS[1]  due index        ZSET    merchant id -> earliest unswept expiry ms (a hint)
--
-- ARGV[1]  merchant id
-- ARGV[2]  the score the sweeper found the merchant due at
-- ARGV[3]  the merchant's next expiry (ms), or "" when its lease index is empty
--
-- Returns {OUTCOME.OK}                 moved (or removed, with ARGV[3] = "")
--         {OUTCOME.UNCHANGED}          the entry changed since the sweeper read it: kept
--         {OUTCOME.BAD_ARGUMENT, i}    ARGV[i] is malformed (checked before any write)
--
-- The index lives outside every merchant's hash tag, so no merchant's script can
-- write it (Redis Cluster): CreateLease lowers an entry (ZADD LT) after its script,
-- and this script only ever moves the entry the sweeper acted on. A lease created
-- between the sweeper's read of the lease index and this script can be missed; the
-- sweeper's slow full pass finds it (core/sweeper.py).

local bad = bad_argument({2, 'int', 3, 'int?'})
if bad then
  return {OUTCOME.BAD_ARGUMENT, bad}
end

local current = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not current or tonumber(current) ~= tonumber(ARGV[2]) then
  return {OUTCOME.UNCHANGED}
end
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
end
return {OUTCOME.OK}
