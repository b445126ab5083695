-- @include "prologue"
-- @include "access"
-- @include "topic_common"
-- Deletes the topic with its log and every subscription (owner or admin). The subscriptions are
-- known from the subs hash, so no key is searched for.
require_right('manage')
local subs = redis.call('HKEYS', SUBS)
table.sort(subs)

local seq = begin_change()
for _, name in ipairs(subs) do
  local k = sub_keys(name)
  redis.call('DEL', k.state, k.redeliver, k.inflight, k.dc, k.rc, k.dead)
end
redis.call('DEL', META, LOG, SUBS)
redis.call('ZREM', REGISTRY, ENTITY_NAME)
return done(seq, { subscriptions = #subs })
