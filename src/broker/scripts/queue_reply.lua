-- @include "prologue"
-- @include "access"
-- @include "queue_common"
-- @include "queue_tasks"
-- Stores the reply of a task (needs the receive right: workers are the queue's consumers).
-- ARGV[7] the task's message id, ARGV[8] 'c' (completed: ARGV[9] is the result) or 'f' (failed:
-- ARGV[9] is the error), ARGV[10] the task id as the API shows it (for messages). Refused once
-- the deadline has passed and when the task already has a reply: a worker that gets 'conflict'
-- acks the message and moves on.
require_right('receive')
local id, kind, payload, shown = ARGV[7], ARGV[8], ARGV[9], ARGV[10]
if #ARGV ~= 10 or (kind ~= 'c' and kind ~= 'f') then fail('invalid', 'malformed reply arguments') end
local t = get_task(id)
if not t then
  fail('not_found', "task '" .. shown .. "' is unknown (no such task, or it ended long ago)")
end
if t.state == 'x' or t.deadline <= NOW then
  fail('conflict', "the deadline of task '" .. shown .. "' has passed: the reply is refused")
end
if t.state ~= 'w' then fail('conflict', "task '" .. shown .. "' already has a reply") end
local cfg = qcfg()
if #payload > cfg.maxb then
  fail('too_large', 'the reply has ' .. #payload .. ' bytes; queue \'' .. ENTITY_NAME
    .. '\' accepts at most ' .. cfg.maxb)
end

local seq = begin_change()
t.state, t.payload, t.completed = kind, payload, NOW
put_task(id, t, t.deadline)
clean_tasks()
return done(seq, { deadline = t.deadline, completed = NOW })
