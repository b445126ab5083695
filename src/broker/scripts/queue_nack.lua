-- @include "prologue"
-- @include "access"
-- @include "queue_common"
-- Releases deliveries without acknowledging them: ARGV[7] delay in s (0: to the front of ready
-- now), ARGV[8..] (message id, receipt token) pairs. The attempt counts toward max deliveries:
-- a message that has had them goes to the dead letters instead.
require_right('receive')
local cfg = qcfg()
local delay = tonumber(ARGV[7]) or 0
local results, valid = check_receipts(receipt_pairs(8))
if #valid == 0 then return unchanged(results) end

local seq = begin_change()
redis.call('ZREM', INFLIGHT, unpack(valid))
table.sort(valid)
local back = {}
for i, id in ipairs(valid) do
  local outcome = end_attempt(id, cfg)
  if outcome == 'back' then
    if delay > 0 then
      redis.call('ZADD', DELAYED, NOW + delay * 1000, id)
    else
      back[#back + 1] = id
    end
  end
end
push_front(back)
return done(seq, results)
