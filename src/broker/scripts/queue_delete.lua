-- @include "prologue"
-- @include "access"
-- @include "queue_common"
-- Deletes a queue and every message it holds (owner or admin). Every key of a queue is known,
-- so nothing is scanned.
require_right('manage')
local seq = begin_change()
redis.call('UNLINK', META, READY, DELAYED, INFLIGHT, MSGS, DC, RC, DEAD, DD, DDX,
  KEYS[12], KEYS[13]) -- tasks and taskx: request/reply tasks (queue_tasks.lua)
redis.call('ZREM', REGISTRY, ENTITY_NAME)
return done(seq, { deleted = true })
