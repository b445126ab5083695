-- @include "prologue"
-- @include "access"
-- @include "queue_common"
-- Compatibility API (/api/v1.0.0/MomServer): subscribes the caller to the queue. The earlier
-- server allowed only subscribers to receive from a queue; momd keeps that relation in the
-- queue's meta hash, field 'compat_subs' (a JSON array of usernames in name order), so it lives,
-- replicates and is deleted with the queue. The owner counts as subscribed without an entry.
-- Needs the receive right; at most MAX_SUBSCRIBERS entries. Returns
-- { subscribed = true, created = <whether this call added the caller> }.
local MAX_SUBSCRIBERS = 10000
require_right('receive')
local owner = redis.call('HGET', META, 'owner')
local subs = cjson.decode(redis.call('HGET', META, 'compat_subs') or '[]')
if CALLER == owner then return unchanged({ subscribed = true, created = false }) end
for _, u in ipairs(subs) do
  if u == CALLER then return unchanged({ subscribed = true, created = false }) end
end

if #subs >= MAX_SUBSCRIBERS then
  fail('conflict', "queue '" .. ENTITY_NAME .. "' has " .. MAX_SUBSCRIBERS .. ' subscribers already')
end
subs[#subs + 1] = CALLER
table.sort(subs)
local seq = begin_change()
redis.call('HSET', META, 'compat_subs', cjson.encode(subs))
return done(seq, { subscribed = true, created = true })
