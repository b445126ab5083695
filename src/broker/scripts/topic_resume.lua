-- @include "prologue"
-- @include "topic_common"
-- queue_resume.lua for one subscription (ARGV[6]): deliveries in flight whose deadline is at or
-- after the time the topic became unreachable (its last change, or ARGV[7] if later) move on by
-- the time since. Delayed nacks (in flight without a receipt) keep their time.
if redis.call('EXISTS', META) == 0 or redis.call('HEXISTS', SUBS, ARGV[6]) == 0 then
  return done(0, { extended = 0 })
end
local k = this_sub()
local from = math.max(tonumber(redis.call('HGET', META, 'changed') or '0'), tonumber(ARGV[7]))
local shift = NOW - from
local due = redis.call('ZRANGEBYSCORE', k.inflight, from, '+inf', 'WITHSCORES')
local moved = {}
for i = 1, #due, 2 do
  if redis.call('HEXISTS', k.rc, due[i]) == 1 then
    moved[#moved + 1] = { due[i], tonumber(due[i + 1]) + shift }
  end
end
if shift <= 0 or #moved == 0 then
  return unchanged({ extended = 0 })
end
local seq = begin_change()
for _, m in ipairs(moved) do redis.call('ZADD', k.inflight, m[2], m[1]) end
return done(seq, { extended = #moved })
