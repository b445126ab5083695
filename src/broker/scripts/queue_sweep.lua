-- @include "prologue"
-- @include "access"
-- @include "queue_common"
-- Background maintenance of one queue at NOW, so an idle queue lets go of what it no longer
-- holds: the receive-time maintenance, then (bounded) messages past their TTL at the head of
-- ready and of the dead letters, and de-duplication ids whose window has ended. Changes
-- nothing (no record) when nothing is due. Returns how many messages became ready.
if not entity_exists() then return done(0, { readied = 0, next = false }) end

local function head_expired(key)
  local id = redis.call('LINDEX', key, 0)
  if not id then return false end
  local raw = redis.call('HGET', MSGS, id)
  return not raw or expires_at(raw) <= NOW
end

if not (maintenance_due() or head_expired(READY) or head_expired(DEAD)
    or #redis.call('ZRANGEBYSCORE', DDX, '-inf', NOW, 'LIMIT', 0, 1) > 0) then
  return unchanged({ readied = 0, next = next_due() })
end

local seq = begin_change()
local cfg = qcfg()
local readied = maintain(cfg)
local expired = 0
for _, key in ipairs({ READY, DEAD }) do
  for _ = 1, MAINTENANCE_LIMIT do
    if not head_expired(key) then break end
    local id = redis.call('LPOP', key)
    if redis.call('HEXISTS', MSGS, id) == 1 then expired = expired + 1 end
    forget(id)
  end
end
count('n_exp', expired)
local ended = redis.call('ZRANGEBYSCORE', DDX, '-inf', NOW, 'LIMIT', 0, MAINTENANCE_LIMIT)
if #ended > 0 then
  redis.call('ZREM', DDX, unpack(ended))
  redis.call('HDEL', DD, unpack(ended))
end
return done(seq, { readied = readied, next = next_due() })
