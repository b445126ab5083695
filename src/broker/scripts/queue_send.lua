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
    body = ARGV[b], attrs = ARGV[b + 1], delay_arg = ARGV[b + 2], ttl = ARGV[b + 3],
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
    local ttl = cfg.ret
    if m.ttl ~= '' then ttl = math.min(tonumber(m.ttl), cfg.ret) end
    m.expires_at = NOW + ttl * 1000
    m.delay = cfg.delay
    if m.delay_arg ~= '' then m.delay = tonumber(m.delay_arg) end
    fresh[#fresh + 1] = m
    if m.dedup ~= '' and cfg.ddw > 0 then in_batch[m.dedup] = m.id end
  end
end
-- Only duplicates: nothing to store, but the answer says the originals are stored. It still
-- takes a sequence number, so that it is acknowledged only once a replica holds everything up
-- to here, the originals included (a replica that missed them resyncs first).
if #fresh == 0 then return done(begin_change(), results) end
local drop = room_for(cfg, #fresh, #fresh .. ' more refused')

local seq = begin_change()
enqueue(cfg, drop, fresh)
return done(seq, results)
