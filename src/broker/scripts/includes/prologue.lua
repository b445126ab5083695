-- Shared by every script. ARGV[1] epoch, ARGV[2] expected sequence ('' on the owner),
-- ARGV[3] time in ms (the owner's clock, carried in the record so replicas replay it exactly).
-- KEYS[1] is always the entity's meta hash; the last key is the store's identity (STORE_KEY).
local EPOCH = tonumber(ARGV[1]) or 0
local EXPECTED = ARGV[2]
local NOW = tonumber(ARGV[3])
local META = KEYS[1]
-- Group commit: a group script (scripts.ts, groupScript) runs several calls of this script on one
-- entity as one script and one record. It replaces this line with state the calls share, so that
-- the first change takes the group's one sequence number and the later ones write under it.
local GROUP = false

-- What a group's calls may share, because none of them can change it (a group holds calls of one
-- script on one entity, run at one time): read by the first call, reused by the rest.
local function shared(name, read)
  if not GROUP then return read() end
  local v = GROUP[name]
  if v == nil then
    v = read()
    GROUP[name] = v
  end
  return v
end

-- A store without its identity lost its data (wiped, or restarted from nothing) since its node
-- opened it: answering from it, or writing into it, could contradict what was acknowledged.
-- (A group's driver checks once for all its calls.)
if not GROUP and redis.call('EXISTS', KEYS[#KEYS]) == 0 then
  return redis.error_reply('MOMD store_lost the local store lost its data')
end

-- Scripts are not transactional on error: validate everything before the first write.
local function fail(code, detail)
  error({ err = 'MOMD ' .. code .. ' ' .. (detail or '') })
end

-- A refusal of the record itself (a stale owner, a replica out of order): it ends a whole group.
-- (Redis turns a raised table into its message, so the group learns of it through GROUP.)
local function fence(code, detail)
  if GROUP then GROUP.fenced = true end
  error({ err = 'MOMD ' .. code .. ' ' .. detail })
end

local function known_seq()
  return tonumber(redis.call('HGET', META, 'seq') or '0')
end

-- A replica that already holds this record answers with sequence -1 and changes nothing (a group
-- checks that once, before its first call).
if not GROUP and EXPECTED ~= '' and tonumber(EXPECTED) <= known_seq() then
  return { -1, '' }
end

local function check_epoch()
  local known = tonumber(redis.call('HGET', META, 'epoch') or '0')
  if EPOCH < known then fence('stale_epoch', 'epoch ' .. EPOCH .. ' is older than ' .. known) end
end

-- Call once, after validation and before the first write: fences stale owners, orders records.
local function begin_change()
  if GROUP and GROUP.seq then return GROUP.seq end
  check_epoch()
  local seq = known_seq()
  if EXPECTED ~= '' and tonumber(EXPECTED) ~= seq + 1 then
    fence('conflict', 'replication record ' .. EXPECTED .. ' does not follow ' .. seq)
  end
  seq = seq + 1
  -- 'changed': when the entity last changed (its owner's clock); a new owner resumes from it.
  redis.call('HSET', META, 'seq', seq, 'epoch', EPOCH, 'changed', NOW)
  if GROUP then GROUP.seq = seq end
  return seq
end

-- Result of a script: the new sequence (0: nothing changed, no record) and a JSON payload.
local function done(seq, payload)
  return { seq, cjson.encode(payload) }
end

-- Returns a result without a change. A replica applying a record still takes the record's
-- sequence number (after the epoch and order checks), so its sequence keeps following the
-- owner's and a record out of order is refused, not answered as if applied.
local function unchanged(payload)
  if EXPECTED ~= '' then return done(begin_change(), payload) end
  return done(0, payload)
end
