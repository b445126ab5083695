-- @include "prologue"
-- @include "access"
-- @include "topic_common"
-- Deletes the subscription ARGV[6] with its position, deliveries and dead letters (its creator,
-- the topic owner or an admin).
require_topic()
local cfg = require_sub()
require_sub_manager(cfg, 'delete it')

local seq = begin_change()
local k = this_sub()
redis.call('DEL', k.state, k.redeliver, k.inflight, k.dc, k.rc, k.dead)
redis.call('HDEL', SUBS, SUB)
return done(seq, { deleted = true })
