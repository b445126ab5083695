-- @include "prologue"
-- @include "access"
-- @include "topic_common"
-- Creates a topic owned by the caller. ARGV[7..15]: the configuration values in CONFIG_FIELDS
-- order. Creating an existing topic with the same configuration changes nothing; with a
-- different one it is refused (already_exists).
local values = {}
for i, f in ipairs(CONFIG_FIELDS) do
  values[i] = ARGV[6 + i]
  if values[i] == nil then fail('invalid', 'missing configuration field ' .. f) end
end
local retb, maxb = tonumber(values[3]), tonumber(values[4])
if retb > 0 and retb < maxb then
  fail('invalid', 'retentionMaxBytes (' .. retb .. ') must be 0 or at least maxMessageBytes ('
    .. maxb .. ')')
end

-- The API's name of each stored field: a refusal names what the client sent, not the storage.
local API_FIELD = {
  ret = 'retentionSeconds', retn = 'retentionMaxMessages', retb = 'retentionMaxBytes',
  maxb = 'maxMessageBytes', vis = 'visibilityTimeoutSeconds', maxd = 'maxDeliveries',
  restricted = 'access', senders = 'access', receivers = 'access',
}

if entity_exists() then
  local stored = redis.call('HMGET', META, unpack(CONFIG_FIELDS))
  for i, f in ipairs(CONFIG_FIELDS) do
    if stored[i] ~= values[i] then
      fail('already_exists', topic_label() .. ' exists with a different ' .. (API_FIELD[f] or f)
        .. ': change a configuration with PATCH /v1/topics/' .. ENTITY_NAME)
    end
  end
  return unchanged( { created = false, topic = topic_view() })
end

local seq = begin_change()
local fields = {
  'owner', CALLER, 'createdAt', int(NOW),
  'first', 0, 'next', 0, 'btotal', 0, 'btrim', 0, 'lastt', 0,
}
for i, f in ipairs(CONFIG_FIELDS) do
  fields[#fields + 1] = f
  fields[#fields + 1] = values[i]
end
redis.call('HSET', META, unpack(fields))
redis.call('ZADD', REGISTRY, 0, ENTITY_NAME)
return done(seq, { created = true, topic = topic_view() })
