-- Shared by the queue scripts (after "prologue" and "access"). KEYS follow scriptKeys() in
-- store.ts: meta, registry, ready, delayed, inflight, msgs, dc, rc, dead, dd, ddx.
local REGISTRY = KEYS[2]
local READY = KEYS[3]
local DELAYED = KEYS[4]
local INFLIGHT = KEYS[5]
local MSGS = KEYS[6]
local DC = KEYS[7]
local RC = KEYS[8]
local DEAD = KEYS[9]
local DD = KEYS[10]
local DDX = KEYS[11]

-- Most items one maintenance pass moves per category, so one script call stays short.
local MAINTENANCE_LIMIT = 1000

-- Configuration fields kept in the meta hash, in the order the TypeScript side passes them:
-- visibility timeout (s), max deliveries, retention (s), max length, overflow policy,
-- default delay (s), max message bytes, de-duplication window (s), restricted ('1'/'0'),
-- senders and receivers (JSON arrays of usernames).
local CONFIG_FIELDS = { 'vis', 'maxd', 'ret', 'maxlen', 'ovf', 'delay', 'maxb', 'ddw',
  'restricted', 'senders', 'receivers' }

-- Counters kept in the meta hash (totals since creation).
local COUNTERS = { 'n_sent', 'n_recv', 'n_ack', 'n_dead', 'n_exp', 'n_drop', 'n_purge' }

local function count(counter, by)
  if by ~= 0 then redis.call('HINCRBY', META, counter, by) end
end

-- The numeric configuration as a table of numbers (and the overflow policy).
local function qcfg()
  return shared('qcfg', function()
    local v = redis.call('HMGET', META, 'vis', 'maxd', 'ret', 'maxlen', 'ovf', 'delay', 'maxb', 'ddw')
    return {
      vis = tonumber(v[1]), maxd = tonumber(v[2]), ret = tonumber(v[3]), maxlen = tonumber(v[4]),
      ovf = v[5], delay = tonumber(v[6]), maxb = tonumber(v[7]), ddw = tonumber(v[8]),
    }
  end)
end

-- Everything the API shows about a queue: owner, creation time, configuration, counters.
local function queue_view()
  local fields = { 'owner', 'createdAt' }
  for _, f in ipairs(CONFIG_FIELDS) do fields[#fields + 1] = f end
  for _, f in ipairs(COUNTERS) do fields[#fields + 1] = f end
  local v = redis.call('HMGET', META, unpack(fields))
  local out = {}
  for i, f in ipairs(fields) do out[f] = v[i] or '' end
  return out
end

-- A stored message is "<expiresAt>,<enqueuedAt>,<attributes length>|<attributes JSON><body>":
-- no JSON escaping of the body, and the expiry readable without decoding anything.
local function encode_message(expires_at, attrs, body)
  return string.format('%d,%d,%d|', expires_at, NOW, #attrs) .. attrs .. body
end

local function expires_at(raw)
  return tonumber(string.match(raw, '^(%d+),'))
end

local function enqueued_at(raw)
  return tonumber(string.match(raw, '^%d+,(%d+),'))
end

-- Forgets messages entirely (their ids must already be out of every list and zset).
local function forget_all(ids)
  if #ids == 0 then return end
  redis.call('HDEL', MSGS, unpack(ids))
  redis.call('HDEL', DC, unpack(ids))
  redis.call('HDEL', RC, unpack(ids))
end

local function forget(id)
  forget_all({ id })
end

-- Validation of a send of n new messages (call before begin_change): the queue holds at most
-- maxlen messages, dead letters aside. Over it, 'reject' refuses (`refused` ends the detail)
-- and 'dropHead' needs enough ready messages to drop. Returns how many enqueue() drops.
local function room_for(cfg, n, refused)
  local held = redis.call('HLEN', MSGS) - redis.call('LLEN', DEAD)
  local over = held + n - cfg.maxlen
  if over <= 0 then return 0 end
  if cfg.ovf ~= 'dropHead' then
    fail('queue_full', "queue '" .. ENTITY_NAME .. "' holds " .. held .. ' of at most ' .. cfg.maxlen
      .. ' messages; ' .. refused)
  end
  if n > cfg.maxlen or redis.call('LLEN', READY) < over then
    fail('queue_full', "queue '" .. ENTITY_NAME .. "' is full and has too few ready messages to drop")
  end
  return over
end

-- Stores new messages (after begin_change): first drops `drop` ready messages (room_for's
-- answer) and forgets de-duplication ids whose window has ended (a bounded number per call).
-- Each message is { id, body, attrs, expires_at (ms), delay (s), dedup ('' for none) }: it
-- waits in delayed, or joins the back of ready in the order given, and its de-duplication id
-- is remembered for the queue's window.
local function enqueue(cfg, drop, msgs)
  if drop > 0 then
    for _ = 1, drop do forget(redis.call('LPOP', READY)) end
    count('n_drop', drop)
  end
  -- Once per group: its calls share NOW, so a later call would find none ended.
  if not (GROUP and GROUP.swept) then
    local ended = redis.call('ZRANGEBYSCORE', DDX, '-inf', NOW, 'LIMIT', 0, 100)
    if #ended > 0 then
      redis.call('ZREM', DDX, unpack(ended))
      redis.call('HDEL', DD, unpack(ended))
    end
    if GROUP and #ended < 100 then GROUP.swept = true end
  end
  local to_ready = {}
  for _, m in ipairs(msgs) do
    redis.call('HSET', MSGS, m.id, encode_message(m.expires_at, m.attrs, m.body))
    if m.delay > 0 then
      redis.call('ZADD', DELAYED, NOW + m.delay * 1000, m.id)
    else
      to_ready[#to_ready + 1] = m.id
    end
    if m.dedup ~= '' and cfg.ddw > 0 then
      redis.call('HSET', DD, m.dedup, m.id)
      redis.call('ZADD', DDX, NOW + cfg.ddw * 1000, m.dedup)
    end
  end
  if #to_ready > 0 then redis.call('RPUSH', READY, unpack(to_ready)) end
  count('n_sent', #msgs)
end

-- Pushes ids to the front of ready so that they come out in the order given.
local function push_front(ids)
  for i = #ids, 1, -1 do redis.call('LPUSH', READY, ids[i]) end
end

-- A delivery attempt ended without an ack (visibility timeout or nack): the message expires,
-- goes to the dead letters once it has had max deliveries, or is returned. Returns 'expired',
-- 'dead' or 'back'.
local function end_attempt(id, cfg)
  redis.call('HDEL', RC, id)
  local raw = redis.call('HGET', MSGS, id)
  if not raw then
    forget(id)
    return 'gone'
  end
  if expires_at(raw) <= NOW then
    forget(id)
    count('n_exp', 1)
    return 'expired'
  end
  if tonumber(redis.call('HGET', DC, id) or '0') >= cfg.maxd then
    redis.call('RPUSH', DEAD, id)
    count('n_dead', 1)
    return 'dead'
  end
  return 'back'
end

-- Is any lazy maintenance due (an in-flight attempt timed out, a delayed message became due)?
local function maintenance_due()
  return #redis.call('ZRANGEBYSCORE', INFLIGHT, '-inf', NOW, 'LIMIT', 0, 1) > 0
    or #redis.call('ZRANGEBYSCORE', DELAYED, '-inf', NOW, 'LIMIT', 0, 1) > 0
end

-- Lazy maintenance at time NOW (call after begin_change): timed-out deliveries go back to the
-- front of ready in send order (or to the dead letters, or expire); due delayed messages join
-- the back of ready in due order. Returns how many messages became ready.
local function maintain(cfg)
  local readied = 0
  local timed_out = redis.call('ZRANGEBYSCORE', INFLIGHT, '-inf', NOW, 'LIMIT', 0, MAINTENANCE_LIMIT)
  if #timed_out > 0 then
    redis.call('ZREM', INFLIGHT, unpack(timed_out))
    table.sort(timed_out) -- ids are time-ordered: send order
    local back = {}
    for _, id in ipairs(timed_out) do
      if end_attempt(id, cfg) == 'back' then back[#back + 1] = id end
    end
    push_front(back)
    readied = readied + #back
  end
  local due = redis.call('ZRANGEBYSCORE', DELAYED, '-inf', NOW, 'LIMIT', 0, MAINTENANCE_LIMIT)
  if #due > 0 then
    redis.call('ZREM', DELAYED, unpack(due))
    for _, id in ipairs(due) do
      local raw = redis.call('HGET', MSGS, id)
      if raw and expires_at(raw) > NOW then
        redis.call('RPUSH', READY, id)
        readied = readied + 1
      else
        forget(id)
        if raw then count('n_exp', 1) end
      end
    end
  end
  return readied
end

-- The earliest time (ms) something not yet deliverable becomes deliverable: a delayed message
-- comes due or an in-flight attempt times out. false when there is nothing of the kind.
local function next_due()
  local d = redis.call('ZRANGE', DELAYED, 0, 0, 'WITHSCORES')
  local f = redis.call('ZRANGE', INFLIGHT, 0, 0, 'WITHSCORES')
  local a, b = tonumber(d[2]), tonumber(f[2])
  if a and b then return math.min(a, b) end
  return a or b or false
end

-- Parses ARGV[from..] as (message id, token) pairs.
local function receipt_pairs(from)
  local out = {}
  for i = from, #ARGV, 2 do out[#out + 1] = { ARGV[i], ARGV[i + 1] or '' } end
  return out
end

-- Receipts valid now, each at most once; results[i] is 'ok' or 'stale_receipt'. A receipt is
-- valid when it is the current attempt of an in-flight message, before its deadline.
local function check_receipts(list)
  local results, valid, taken = {}, {}, {}
  if #list == 0 then return results, valid end
  local ids = {}
  for i, r in ipairs(list) do ids[i] = r[1] end
  -- Two reads for the whole list (missing members and fields come back false).
  local deadlines = redis.call('ZMSCORE', INFLIGHT, unpack(ids))
  local tokens = redis.call('HMGET', RC, unpack(ids))
  for i, r in ipairs(list) do
    if not taken[r[1]] and tonumber(deadlines[i] or '0') > NOW and tokens[i] == r[2] then
      taken[r[1]] = true
      valid[#valid + 1] = r[1]
      results[i] = 'ok'
    else
      results[i] = 'stale_receipt'
    end
  end
  return results, valid
end
