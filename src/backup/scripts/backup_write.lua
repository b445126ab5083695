-- Writes or deletes one entity's backup, fenced by version (the only script of the backup Redis).
--
-- KEYS[1] head hash, KEYS[2] data hash, KEYS[3] ttl hash, KEYS[4] index zset of the type.
-- ARGV[1] 'put' or 'drop', ARGV[2] entity name, ARGV[3] entity type,
-- ARGV[4] created (the incarnation: the entity's createdAt; '' on a drop = the stored one),
-- ARGV[5] epoch, ARGV[6] seq, ARGV[7] savedAt (ms), ARGV[8] tombstone time to live (ms),
-- ARGV[9] registry kind, ARGV[10] registry value, ARGV[11..] triples (key, DUMP payload, pttl).
--
-- A version is (created, epoch, seq), compared in that order. `created` tells incarnations of a
-- name apart: a deleted and re-created entity starts again at epoch 1 and seq 1, and must still
-- replace what an earlier incarnation left. Within one incarnation, the epoch fences a deposed
-- (zombie) owner and the seq orders the writes of one owner.
--
-- put:  refused ('fenced') unless strictly newer than the stored version; an equal version is
--       'same' (nothing written). A tombstone refuses every write of its incarnation or an
--       older one. Otherwise the backup is replaced whole and the name indexed: 'written'.
-- drop: refused ('fenced') when the stored backup is of a later incarnation, or of the same one
--       with a higher epoch. Otherwise the data goes, the index forgets the name, and the head
--       becomes a tombstone that expires after ARGV[8] ms: 'deleted'. Nothing stored: 'absent'.
--
-- Reply: { status, created, epoch, seq } with the version stored after the call (for 'fenced'
-- and 'same', the stored version that decided it).
local HEAD, DATA, TTL, INDEX = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local MODE, NAME, TYPE = ARGV[1], ARGV[2], ARGV[3]
local epoch, seq = tonumber(ARGV[5]), tonumber(ARGV[6])

local h = redis.call('HMGET', HEAD, 'created', 'epoch', 'seq', 'deleted')
local stored = h[2] ~= false
local sc, se, ss = tonumber(h[1]) or 0, tonumber(h[2]) or 0, tonumber(h[3]) or 0
local tombstone = h[4] == '1'
local created_arg = ARGV[4]
if created_arg == '' then created_arg = h[1] or '0' end
local created = tonumber(created_arg)

local function reply(status)
  local v = redis.call('HMGET', HEAD, 'created', 'epoch', 'seq')
  return { status, v[1] or '0', v[2] or '0', v[3] or '0' }
end

-- -1, 0 or 1: how (created, epoch, seq) compares with the stored version.
local function compare()
  if created ~= sc then return created < sc and -1 or 1 end
  if epoch ~= se then return epoch < se and -1 or 1 end
  if seq ~= ss then return seq < ss and -1 or 1 end
  return 0
end

if MODE == 'put' then
  if stored then
    if tombstone then
      if created <= sc then return reply('fenced') end
    else
      local c = compare()
      if c == 0 then return reply('same') end
      if c < 0 then return reply('fenced') end
    end
  end
  redis.call('DEL', HEAD, DATA, TTL)
  local n = 0
  for i = 11, #ARGV - 2, 3 do
    redis.call('HSET', DATA, ARGV[i], ARGV[i + 1])
    if tonumber(ARGV[i + 2]) >= 0 then redis.call('HSET', TTL, ARGV[i], ARGV[i + 2]) end
    n = n + 1
  end
  redis.call('HSET', HEAD, 'type', TYPE, 'name', NAME, 'created', created_arg, 'epoch', ARGV[5],
    'seq', ARGV[6], 'savedAt', ARGV[7], 'keys', n, 'regKind', ARGV[9], 'regValue', ARGV[10])
  redis.call('ZADD', INDEX, 0, NAME)
  return reply('written')
end

if MODE == 'drop' then
  if not stored or tombstone then return reply('absent') end
  if created < sc or (created == sc and epoch < se) then return reply('fenced') end
  redis.call('DEL', HEAD, DATA, TTL)
  redis.call('ZREM', INDEX, NAME)
  redis.call('HSET', HEAD, 'type', TYPE, 'name', NAME, 'created', created_arg, 'epoch', ARGV[5],
    'seq', h[3] or '0', 'savedAt', ARGV[7], 'keys', 0, 'deleted', 1)
  redis.call('PEXPIRE', HEAD, ARGV[8])
  return reply('deleted')
end

return redis.error_reply('MOMD invalid unknown backup mode ' .. tostring(MODE))
