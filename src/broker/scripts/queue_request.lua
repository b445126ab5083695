-- @include "prologue"
-- @include "access"
-- @include "queue_common"
-- @include "queue_tasks"
-- Sends a request: one message whose TTL is the request's deadline, plus its task record (the
-- caller is the requester), in one step. ARGV[7] body, ARGV[8] attributes JSON (the reserved
-- momd-* attributes included, made by the caller), ARGV[9] the deadline (ms), ARGV[10] the new
-- message id (the task's id, made by the caller), ARGV[11] the size in bytes (body and the
-- requester's own attributes: the reserved ones do not count), ARGV[12] the de-duplication id
-- ('' for none). A de-duplication id seen within the window answers the original request's
-- task, marked duplicate, and stores nothing.
require_right('send')
local cfg = qcfg()
if #ARGV ~= 12 or not tonumber(ARGV[9]) or not tonumber(ARGV[11]) then
  fail('invalid', 'malformed request arguments')
end
local body, attrs, deadline, id = ARGV[7], ARGV[8], tonumber(ARGV[9]), ARGV[10]
local size, dedup = tonumber(ARGV[11]), ARGV[12]
if deadline <= NOW then fail('invalid', 'the deadline has passed already') end
if deadline - NOW > cfg.ret * 1000 then
  fail('invalid', 'the timeout is longer than the retention of queue \'' .. ENTITY_NAME .. '\' ('
    .. cfg.ret .. ' s)')
end
if size > cfg.maxb then
  fail('too_large', 'the request has ' .. size .. ' bytes; queue \'' .. ENTITY_NAME
    .. '\' accepts at most ' .. cfg.maxb)
end

local use_dedup = dedup ~= '' and cfg.ddw > 0
if use_dedup and tonumber(redis.call('ZSCORE', DDX, dedup) or '0') > NOW then
  local original = redis.call('HGET', DD, dedup)
  local t = original and get_task(original)
  if not t then
    fail('conflict', "dedupId '" .. dedup .. "' was used by a message that is not a request, or "
      .. 'whose task has ended')
  end
  if t.requester ~= CALLER and not IS_ADMIN then
    fail('conflict', "dedupId '" .. dedup .. "' was used by another requester's request")
  end
  return unchanged({ id = original, duplicate = true, deadline = t.deadline })
end

local drop = room_for(cfg, 1, 'the request is refused')

local seq = begin_change()
enqueue(cfg, drop, {
  { id = id, body = body, attrs = attrs, expires_at = deadline, delay = cfg.delay, dedup = dedup },
})
clean_tasks()
put_task(id, { deadline = deadline, created = NOW, completed = 0, state = 'w', requester = CALLER,
  payload = '' }, deadline)
return done(seq, { id = id, duplicate = false, deadline = deadline })
