-- check_permissions: which of the commands the broker needs this Redis user may not run.
-- Run once at start: Redis checks ACLs command by command inside a script, so a
-- denied command would otherwise fail a script half-way, after earlier writes.
--
-- KEYS[1]  scratch key      any     the probes' key, deleted before and after
--
-- ARGV[1..] the command names to try (upper case), each tried once on KEYS[1]
--
-- Returns {OUTCOME.OK, denied, ...}   the names the ACL refused (none: all allowed)
--         {OUTCOME.BAD_ARGUMENT, i}   ARGV[i] names a command this script cannot try

local key = KEYS[1]
local probes = {
  DEL = {'DEL', key},
  EXISTS = {'EXISTS', key},
  HSET = {'HSET', key, 'f', '1'},
  HGET = {'HGET', key, 'f'},
  HMGET = {'HMGET', key, 'f'},
  HGETALL = {'HGETALL', key},
  HKEYS = {'HKEYS', key},
  HINCRBY = {'HINCRBY', key, 'g', 1},
  HDEL = {'HDEL', key, 'g'},
  HEXISTS = {'HEXISTS', key, 'f'},
  PEXPIREAT = {'PEXPIREAT', key, 1},
  PERSIST = {'PERSIST', key},
  PTTL = {'PTTL', key},
  TYPE = {'TYPE', key},
  TIME = {'TIME'},
  ZADD = {'ZADD', key, 1, 'm'},
  ZCOUNT = {'ZCOUNT', key, '-inf', '+inf'},
  ZRANGE = {'ZRANGE', key, 0, -1},
  ZRANGEBYSCORE = {'ZRANGEBYSCORE', key, '-inf', '+inf'},
  ZREM = {'ZREM', key, 'm'},
  ZREMRANGEBYSCORE = {'ZREMRANGEBYSCORE', key, '-inf', 0},
  ZSCORE = {'ZSCORE', key, 'm'},
  SADD = {'SADD', key, 'm'},
  SISMEMBER = {'SISMEMBER', key, 'm'},
  SMEMBERS = {'SMEMBERS', key},
  XADD = {'XADD', key, 'MAXLEN', '~', 1, '*', 'f', '1'},
  XRANGE = {'XRANGE', key, '-', '+', 'COUNT', 1},
  XREVRANGE = {'XREVRANGE', key, '+', '-', 'COUNT', 1},
  XREAD = {'XREAD', 'COUNT', 1, 'STREAMS', key, '0-0'},
  XTRIM = {'XTRIM', key, 'MAXLEN', 0},
  SCAN = {'SCAN', 0, 'MATCH', key, 'COUNT', 1},
  GET = {'GET', key},
  SET = {'SET', key, '1', 'PX', 10000},
}

for index = 1, #ARGV do
  if not probes[ARGV[index]] then
    return {OUTCOME.BAD_ARGUMENT, index}
  end
end

-- Redis checks the ACL before the key's type, so a probe meeting a key of another
-- type (WRONGTYPE) still tells that the command is allowed.
local denied = {}
redis.pcall('DEL', key)
for index = 1, #ARGV do
  local name = ARGV[index]
  local reply = redis.pcall(unpack(probes[name]))
  local refused = type(reply) == 'table' and reply.err and tostring(reply.err)
  -- Redis 7.2 says NOPERM; 7.0 "ERR The user executing the script can't run this command".
  if refused and (string.find(refused, 'NOPERM', 1, true)
      or string.find(refused, 'user executing the script', 1, true)) then
    table.insert(denied, name)
  end
end
redis.pcall('DEL', key)
return {OUTCOME.OK, unpack(denied)}
