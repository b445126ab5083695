-- @include "prologue"
-- @include "access"
-- @include "topic_common"
-- Moves up to ARGV[7] dead letters of subscription ARGV[6], oldest first, back for redelivery
-- with their delivery count reset (its creator, the topic owner or an admin). A dead letter whose
-- message retention has taken from the log is dropped (counted as expired); one the position
-- will deliver again anyway (after a seek back), or that is already in flight or pending, is
-- simply removed.
require_topic()
local cfg = require_sub()
require_sub_manager(cfg, 'redrive its dead letters')
local max = tonumber(ARGV[7]) or 0
if max < 1 then fail('invalid', 'max must be at least 1') end
local k = this_sub()
if redis.call('LLEN', k.dead) == 0 then
  return unchanged( { moved = 0, expired = 0, remaining = 0 })
end

local t = topic_state()
local keep_from = retained_first(t)
local position = tonumber(redis.call('HGET', k.state, 'position'))

local seq = begin_change()
local moved, expired = 0, 0
for _ = 1, max do
  local raw = redis.call('LPOP', k.dead)
  if not raw then break end
  local o = cjson.decode(raw).offset
  local m = int(o)
  if o < keep_from then
    expired = expired + 1
  else
    moved = moved + 1
    if o < position and not redis.call('ZSCORE', k.inflight, m)
      and not redis.call('ZSCORE', k.redeliver, m) then
      redis.call('HDEL', k.dc, m)
      redis.call('ZADD', k.redeliver, m, m)
    end
  end
end
return done(seq, { moved = moved, expired = expired, remaining = redis.call('LLEN', k.dead) })
