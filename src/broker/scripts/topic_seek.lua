-- @include "prologue"
-- @include "access"
-- @include "topic_common"
-- Moves the position of subscription ARGV[6] (its creator, the topic owner or an admin: like a
-- delete or a redrive, a seek changes what every consumer of the subscription gets, so the
-- receive right alone is not enough). ARGV[7] 'offset' or 'time',
-- ARGV[8] the offset (clamped to the retained range [firstOffset, nextOffset]) or a time in ms
-- (the first message published at or after it; nextOffset when none). Deliveries in flight and
-- pending redeliveries of the subscription are dropped: their receipts turn stale, and what the
-- new position covers is delivered again from the log. Dead letters stay.
require_topic()
local cfg = require_sub()
require_sub_manager(cfg, 'seek it')
local mode, value = ARGV[7], tonumber(ARGV[8])
if (mode ~= 'offset' and mode ~= 'time') or not value then fail('invalid', 'malformed seek') end

local k = this_sub()
local t = topic_state()
local keep_from = retained_first(t)
local target
if mode == 'offset' then
  target = math.min(math.max(value, keep_from), t.next)
else
  target = offset_at_time(t, keep_from, value)
end
local position = tonumber(redis.call('HGET', k.state, 'position'))
local dropped = redis.call('ZCARD', k.inflight) + redis.call('ZCARD', k.redeliver)
if target == position and dropped == 0 and redis.call('HLEN', k.dc) == 0 then
  return unchanged( { position = target, dropped = 0 })
end

local seq = begin_change()
redis.call('DEL', k.inflight, k.redeliver, k.dc, k.rc)
redis.call('HSET', k.state, 'position', int(target))
return done(seq, { position = target, dropped = dropped })
