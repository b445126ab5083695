-- @include "prologue"
-- @include "access"
-- @include "topic_common"
-- Moves the deadline of current attempts of subscription ARGV[6] to now + ARGV[7] seconds
-- (0: the message may be delivered again at once). ARGV[8..]: (offset, receipt token) pairs.
require_right('receive')
require_sub()
local vis_ms = (tonumber(ARGV[7]) or 0) * 1000
local k = this_sub()
local results, valid = check_receipts(k, 8)
if #valid == 0 then return unchanged( { results = results }) end

local seq = begin_change()
for _, m in ipairs(valid) do
  redis.call('ZADD', k.inflight, 'XX', int(NOW + vis_ms), m)
end
return done(seq, { results = results })
