-- @include "prologue"
-- @include "access"
-- @include "queue_common"
-- Moves up to ARGV[7] dead letters, oldest first, to the back of ready with their delivery
-- count reset (owner or admin). Dead letters past their TTL are dropped on the way.
require_right('manage')
local max = tonumber(ARGV[7]) or 0
if max < 1 then fail('invalid', 'max must be at least 1') end
if redis.call('LLEN', DEAD) == 0 then
  return unchanged({ moved = 0, expired = 0, remaining = 0 })
end

local seq = begin_change()
local moved, expired = {}, 0
for _ = 1, max do
  local id = redis.call('LPOP', DEAD)
  if not id then break end
  local raw = redis.call('HGET', MSGS, id)
  if raw and expires_at(raw) > NOW then
    redis.call('HDEL', DC, id)
    moved[#moved + 1] = id
  else
    forget(id)
    if raw then expired = expired + 1 end
  end
end
for i = 1, #moved, 1000 do
  redis.call('RPUSH', READY, unpack(moved, i, math.min(i + 999, #moved)))
end
count('n_exp', expired)
return done(seq, { moved = #moved, expired = expired, remaining = redis.call('LLEN', DEAD) })
