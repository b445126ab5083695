-- @include "prologue"
-- @include "queue_common"
-- Run by a new owner before it serves the queue after a failover: deliveries in flight get back
-- the time the queue could not be reached, so their receipts still work once it is served again
-- (a consumer that could not ack during the failover acks after it) instead of every one of them
-- coming back as a duplicate. The queue was unreachable from its last change, or from ARGV[7]
-- (ms) if that is later; each deadline at or after that moves on by the time since (to NOW).
if redis.call('EXISTS', META) == 0 then return done(0, { extended = 0 }) end
local from = math.max(tonumber(redis.call('HGET', META, 'changed') or '0'), tonumber(ARGV[7]))
local shift = NOW - from
local due = redis.call('ZRANGEBYSCORE', INFLIGHT, from, '+inf', 'WITHSCORES')
if shift <= 0 or #due == 0 then return unchanged({ extended = 0 }) end
local seq = begin_change()
for i = 1, #due, 2 do
  redis.call('ZADD', INFLIGHT, tonumber(due[i + 1]) + shift, due[i])
end
return done(seq, { extended = #due / 2 })
