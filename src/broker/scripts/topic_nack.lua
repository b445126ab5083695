-- @include "prologue"
-- @include "access"
-- @include "topic_common"
-- Releases deliveries of subscription ARGV[6]: ARGV[7] delay in seconds, ARGV[8..] (offset,
-- receipt token) pairs. A released message is delivered again (the attempt counts toward
-- maxDeliveries: one that reached it goes to the dead list now). Without a delay it joins the
-- pending redeliveries at once; with one it stays in flight, without a valid receipt, until the
-- delay ends.
require_right('receive')
local cfg = require_sub()
local delay_ms = (tonumber(ARGV[7]) or 0) * 1000
local k = this_sub()
local results, valid = check_receipts(k, 8)
if #valid == 0 then return unchanged( { results = results }) end

local seq = begin_change()
local lost = 0
for _, m in ipairs(valid) do
  redis.call('HDEL', k.rc, m)
  local dc = tonumber(redis.call('HGET', k.dc, m) or '0')
  if dc >= cfg.maxDeliveries then
    redis.call('ZREM', k.inflight, m)
    if not dead_letter(k, tonumber(m), dc) then lost = lost + 1 end
  elseif delay_ms > 0 then
    redis.call('ZADD', k.inflight, int(NOW + delay_ms), m)
  else
    redis.call('ZREM', k.inflight, m)
    redis.call('ZADD', k.redeliver, m, m)
  end
end
if lost > 0 then redis.call('HINCRBY', k.state, 'skipped', lost) end
return done(seq, { results = results })
