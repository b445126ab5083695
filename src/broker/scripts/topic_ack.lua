-- @include "prologue"
-- @include "access"
-- @include "topic_common"
-- Acknowledges deliveries of subscription ARGV[6]: ARGV[7..] (offset, receipt token) pairs.
-- Only the current attempt's receipt counts (also after its deadline, as long as the message was
-- not delivered again); any other receipt is answered 'stale' and changes nothing.
require_right('receive')
require_sub()
local k = this_sub()
local results, valid = check_receipts(k, 7)
if #valid == 0 then return unchanged( { results = results }) end

local seq = begin_change()
redis.call('ZREM', k.inflight, unpack(valid))
redis.call('HDEL', k.rc, unpack(valid))
redis.call('HDEL', k.dc, unpack(valid))
return done(seq, { results = results })
