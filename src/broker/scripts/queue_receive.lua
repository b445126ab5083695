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
-- Pop at most max deliveries plus a bounded number of expired messages, in as few calls as the
-- expired ones allow: each round pops what is still missing and reads those messages at once.
local budget = max + MAINTENANCE_LIMIT
local ids, raws = {}, {}
while #ids < max and budget > 0 do
  local popped = redis.call('LPOP', READY, math.min(max - #ids, budget))
  if not popped then break end
  budget = budget - #popped
  local found = redis.call('HMGET', MSGS, unpack(popped))
  for i, id in ipairs(popped) do
    local raw = found[i]
    if not raw then
      forget(id)
    elseif expires_at(raw) <= NOW then
      forget(id)
      expired = expired + 1
    else
      ids[#ids + 1] = id
      raws[#ids] = raw
    end
  end
end
if #ids > 0 then
  local counts = redis.call('HMGET', DC, unpack(ids))
  local dcs, rcs, zs = {}, {}, {}
  for i, id in ipairs(ids) do
    local dc = tonumber(counts[i] or '0') + 1
    local token = ARGV[8 + i]
    dcs[2 * i - 1], dcs[2 * i] = id, dc
    rcs[2 * i - 1], rcs[2 * i] = id, token
    zs[2 * i - 1], zs[2 * i] = deadline, id
    out[i] = { id, raws[i], dc, deadline, token }
  end
  redis.call('HSET', DC, unpack(dcs))
  redis.call('HSET', RC, unpack(rcs))
  redis.call('ZADD', INFLIGHT, unpack(zs))
end
count('n_exp', expired)
count('n_recv', #out)
local next = false
if #out == 0 then next = next_due() end
return done(seq, { m = out, next = next })
