-- Shared by the request/reply scripts (after "prologue", "access" and "queue_common").
-- KEYS[12] tasks: hash message id -> task record; KEYS[13] taskx: zset message id -> the time
-- the record next needs clean-up (its deadline, then the end of its tombstone).
--
-- A task is the request message's id: the message carries it (with the deadline and the reply
-- address) as attributes, and the record lives as long as the deadline (plus a tombstone).
local TASKS = KEYS[12]
local TASKX = KEYS[13]

-- Most task records one script call cleans up.
local TASK_CLEANUP_LIMIT = 100
-- How long a task stays known (answering 'expired') after its deadline: 1 hour.
local TASK_TOMBSTONE_MS = 3600 * 1000

-- A record is "<deadline>,<createdAt>,<completedAt>,<state>,<requester>|<payload>":
-- state 'w' waiting for a reply, 'c' completed (payload: the result), 'f' failed (payload: the
-- error), 'x' tombstone (the deadline passed; the payload is gone). completedAt is 0 until a
-- reply. Usernames hold neither ',' nor '|'.
local function encode_task(t)
  return string.format('%d,%d,%d,%s,%s|', t.deadline, t.created, t.completed, t.state, t.requester)
    .. t.payload
end

local function decode_task(raw)
  local deadline, created, completed, state, requester, at =
    string.match(raw, '^(%d+),(%d+),(%d+),(%a),([^|]*)|()')
  if not deadline then fail('invalid', 'corrupt task record') end
  return {
    deadline = tonumber(deadline), created = tonumber(created), completed = tonumber(completed),
    state = state, requester = requester, payload = string.sub(raw, at),
  }
end

local function get_task(id)
  local raw = redis.call('HGET', TASKS, id)
  if not raw then return nil end
  return decode_task(raw)
end

local function put_task(id, t, cleanup_at)
  redis.call('HSET', TASKS, id, encode_task(t))
  redis.call('ZADD', TASKX, cleanup_at, id)
end

-- Lazy clean-up at NOW (after begin_change), bounded: a task whose deadline passed becomes a
-- tombstone (its result or error dropped); a tombstone whose time is over is removed.
local function clean_tasks()
  local due = redis.call('ZRANGEBYSCORE', TASKX, '-inf', NOW, 'LIMIT', 0, TASK_CLEANUP_LIMIT)
  for _, id in ipairs(due) do
    local t = get_task(id)
    if t and t.state ~= 'x' then
      t.state, t.payload = 'x', ''
      put_task(id, t, t.deadline + TASK_TOMBSTONE_MS)
    else
      redis.call('HDEL', TASKS, id)
      redis.call('ZREM', TASKX, id)
    end
  end
end

-- The state of a task at NOW: 'pending', 'in_progress', 'completed', 'failed' or 'expired'.
-- Without a reply it follows the request message: in flight (in_progress); ready, delayed or
-- awaiting redelivery (pending); dead-lettered or removed without a reply (failed, with the
-- reason as second value; a reply is still accepted until the deadline). Past the deadline
-- every task is expired: its result, if any, is no longer kept.
local function task_state(id, t)
  if t.state == 'x' or t.deadline <= NOW then return 'expired' end
  if t.state == 'c' then return 'completed' end
  if t.state == 'f' then return 'failed' end
  if tonumber(redis.call('ZSCORE', INFLIGHT, id) or '0') > NOW then return 'in_progress' end
  if redis.call('HEXISTS', MSGS, id) == 0 then
    return 'failed', 'the request left the queue without a reply (acknowledged, purged or dropped)'
  end
  local dc = tonumber(redis.call('HGET', DC, id) or '0')
  if dc >= qcfg().maxd and redis.call('LPOS', DEAD, id) then
    return 'failed', 'the request was dead-lettered after ' .. dc .. ' deliveries without a reply'
  end
  return 'pending'
end
