-- Shared by every script. ARGV[1] epoch, ARGV[2] expected sequence ('' on the owner),
-- ARGV[3] time in ms (the owner's clock, carried in the record so replicas replay it exactly).
-- KEYS[1] is always the entity's meta hash; the last key is the store's identity (STORE_KEY).
local EPOCH = tonumber(ARGV[1]) or 0
local EXPECTED = ARGV[2]
local NOW = tonumber(ARGV[3])
local META = KEYS[1]

-- A store without its identity lost its data (wiped, or restarted from nothing) since its node
-- opened it: answering from it, or writing into it, could contradict what was acknowledged.
if redis.call('EXISTS', KEYS[#KEYS]) == 0 then
  return redis.error_reply('MOMD store_lost the local store lost its data')
end

-- Scripts are not transactional on error: validate everything before the first write.
local function fail(code, detail)
  error({ err = 'MOMD ' .. code .. ' ' .. (detail or '') })
end

local function known_seq()
  return tonumber(redis.call('HGET', META, 'seq') or '0')
end

-- A replica that already holds this record answers with sequence -1 and changes nothing.
if EXPECTED ~= '' and tonumber(EXPECTED) <= known_seq() then
  return { -1, '' }
end

local function check_epoch()
  local known = tonumber(redis.call('HGET', META, 'epoch') or '0')
  if EPOCH < known then fail('stale_epoch', 'epoch ' .. EPOCH .. ' is older than ' .. known) end
end

-- Call once, after validation and before the first write: fences stale owners, orders records.
local function begin_change()
  check_epoch()
  local seq = known_seq()
  if EXPECTED ~= '' and tonumber(EXPECTED) ~= seq + 1 then
    fail('conflict', 'replication record ' .. EXPECTED .. ' does not follow ' .. seq)
  end
  seq = seq + 1
  -- 'changed': when the entity last changed (its owner's clock); a new owner resumes from it.
  redis.call('HSET', META, 'seq', seq, 'epoch', EPOCH, 'changed', NOW)
  return seq
end

-- Result of a script: the new sequence (0: nothing changed, no record) and a JSON payload.
local function done(seq, payload)
  return { seq, cjson.encode(payload) }
end
