-- @include "prologue"
-- @include "access"
-- @include "queue_common"
-- Read-only: the queue's configuration, counters and current counts as of NOW. Delayed messages
-- that are due and timed-out deliveries count as ready (the next receive moves them); messages
-- past their TTL count until a receive or sweep drops them. Any authenticated caller may ask.
if not entity_exists() then fail('not_found', "queue '" .. ENTITY_NAME .. "' does not exist") end

local delayed_due = redis.call('ZCOUNT', DELAYED, '-inf', NOW)
local timed_out = redis.call('ZCOUNT', INFLIGHT, '-inf', NOW)
local counts = {
  ready = redis.call('LLEN', READY) + delayed_due + timed_out,
  delayed = redis.call('ZCARD', DELAYED) - delayed_due,
  inflight = redis.call('ZCARD', INFLIGHT) - timed_out,
  dead = redis.call('LLEN', DEAD),
}

-- Oldest enqueue time among the head of ready and the first 100 in-flight and delayed messages
-- (bounded work; exact whenever messages become ready in send order).
local candidates = {}
local head = redis.call('LINDEX', READY, 0)
if head then candidates[#candidates + 1] = head end
for _, key in ipairs({ INFLIGHT, DELAYED }) do
  for _, id in ipairs(redis.call('ZRANGE', key, 0, 99)) do candidates[#candidates + 1] = id end
end
local oldest = false
for _, id in ipairs(candidates) do
  local raw = redis.call('HGET', MSGS, id)
  if raw then
    local t = enqueued_at(raw)
    if not oldest or t < oldest then oldest = t end
  end
end
return done(0, { queue = queue_view(), counts = counts, oldest = oldest })
