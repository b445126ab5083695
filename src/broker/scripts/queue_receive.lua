-- @include "prologue"
-- @include "access"
-- @include "queue_common"
-- Delivers up to ARGV[7] messages with visibility ARGV[8] s ('' for the queue's default).
-- ARGV[9..]: one fresh receipt token per message that may be delivered (made by the caller).
-- First runs the lazy maintenance due at NOW; drops messages past their TTL on the way.
-- Returns the deliveries and, when there are none, the next time something comes due.
require_right('receive')
local cfg = qcfg()
local max = tonumber(ARGV[7]) or 0
local vis = cfg.vis
if ARGV[8] ~= '' then vis = tonumber(ARGV[8]) end
if max < 1 or #ARGV < 8 + max then fail('invalid', 'malformed receive arguments') end

if redis.call('LLEN', READY) == 0 and not maintenance_due() then
  return unchanged({ m = {}, next = next_due() })
end

local seq = begin_change()
maintain(cfg)
local out = {}
local deadline = NOW + vis * 1000
local expired = 0
-- Pop at most max deliveries plus a bounded number of expired messages.
for _ = 1, max + MAINTENANCE_LIMIT do
  if #out >= max then break end
  local id = redis.call('LPOP', READY)
  if not id then break end
  local raw = redis.call('HGET', MSGS, id)
  if not raw then
    forget(id)
  elseif expires_at(raw) <= NOW then
    forget(id)
    expired = expired + 1
  else
    local dc = redis.call('HINCRBY', DC, id, 1)
    local token = ARGV[8 + #out + 1]
    redis.call('HSET', RC, id, token)
    redis.call('ZADD', INFLIGHT, deadline, id)
    out[#out + 1] = { id, raw, dc, deadline, token }
  end
end
count('n_exp', expired)
count('n_recv', #out)
local next = false
if #out == 0 then next = next_due() end
return done(seq, { m = out, next = next })
