-- Shared helpers, put in front of every script on the same line as OUTCOME
-- (see leasebroker/scripts.py): whole-line comments are dropped and the rest is
-- joined into one line, so keep every statement free of trailing comments.

-- Redis's clock in milliseconds: the only clock any decision uses.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Append one event to a merchant's capped stream. fields: flat list name, value, ...
local function emit(stream, maxlen, kind, fields)
  redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'type', kind, unpack(fields))
end

-- Keep an occupancy ZSET alive exactly as long as its longest-lived member.
local function refresh_slot_ttl(slot)
  local last = redis.call('ZRANGE', slot, -1, -1, 'WITHSCORES')
  if #last == 0 then
    return
  end
  if last[2] == 'inf' then
    redis.call('PERSIST', slot)
  else
    redis.call('PEXPIREAT', slot, last[2])
  end
end
