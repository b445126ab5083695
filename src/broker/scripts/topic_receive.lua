-- @include "prologue"
-- @include "access"
-- @include "topic_common"
-- Delivers up to ARGV[7] messages of subscription ARGV[6] (receive right). ARGV[8] visibility
-- timeout in seconds ('' for the subscription's), ARGV[9..] one receipt token per message that
-- may be delivered. First lazy maintenance (timed-out deliveries back to redelivery or to the
-- dead list, retention applied to the log, the position moved past what retention took), then
-- pending redeliveries, lowest offset first, then new messages from the position on.
-- Returns the deliveries and the earliest in-flight deadline (when to look again).
-- Optional ARGV[9 + max], after the tokens: 'own' excludes the caller's own messages (the
-- compatibility API's rule that a subscriber never receives what it published): they are passed
-- over as if delivered and acknowledged at once (the position moves past them; pending
-- redeliveries of them are dropped), at most SKIP_LIMIT per call; the result then also carries
-- `more` (true when the limit stopped the scan before the end of the log: call again).
require_right('receive')
local cfg = require_sub()
local max = tonumber(ARGV[7])
local TOKENS = 9
if not max or max < 1 or #ARGV < TOKENS - 1 + max then fail('invalid', 'malformed receive') end
local vis_ms = (tonumber(ARGV[8]) or cfg.visibilityTimeoutSeconds) * 1000
local exclude = ARGV[TOKENS + max]
if exclude ~= nil and exclude ~= '' and exclude ~= 'own' then
  fail('invalid', 'malformed receive (exclude must be own)')
end
local EXCLUDE_OWN = exclude == 'own'
local SKIP_LIMIT = 1000

local k = this_sub()
local t = topic_state()
local keep_from = retained_first(t)
local st = redis.call('HMGET', k.state, 'position', 'skipped')
local position = tonumber(st[1])
local work = keep_from > t.first or position < keep_from or needs_maintenance(k, keep_from)
  or redis.call('ZCARD', k.redeliver) > 0 or math.max(position, keep_from) < t.next
local function result(out, more)
  local r = { messages = out, wakeAt = next_deadline(k) }
  if EXCLUDE_OWN then r.more = more end
  return r
end
if not work then return unchanged( result({}, false)) end

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

-- With EXCLUDE_OWN, the caller's own messages are passed over (counted against SKIP_LIMIT).
local passed = 0
local function own(e)
  return EXCLUDE_OWN and e.p == CALLER
end

if EXCLUDE_OWN then
  -- Bounded: each pass takes at least one entry out of redeliver, and stops at max or the limit.
  while #out < max and passed < SKIP_LIMIT do
    local ms = redis.call('ZRANGE', k.redeliver, 0, max - #out - 1)
    if #ms == 0 then break end
    for _, m in ipairs(ms) do
      redis.call('ZREM', k.redeliver, m)
      local e = read_entry(tonumber(m))
      if not e then
        redis.call('HDEL', k.dc, m)
        lost = lost + 1
      elseif own(e) then
        redis.call('HDEL', k.dc, m)
        passed = passed + 1
      else
        deliver(tonumber(m), e)
      end
    end
  end
else
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
end
while #out < max and position < t.next and passed < SKIP_LIMIT do
  local want = max - #out
  if EXCLUDE_OWN then want = math.min(SKIP_LIMIT - passed, math.max(want, 100)) end
  local entries = redis.call('XRANGE', LOG, entry_id(position), '+', 'COUNT', want)
  if #entries == 0 then break end
  for _, r in ipairs(entries) do
    if #out >= max then break end
    local offset = tonumber(string.match(r[1], '^(%d+)'))
    local e = entry_fields(r[2])
    if own(e) then
      passed = passed + 1
    else
      deliver(offset, e)
    end
    position = offset + 1
  end
  if not EXCLUDE_OWN then break end
end
redis.call('HSET', k.state, 'position', int(position), 'skipped', int(tonumber(st[2]) + lost))
local more = #out < max and passed >= SKIP_LIMIT
  and (position < t.next or redis.call('ZCARD', k.redeliver) > 0)
return done(seq, result(out, more))
