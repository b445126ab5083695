-- @include "prologue"
-- @include "access"
-- @include "queue_common"
-- Sets the visibility deadline of current attempts to NOW + ARGV[7] s (0 ends the attempt at
-- once: the message is redelivered at the next receive). ARGV[8..]: (message id, receipt token)
-- pairs.
require_right('receive')
local vis = tonumber(ARGV[7]) or 0
local results, valid = check_receipts(receipt_pairs(8))
if #valid == 0 then return unchanged(results) end

local seq = begin_change()
for _, id in ipairs(valid) do redis.call('ZADD', INFLIGHT, 'XX', NOW + vis * 1000, id) end
return done(seq, results)
