-- @include "prologue"
-- @include "access"
-- @include "queue_common"
-- Compatibility API (/api/v1.0.0/MomServer): removes the caller from the queue's compatibility
-- subscribers (meta field 'compat_subs', see queue_compat_subscribe.lua). The owner cannot
-- unsubscribe (conflict). Returns { removed = false } when the caller was not subscribed.
if not entity_exists() then fail('not_found', "queue '" .. ENTITY_NAME .. "' does not exist") end
local owner = redis.call('HGET', META, 'owner')
if CALLER == owner then
  fail('conflict', "the owner of queue '" .. ENTITY_NAME .. "' cannot unsubscribe")
end
local subs = cjson.decode(redis.call('HGET', META, 'compat_subs') or '[]')
local kept = {}
for _, u in ipairs(subs) do
  if u ~= CALLER then kept[#kept + 1] = u end
end
if #kept == #subs then return unchanged({ removed = false }) end

local seq = begin_change()
if #kept == 0 then
  redis.call('HDEL', META, 'compat_subs')
else
  redis.call('HSET', META, 'compat_subs', cjson.encode(kept))
end
return done(seq, { removed = true })
