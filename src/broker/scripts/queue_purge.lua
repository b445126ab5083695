-- @include "prologue"
-- @include "access"
-- @include "queue_common"
-- Removes every ready, delayed and in-flight message (owner or admin); keeps the
-- configuration, the de-duplication window and, unless ARGV[7] is '1', the dead letters.
require_right('manage')
local with_dead = ARGV[7] == '1'
local live = redis.call('LLEN', READY) + redis.call('ZCARD', DELAYED) + redis.call('ZCARD', INFLIGHT)
local dead = redis.call('LLEN', DEAD)
local purged = live + (with_dead and dead or 0)
if purged == 0 then return unchanged({ purged = 0 }) end

local seq = begin_change()
local keep = {}
if not with_dead and dead > 0 then
  -- Only the dead letters survive: save them, drop the hashes whole, put them back.
  local ids = redis.call('LRANGE', DEAD, 0, -1)
  for _, id in ipairs(ids) do
    local raw = redis.call('HGET', MSGS, id)
    if raw then keep[#keep + 1] = { id, raw, redis.call('HGET', DC, id) } end
  end
end
redis.call('UNLINK', READY, DELAYED, INFLIGHT, MSGS, DC, RC)
if with_dead then redis.call('UNLINK', DEAD) end
for _, m in ipairs(keep) do
  redis.call('HSET', MSGS, m[1], m[2])
  if m[3] then redis.call('HSET', DC, m[1], m[3]) end
end
count('n_purge', purged)
return done(seq, { purged = purged })
