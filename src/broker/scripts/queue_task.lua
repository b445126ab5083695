-- @include "prologue"
-- @include "access"
-- @include "queue_common"
-- @include "queue_tasks"
-- Read-only: the state of a task at NOW. ARGV[7] the task's message id. Only the requester (or
-- an admin) sees a task; for anyone else, and when the queue or the task does not exist, the
-- answer is 'unknown'. Answers s (state), d (deadline, ms) and, for a completed or failed task,
-- p (the result or the error) and c (when the reply came; absent when the failure is derived
-- from the queue: dead-lettered or removed without a reply).
local t = get_task(ARGV[7])
if not t or (not IS_ADMIN and t.requester ~= CALLER) then return done(0, { s = 'unknown' }) end
local state, reason = task_state(ARGV[7], t)
local out = { s = state, d = t.deadline }
if state == 'completed' or state == 'failed' then
  if t.state == 'w' then
    out.p = reason
  else
    out.p, out.c = t.payload, t.completed
  end
end
return done(0, out)
