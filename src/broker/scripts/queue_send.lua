-- @include "prologue"
-- @include "access"
-- @include "queue_common"
-- Sends a batch of messages, all or none. ARGV[7] the number of messages, then 7 arguments per
-- message: body, attributes JSON ('' for none), delay in s ('' for the queue's default),
-- TTL in s ('' for the retention), de-duplication id ('' for none), the new id (made by the
-- caller), its size in bytes. A de-duplication id seen within the window is not stored again:
-- the original id is returned, marked duplicate.
require_right('send')
local cfg = qcfg()
local n = tonumber(ARGV[7]) or 0
if n < 1 or #ARGV ~= 7 + n * 7 then fail('invalid', 'malformed send arguments') end

local results, fresh, in_batch = {}, {}, {}
for i = 1, n do
  local b = 8 + (i - 1) * 7
  local m = {
    body = ARGV[b], attrs = ARGV[b + 1], delay = ARGV[b + 2], ttl = ARGV[b + 3],
    dedup = ARGV[b + 4], id = ARGV[b + 5], size = tonumber(ARGV[b + 6]),
  }
  if m.size > cfg.maxb then
    fail('too_large', 'message ' .. i .. ' has ' .. m.size .. ' bytes; queue \'' .. ENTITY_NAME
      .. '\' accepts at most ' .. cfg.maxb)
  end
  local original
  if m.dedup ~= '' and cfg.ddw > 0 then
    original = in_batch[m.dedup]
    if not original then
      local window_end = tonumber(redis.call('ZSCORE', DDX, m.dedup) or '0')
      if window_end > NOW then original = redis.call('HGET', DD, m.dedup) end
    end
  end
  if original then
    results[i] = { original, true }
  else
    results[i] = { m.id, false }
    fresh[#fresh + 1] = m
    if m.dedup ~= '' and cfg.ddw > 0 then in_batch[m.dedup] = m.id end
  end
end
if #fresh == 0 then return unchanged(results) end

-- Max length: messages held (dead letters aside) plus the new ones.
local held = redis.call('HLEN', MSGS) - redis.call('LLEN', DEAD)
local over = held + #fresh - cfg.maxlen
if over > 0 then
  if cfg.ovf ~= 'dropHead' then
    fail('queue_full', "queue '" .. ENTITY_NAME .. "' holds " .. held .. ' of at most ' .. cfg.maxlen
      .. ' messages; ' .. #fresh .. ' more refused')
  end
  if #fresh > cfg.maxlen or redis.call('LLEN', READY) < over then
    fail('queue_full', "queue '" .. ENTITY_NAME .. "' is full and has too few ready messages to drop")
  end
end

local seq = begin_change()
if over > 0 then
  for _ = 1, over do forget(redis.call('LPOP', READY)) end
  count('n_drop', over)
end
-- Forget de-duplication ids whose window has ended (a bounded number per send).
local ended = redis.call('ZRANGEBYSCORE', DDX, '-inf', NOW, 'LIMIT', 0, 100)
if #ended > 0 then
  redis.call('ZREM', DDX, unpack(ended))
  redis.call('HDEL', DD, unpack(ended))
end
local to_ready = {}
for _, m in ipairs(fresh) do
  local ttl = cfg.ret
  if m.ttl ~= '' then ttl = math.min(tonumber(m.ttl), cfg.ret) end
  redis.call('HSET', MSGS, m.id, encode_message(NOW + ttl * 1000, m.attrs, m.body))
  local delay = cfg.delay
  if m.delay ~= '' then delay = tonumber(m.delay) end
  if delay > 0 then
    redis.call('ZADD', DELAYED, NOW + delay * 1000, m.id)
  else
    to_ready[#to_ready + 1] = m.id
  end
  if m.dedup ~= '' and cfg.ddw > 0 then
    redis.call('HSET', DD, m.dedup, m.id)
    redis.call('ZADD', DDX, NOW + cfg.ddw * 1000, m.dedup)
  end
end
if #to_ready > 0 then redis.call('RPUSH', READY, unpack(to_ready)) end
count('n_sent', #fresh)
return done(seq, results)
