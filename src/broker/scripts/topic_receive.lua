-- @include "prologue"
-- @include "access"
-- @include "topic_common"
-- Delivers up to ARGV[7] messages of subscription ARGV[6] (receive right). ARGV[8] visibility
-- timeout in seconds ('' for the subscription's), ARGV[9..] one receipt token per message that
-- may be delivered. First lazy maintenance (timed-out deliveries back to redelivery or to the
-- dead list, retention applied to the log, the position moved past what retention took), then
-- pending redeliveries, lowest offset first, then new messages from the position on.
-- Returns the deliveries and the earliest in-flight deadline (when to look again).
require_right('receive')
local cfg = require_sub()
local max = tonumber(ARGV[7])
local TOKENS = 9
if not max or max < 1 or #ARGV < TOKENS - 1 + max then fail('invalid', 'malformed receive') end
local vis_ms = (tonumber(ARGV[8]) or cfg.visibilityTimeoutSeconds) * 1000

local k = this_sub()
local t = topic_state()
local keep_from = retained_first(t)
local st = redis.call('HMGET', k.state, 'position', 'skipped')
local position = tonumber(st[1])
local work = keep_from > t.first or position < keep_from or needs_maintenance(k, keep_from)
  or redis.call('ZCARD', k.redeliver) > 0 or math.max(position, keep_from) < t.next
if not work then return done(0, { messages = {}, wakeAt = next_deadline(k) }) end

local seq = begin_change()
local lost = expire_deliveries(k, cfg, keep_from)
trim_to(t, keep_from)
if position < keep_from then
  lost = lost + keep_from - position
  position = keep_from
end

local out = {}
local deadline = NOW + vis_ms
local function deliver(offset, e)
  local m = int(offset)
  local token = ARGV[TOKENS + #out]
  local dc = redis.call('HINCRBY', k.dc, m, 1)
  redis.call('ZADD', k.inflight, int(deadline), m)
  redis.call('HSET', k.rc, m, token)
  local view = message_view(offset, e)
  view.token = token
  view.deliveryCount = dc
  view.visibleAt = deadline
  out[#out + 1] = view
end

for _, m in ipairs(redis.call('ZRANGE', k.redeliver, 0, max - 1)) do
  redis.call('ZREM', k.redeliver, m)
  local e = read_entry(tonumber(m))
  if e then
    deliver(tonumber(m), e)
  else
    redis.call('HDEL', k.dc, m)
    lost = lost + 1
  end
end
if #out < max and position < t.next then
  for _, r in ipairs(redis.call('XRANGE', LOG, entry_id(position), '+', 'COUNT', max - #out)) do
    local offset = tonumber(string.match(r[1], '^(%d+)'))
    deliver(offset, entry_fields(r[2]))
    position = offset + 1
  end
end
redis.call('HSET', k.state, 'position', int(position), 'skipped', int(tonumber(st[2]) + lost))
return done(seq, { messages = out, wakeAt = next_deadline(k) })
