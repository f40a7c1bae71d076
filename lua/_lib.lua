-- Shared helpers, put in front of every script on its first line (see
-- leasebroker/core/scripts.py): whole-line comments are dropped and the rest is
-- joined into one line, so keep every statement free of trailing comments.

-- A whole number as text, to pass to redis.call. Redis 7.0 turns each Lua number
-- argument into text with snprintf("%.17g"), ~0.5 us a time; this takes half that, and
-- a value passed several times is formatted once (create_lease passes its expiry six
-- times). Numbers here are ms or counts, whole and far below 2^53: %d prints them exactly.
local function int_text(n)
  return string.format('%d', n)
end

-- Redis's clock in milliseconds: the only clock any decision uses.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Append one event to a merchant's stream, trimming (approximately: whole macro nodes)
-- the entries older than retention ms, so a stream is bounded by time, not by a
-- count that would hold days of a quiet merchant and minutes of a busy one.
-- A retention of EVENTS_OFF (0) means the streams are off: nothing is appended.
-- Returns whether it wrote. now: the script's reading of Redis's clock (one TIME call
-- per script); fields: flat list name, value, ... (whole numbers best as int_text).
local function emit(stream, retention, now, kind, fields)
  local keep = tonumber(retention)
  if keep == EVENTS_OFF then
    return false
  end
  redis.call('XADD', stream, 'MINID', '~', int_text(math.max(0, now - keep)), '*', 'type', kind, unpack(fields))
  return true
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

-- The capacity rule, the one every script that checks capacity uses. Returns the
-- slot's capacity and where it comes from: the merchant's inventory lists the slot
-- (INVENTORY), or the merchant has no inventory and the default applies (DEFAULT),
-- or the merchant's inventory does not list the slot (UNLISTED, capacity 0).
local function slot_capacity(inventory, field, default)
  local listed = redis.call('HGET', inventory, field)
  if listed then
    return tonumber(listed), CAPACITY_SOURCE.INVENTORY
  end
  if redis.call('EXISTS', inventory) == 1 then
    return 0, CAPACITY_SOURCE.UNLISTED
  end
  return tonumber(default), CAPACITY_SOURCE.DEFAULT
end

-- Whether a new hold may be placed on the slot at all: a listed slot is offered (at
-- capacity 0 it is simply full); a default capacity of 0 offers nothing.
local function is_offered(capacity, source)
  return source == CAPACITY_SOURCE.INVENTORY or (source == CAPACITY_SOURCE.DEFAULT and capacity > 0)
end

-- Spots in use: live holds and bookings count; expired holds (score <= now) do not.
-- Counting writes nothing, so a refusal leaves the store untouched.
local function spots_taken(slot, now)
  return redis.call('ZCOUNT', slot, '(' .. int_text(now), '+inf')
end

-- Argument checks, run before a script's first write: Redis does not roll a script
-- back when a command fails half-way, so a bad value must stop it before anything
-- changed. spec is a flat list: ARGV index, kind, index, kind, ... with kinds 'int' (a
-- whole number of at most 15 digits, exact in Lua's numbers), 'ns' (at most 19 digits,
-- kept as text), 'u64' (at most 20, kept as text), each with a trailing '?' when '' is
-- allowed too. Returns the first bad index in spec's order, or nil. It runs on every
-- call of every script: a list and a counted loop (create_lease's eight checks, timed
-- in a loop inside Redis: ~2.9 us, against ~3.3 us as a map walked with pairs).
local ARGUMENT_DIGITS = {['int'] = 15, ['int?'] = 15, ['ns'] = 19, ['ns?'] = 19, ['u64'] = 20, ['u64?'] = 20}
local function bad_argument(spec)
  for i = 1, #spec, 2 do
    local index, kind = spec[i], spec[i + 1]
    local value = ARGV[index]
    if value == nil then
      return index
    end
    if value ~= '' or string.byte(kind, -1) ~= 63 then
      local digits = #value - ((string.byte(value) == 45) and 1 or 0)
      if not string.find(value, '^%-?%d+$') or digits > ARGUMENT_DIGITS[kind] then
        return index
      end
    end
  end
  return nil
end

-- Whether the caller's deadline (ms on Redis's clock, or '' for none) has passed:
-- its client has given up waiting, so the script must not act for it.
local function past_deadline(now, deadline)
  return deadline ~= '' and now > tonumber(deadline)
end

-- Whether key is the occupancy key of the slot named field (records keep the slot's
-- name, not its key; the caller builds the key from the name it read).
local function is_slot_key(key, field)
  return field ~= false and string.sub(key, -(#field + 6)) == ':slot:' .. field
end

-- A client reference's entry: lease id, request fingerprint, expiry ms and fencing
-- token, or nil when there is none. It is one STRING "<lease id> <fp> <expires_ms>
-- <fence>" (one SET ... PXAT writes it with its TTL); an entry written before that
-- layout is a HASH of the same four fields, still read here (GET fails on it).
local function read_ref(key)
  local value = redis.pcall('GET', key)
  if not value then
    return nil
  end
  if type(value) == 'table' then
    local old = redis.call('HMGET', key, 'lease', 'fp', 'expires_ms', 'fence')
    if not old[1] then
      return nil
    end
    return old[1], old[2], tonumber(old[3]), tonumber(old[4])
  end
  local lease, fp, expires, fence = string.match(value, '^(%S+) (%S+) (%d+) (%d+)$')
  return lease, fp, tonumber(expires), tonumber(fence)
end

-- Write a client reference's entry (see read_ref), expiring with its lease: expires
-- and fence as text (int_text).
local function write_ref(key, lease, fp, expires, fence)
  redis.call('SET', key, lease .. ' ' .. fp .. ' ' .. expires .. ' ' .. fence, 'PXAT', expires)
end
