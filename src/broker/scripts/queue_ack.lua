-- @include "prologue"
-- @include "access"
-- @include "queue_common"
-- Acknowledges deliveries: ARGV[7..] (message id, receipt token) pairs. Only the current
-- attempt of an in-flight message, before its deadline, is acknowledged (the message is
-- deleted); any other receipt is answered 'stale_receipt' and changes nothing.
require_right('receive')
local results, valid = check_receipts(receipt_pairs(7))
if #valid == 0 then return unchanged(results) end

local seq = begin_change()
redis.call('ZREM', INFLIGHT, unpack(valid))
forget_all(valid)
count('n_ack', #valid)
return done(seq, results)
