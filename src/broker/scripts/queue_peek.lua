-- @include "prologue"
-- @include "access"
-- @include "queue_common"
-- Read-only: lists messages of one state without consuming them. ARGV[7] the state ('ready',
-- 'delayed', 'inflight' or 'dead'), ARGV[8] offset, ARGV[9] limit. Each entry: id, stored
-- message, delivery count, and the time it becomes visible (delayed) or its deadline (inflight).
require_right('receive')
local state = ARGV[7]
local offset = tonumber(ARGV[8]) or 0
local limit = tonumber(ARGV[9]) or 10
local last = offset + limit - 1
local ids, scores = {}, {}
if state == 'ready' or state == 'dead' then
  ids = redis.call('LRANGE', state == 'ready' and READY or DEAD, offset, last)
elseif state == 'delayed' or state == 'inflight' then
  local r = redis.call('ZRANGE', state == 'delayed' and DELAYED or INFLIGHT, offset, last, 'WITHSCORES')
  for i = 1, #r, 2 do
    ids[#ids + 1] = r[i]
    scores[#ids] = tonumber(r[i + 1])
  end
else
  fail('invalid', 'unknown state ' .. tostring(state))
end
local out = {}
for i, id in ipairs(ids) do
  local raw = redis.call('HGET', MSGS, id)
  if raw then
    out[#out + 1] = { id, raw, tonumber(redis.call('HGET', DC, id) or '0'), scores[i] or false }
  end
end
return done(0, { m = out })
