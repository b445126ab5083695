-- @include "prologue"
-- @include "access"
-- @include "queue_common"
-- Compatibility API (/api/v1.0.0/MomServer), read-only: whether the caller may receive from the
-- queue through that API (it is the owner or one of the subscribers in 'compat_subs', see
-- queue_compat_subscribe.lua). not_found when the queue does not exist.
if not entity_exists() then fail('not_found', "queue '" .. ENTITY_NAME .. "' does not exist") end
local owner = redis.call('HGET', META, 'owner')
if CALLER == owner then return done(0, { subscribed = true }) end
for _, u in ipairs(cjson.decode(redis.call('HGET', META, 'compat_subs') or '[]')) do
  if u == CALLER then return done(0, { subscribed = true }) end
end
return done(0, { subscribed = false })
