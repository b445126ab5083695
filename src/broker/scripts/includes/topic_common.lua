-- Shared by the topic scripts (after "prologue" and "access").
-- KEYS: [1] meta, [2] registry, [3] log, [4] subs, then the keys of the subscription named by
-- ARGV[6] ('' for topic-level scripts): [5] state, [6] redeliver, [7] inflight, [8] dc, [9] rc,
-- [10] dead.
--
-- The model:
-- * meta: owner, createdAt, the configuration (CONFIG_FIELDS), and the log's bookkeeping:
--   'first' (lowest retained offset), 'next' (offset of the next message), 'btotal' (bytes of
--   every message ever published), 'btrim' (bytes of the messages before 'first'), 'lastt'
--   (publish time of the last message; publish times never go backwards).
-- * log: a stream whose entry id is '<offset>-1' (offsets start at 0 and have no gaps); fields
--   i (message id), b (body), a (attributes JSON, absent when none), k (key, absent when none),
--   p (publisher), t (publishedAt ms), c (cumulative bytes up to and including this message).
-- * subs: subscription name -> its configuration as JSON (encode_sub).
-- * per subscription: state {position, skipped}; redeliver zset offset -> offset (released
--   deliveries, served lowest offset first); inflight zset offset -> deadline (delivered, or
--   nacked with a delay: those have no receipt in rc); dc offset -> delivery count; rc offset ->
--   receipt token of the current attempt; dead list of JSON copies of dead-lettered messages.
-- Invariant: every offset in inflight or redeliver is below the subscription's position.
local REGISTRY = KEYS[2]
local LOG = KEYS[3]
local SUBS = KEYS[4]
local SUB = ARGV[6]
local BASE = string.sub(META, 1, -6) -- META without ':meta'

-- Configuration fields in meta, in the order create receives them.
local CONFIG_FIELDS = {
  'ret', 'retn', 'retb', 'maxb', 'vis', 'maxd', 'restricted', 'senders', 'receivers',
}
-- Most timed-out deliveries one receive returns to redelivery (the rest in the next call).
local EXPIRE_BATCH = 1000

local function int(n)
  return string.format('%d', n)
end

local function entry_id(offset)
  return string.format('%d-1', offset)
end

local function topic_label()
  return "topic '" .. ENTITY_NAME .. "'"
end

local function sub_label(name)
  return "subscription '" .. name .. "' of " .. topic_label()
end

-- Keys of any subscription of this topic: the names keys.ts builds.
local function sub_keys(name)
  local s = BASE .. ':s:' .. name
  return {
    state = s .. ':state',
    redeliver = s .. ':redeliver',
    inflight = s .. ':inflight',
    dc = s .. ':dc',
    rc = s .. ':rc',
    dead = s .. ':dead',
  }
end

-- The keys of the subscription this script was called for (as passed in KEYS).
local function this_sub()
  return {
    state = KEYS[5], redeliver = KEYS[6], inflight = KEYS[7], dc = KEYS[8], rc = KEYS[9],
    dead = KEYS[10],
  }
end

local function require_topic()
  if not entity_exists() then fail('not_found', topic_label() .. ' does not exist') end
end

-- The configuration of a subscription, or nil.
local function sub_config(name)
  local raw = redis.call('HGET', SUBS, name)
  if not raw then return nil end
  return cjson.decode(raw)
end

local function require_sub()
  local cfg = sub_config(SUB)
  if not cfg then fail('not_found', sub_label(SUB) .. ' does not exist') end
  return cfg
end

-- Deleting a subscription or redriving its dead letters: its creator, the topic owner, an admin.
local function require_sub_manager(cfg, what)
  if IS_ADMIN or CALLER == cfg.creator or CALLER == redis.call('HGET', META, 'owner') then return end
  fail('forbidden', "missing the 'manage' right on " .. sub_label(SUB)
    .. ': only its creator, the topic owner or an admin may ' .. what)
end

-- A subscription's configuration as stored (fixed field order: the encoding is deterministic).
local function encode_sub(start, start_time, vis, maxd, creator, created_at)
  return '{"start":' .. cjson.encode(start)
    .. ',"startTime":' .. (start_time and int(start_time) or 'null')
    .. ',"visibilityTimeoutSeconds":' .. int(vis)
    .. ',"maxDeliveries":' .. int(maxd)
    .. ',"creator":' .. cjson.encode(creator)
    .. ',"createdAt":' .. int(created_at) .. '}'
end

-- The log's bookkeeping and retention settings.
local function topic_state()
  local m = redis.call('HMGET', META, 'first', 'next', 'btotal', 'btrim', 'ret', 'retn', 'retb')
  return {
    first = tonumber(m[1]),
    next = tonumber(m[2]),
    btotal = tonumber(m[3]),
    btrim = tonumber(m[4]),
    ret_ms = tonumber(m[5]) * 1000,
    retn = tonumber(m[6]),
    retb = tonumber(m[7]),
  }
end

local function entry_fields(flat)
  local e = {}
  for i = 1, #flat, 2 do e[flat[i]] = flat[i + 1] end
  return e
end

-- The fields of the message at an offset, or nil when the log no longer holds it.
local function read_entry(offset)
  local r = redis.call('XRANGE', LOG, entry_id(offset), entry_id(offset))
  if #r == 0 then return nil end
  return entry_fields(r[1][2])
end

-- Bytes of every message published before `offset` (t.first <= offset <= t.next).
local function bytes_before(t, offset)
  if offset <= t.first then return t.btrim end
  return tonumber(read_entry(offset - 1).c)
end

-- The lowest offset in [lo, hi] where `pred` holds; pred is monotone and holds at hi.
-- Binary search: log2(hi - lo) reads of single entries.
local function lowest(lo, hi, pred)
  if lo >= hi or pred(lo) then return lo end
  lo = lo + 1
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if pred(mid) then hi = mid else lo = mid + 1 end
  end
  return hi
end

-- The first offset retention keeps at NOW: by count, by age (publish times never decrease) and
-- by bytes, whichever keeps least. Never below t.first; t.next when nothing is kept.
local function retained_first(t)
  local f = t.first
  if t.retn > 0 and t.next - t.retn > f then f = t.next - t.retn end
  if t.ret_ms > 0 then
    local too_old = NOW - t.ret_ms -- kept while publishedAt > NOW - retention
    f = lowest(f, t.next, function(o)
      return o >= t.next or tonumber(read_entry(o).t) > too_old
    end)
  end
  if t.retb > 0 then
    f = lowest(f, t.next, function(o)
      return t.btotal - bytes_before(t, o) <= t.retb
    end)
  end
  return f
end

-- The first offset published at or after `ms` (t.next when none), searching from `from`.
local function offset_at_time(t, from, ms)
  return lowest(from, t.next, function(o)
    return o >= t.next or tonumber(read_entry(o).t) >= ms
  end)
end

-- Drops the messages before `f` from the log (a write: after begin_change()).
local function trim_to(t, f)
  if f <= t.first then return end
  local btrim = bytes_before(t, f)
  redis.call('XTRIM', LOG, 'MINID', entry_id(f))
  redis.call('HSET', META, 'first', int(f), 'btrim', int(btrim))
  t.first, t.btrim = f, btrim
end

-- A message as the scripts return it (TypeScript turns it into the API's shape).
local function message_view(offset, e)
  return {
    offset = offset,
    id = e.i,
    body = e.b,
    attributes = e.a,
    key = e.k,
    publisher = e.p,
    publishedAt = tonumber(e.t),
  }
end

-- Copies a message into a subscription's dead list, since retention may trim the log later.
-- Returns false when the log no longer holds it (lost to retention).
local function dead_letter(k, offset, dc)
  redis.call('HDEL', k.dc, int(offset))
  local e = read_entry(offset)
  if not e then return false end
  redis.call('RPUSH', k.dead, '{"offset":' .. int(offset)
    .. ',"id":' .. cjson.encode(e.i)
    .. ',"body":' .. cjson.encode(e.b)
    .. ',"attributes":' .. (e.a or '{}')
    .. ',"key":' .. (e.k and cjson.encode(e.k) or 'null')
    .. ',"publisher":' .. cjson.encode(e.p)
    .. ',"publishedAt":' .. e.t
    .. ',"deliveryCount":' .. int(dc)
    .. ',"deadLetteredAt":' .. int(NOW) .. '}')
  return true
end

-- Whether lazy maintenance has anything to do for a subscription (read-only).
local function needs_maintenance(k, keep_from)
  return #redis.call('ZRANGEBYSCORE', k.inflight, '-inf', int(NOW), 'LIMIT', 0, 1) > 0
    or #redis.call('ZRANGEBYSCORE', k.redeliver, '-inf', '(' .. int(keep_from), 'LIMIT', 0, 1) > 0
end

-- Lazy maintenance of a subscription (a write: after begin_change()). Deliveries whose deadline
-- passed go back for redelivery, or to the dead list once they reached maxDeliveries; pending
-- redeliveries retention took are dropped. Returns how many messages retention took.
local function expire_deliveries(k, cfg, keep_from)
  local lost = 0
  local expired = redis.call('ZRANGEBYSCORE', k.inflight, '-inf', int(NOW), 'LIMIT', 0,
    EXPIRE_BATCH)
  for _, m in ipairs(expired) do
    local o = tonumber(m)
    redis.call('ZREM', k.inflight, m)
    redis.call('HDEL', k.rc, m)
    local dc = tonumber(redis.call('HGET', k.dc, m) or '0')
    if o < keep_from then
      redis.call('HDEL', k.dc, m)
      lost = lost + 1
    elseif dc >= cfg.maxDeliveries then
      if not dead_letter(k, o, dc) then lost = lost + 1 end
    else
      redis.call('ZADD', k.redeliver, m, m)
    end
  end
  local gone = redis.call('ZRANGEBYSCORE', k.redeliver, '-inf', '(' .. int(keep_from))
  if #gone > 0 then
    for _, m in ipairs(gone) do redis.call('HDEL', k.dc, m) end
    redis.call('ZREMRANGEBYSCORE', k.redeliver, '-inf', '(' .. int(keep_from))
    lost = lost + #gone
  end
  return lost
end

-- Deadline of the earliest in-flight entry (when something may become deliverable), or false.
local function next_deadline(k)
  local first = redis.call('ZRANGE', k.inflight, 0, 0, 'WITHSCORES')
  if #first == 0 then return false end
  return tonumber(first[2])
end

-- A subscription with its counts as of NOW: what lazy maintenance would make of the stored
-- state (read-only, so GET shows retention and timed-out deliveries without waiting for one).
local function sub_view(name, cfg, t, keep_from)
  local k = sub_keys(name)
  local st = redis.call('HMGET', k.state, 'position', 'skipped')
  local position = tonumber(st[1])
  local skipped = tonumber(st[2])
  local in_flight = redis.call('HLEN', k.rc)
  local pending = redis.call('ZCARD', k.redeliver) + redis.call('ZCARD', k.inflight) - in_flight
  local dead = redis.call('LLEN', k.dead)
  local below = redis.call('ZCOUNT', k.redeliver, '-inf', '(' .. int(keep_from))
  skipped = skipped + below
  pending = pending - below
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', k.inflight, '-inf', int(NOW))) do
    local o = tonumber(m)
    if redis.call('HEXISTS', k.rc, m) == 1 then in_flight = in_flight - 1 else pending = pending - 1 end
    if o < keep_from then
      skipped = skipped + 1
    elseif tonumber(redis.call('HGET', k.dc, m) or '0') >= cfg.maxDeliveries then
      dead = dead + 1
    else
      pending = pending + 1
    end
  end
  if position < keep_from then
    skipped = skipped + keep_from - position
    position = keep_from
  end
  return {
    name = name,
    creator = cfg.creator,
    createdAt = cfg.createdAt,
    start = cfg.start,
    startTime = cfg.startTime,
    visibilityTimeoutSeconds = cfg.visibilityTimeoutSeconds,
    maxDeliveries = cfg.maxDeliveries,
    position = position,
    lag = t.next - position,
    inFlight = in_flight,
    pendingRedelivery = pending,
    deadLettered = dead,
    skipped = skipped,
  }
end

-- The topic with its configuration (raw meta fields) and counts as of NOW (read-only).
local function topic_view()
  local t = topic_state()
  local keep_from = retained_first(t)
  local fields = { 'owner', 'createdAt' }
  for _, f in ipairs(CONFIG_FIELDS) do fields[#fields + 1] = f end
  local m = redis.call('HMGET', META, unpack(fields))
  local view = { owner = m[1], createdAt = tonumber(m[2]) }
  for i, f in ipairs(CONFIG_FIELDS) do view[f] = m[i + 2] end
  view.firstOffset = keep_from
  view.nextOffset = t.next
  view.messages = t.next - keep_from
  view.bytes = t.btotal - bytes_before(t, keep_from)
  view.subscriptions = redis.call('HLEN', SUBS)
  return view
end

-- (offset, token) pairs from ARGV[from..]: which are receipts of a current attempt. Returns the
-- per-receipt results ('ok' or 'stale', in order) and the distinct valid offsets (as strings).
-- An unparseable receipt arrives as offset '-1' and is stale.
local function check_receipts(k, from)
  local results, valid, seen = {}, {}, {}
  for i = from, #ARGV, 2 do
    local m, token = ARGV[i], ARGV[i + 1] or ''
    local ok
    if seen[m] ~= nil then
      ok = seen[m] == token
    else
      ok = token ~= '' and redis.call('HGET', k.rc, m) == token
      if ok then
        seen[m] = token
        valid[#valid + 1] = m
      end
    end
    results[#results + 1] = ok and 'ok' or 'stale'
  end
  return results, valid
end
