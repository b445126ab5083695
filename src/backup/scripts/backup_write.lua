-- Writes, extends or deletes one entity's backup, fenced by version (the only script of the
-- backup Redis).
--
-- KEYS[1] head hash, KEYS[2] data hash, KEYS[3] ttl hash, KEYS[4] index zset of the type,
-- KEYS[5] log list.
-- ARGV[1] 'put', 'append' or 'drop', ARGV[2] entity name, ARGV[3] entity type,
-- ARGV[4] created (the incarnation: the entity's createdAt; '' on a drop = the stored one),
-- ARGV[5] epoch, ARGV[6] seq (the last one held after the call), ARGV[7] savedAt (ms).
-- put:    ARGV[8] unused, ARGV[9] registry kind, ARGV[10] registry value,
--         ARGV[11..] triples (key, DUMP payload, pttl).
-- append: ARGV[8] the first appended seq, ARGV[9] and ARGV[10] unused, ARGV[11..] the encoded
--         records, in sequence order.
-- drop:   ARGV[8] the tombstone's time to live (ms).
--
-- A backup is a snapshot (the data and ttl hashes, at head field `base`) followed by the log of
-- the records after it (the entity's records `base + 1 .. seq`, replayed on restore). A version
-- is (created, epoch, seq), compared in that order. `created` tells incarnations of a name
-- apart: a deleted and re-created entity starts again at epoch 1 and seq 1, and must still
-- replace what an earlier incarnation left. Within one incarnation, the epoch fences a deposed
-- (zombie) owner and the seq orders the writes of one owner.
--
-- put:    refused ('fenced') unless strictly newer than the stored version; an equal version is
--         'same' (nothing written). A tombstone refuses every write of its incarnation or an
--         older one. Otherwise the backup is replaced whole (its log emptied) and the name
--         indexed: 'written'.
-- append: only onto a live backup of the same incarnation and epoch whose seq is the one just
--         before the first record (one owner per epoch writes one history, so the records
--         continue exactly that state); anything else is a 'mismatch' and the caller writes a
--         snapshot instead. Otherwise the records join the log: 'appended'.
-- drop:   refused ('fenced') when the stored backup is of a later incarnation, or of the same
--         one with a higher epoch. Otherwise the data goes, the index forgets the name, and the
--         head becomes a tombstone that expires after ARGV[8] ms: 'deleted'. Nothing stored:
--         'absent'.
--
-- Reply: { status, created, epoch, seq } with the version stored after the call (for 'fenced',
-- 'same' and 'mismatch', the stored version that decided it).
local HEAD, DATA, TTL, INDEX, LOG = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
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
  redis.call('DEL', HEAD, DATA, TTL, LOG)
  local n, bytes = 0, 0
  for i = 11, #ARGV - 2, 3 do
    redis.call('HSET', DATA, ARGV[i], ARGV[i + 1])
    if tonumber(ARGV[i + 2]) >= 0 then redis.call('HSET', TTL, ARGV[i], ARGV[i + 2]) end
    n = n + 1
    bytes = bytes + #ARGV[i + 1]
  end
  redis.call('HSET', HEAD, 'type', TYPE, 'name', NAME, 'created', created_arg, 'epoch', ARGV[5],
    'seq', ARGV[6], 'base', ARGV[6], 'savedAt', ARGV[7], 'keys', n, 'bytes', bytes,
    'logLen', 0, 'logBytes', 0, 'regKind', ARGV[9], 'regValue', ARGV[10])
  redis.call('ZADD', INDEX, 0, NAME)
  return reply('written')
end

if MODE == 'append' then
  if not stored or tombstone or created ~= sc or epoch ~= se or tonumber(ARGV[8]) ~= ss + 1 then
    return reply('mismatch')
  end
  local bytes = 0
  -- RPUSH in chunks: unpack() of a long argument list would overflow Lua's stack.
  for i = 11, #ARGV, 1000 do
    local last = math.min(i + 999, #ARGV)
    redis.call('RPUSH', LOG, unpack(ARGV, i, last))
    for j = i, last do bytes = bytes + #ARGV[j] end
  end
  redis.call('HSET', HEAD, 'seq', ARGV[6], 'savedAt', ARGV[7])
  redis.call('HINCRBY', HEAD, 'logLen', #ARGV - 10)
  redis.call('HINCRBY', HEAD, 'logBytes', bytes)
  return reply('appended')
end

if MODE == 'drop' then
  if not stored or tombstone then return reply('absent') end
  if created < sc or (created == sc and epoch < se) then return reply('fenced') end
  redis.call('DEL', HEAD, DATA, TTL, LOG)
  redis.call('ZREM', INDEX, NAME)
  redis.call('HSET', HEAD, 'type', TYPE, 'name', NAME, 'created', created_arg, 'epoch', ARGV[5],
    'seq', h[3] or '0', 'savedAt', ARGV[7], 'keys', 0, 'deleted', 1)
  redis.call('PEXPIRE', HEAD, ARGV[8])
  return reply('deleted')
end

return redis.error_reply('MOMD invalid unknown backup mode ' .. tostring(MODE))
