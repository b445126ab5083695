-- @include "prologue"
-- @include "access"
-- @include "queue_common"
-- Creates a queue owned by the caller. ARGV[7..17]: the configuration values in CONFIG_FIELDS
-- order. Creating an existing queue with the same configuration changes nothing; with a
-- different one it is refused (already_exists).
local values = {}
for i, f in ipairs(CONFIG_FIELDS) do
  values[i] = ARGV[6 + i]
  if values[i] == nil then fail('invalid', 'missing configuration field ' .. f) end
end

-- The API's name of each stored field: a refusal names what the client sent, not the storage.
local API_FIELD = {
  vis = 'visibilityTimeoutSeconds', maxd = 'maxDeliveries', ret = 'retentionSeconds',
  maxlen = 'maxLength', ovf = 'overflow', delay = 'delaySeconds', maxb = 'maxMessageBytes',
  ddw = 'dedupWindowSeconds', restricted = 'access', senders = 'access', receivers = 'access',
}

if entity_exists() then
  local stored = redis.call('HMGET', META, unpack(CONFIG_FIELDS))
  for i, f in ipairs(CONFIG_FIELDS) do
    if stored[i] ~= values[i] then
      fail('already_exists', "queue '" .. ENTITY_NAME .. "' exists with a different "
        .. (API_FIELD[f] or f) .. ': change a configuration with PATCH /v1/queues/'
        .. ENTITY_NAME)
    end
  end
  return unchanged({ created = false, queue = queue_view() })
end

local seq = begin_change()
local fields = { 'owner', CALLER, 'createdAt', NOW }
for i, f in ipairs(CONFIG_FIELDS) do
  fields[#fields + 1] = f
  fields[#fields + 1] = values[i]
end
for _, c in ipairs(COUNTERS) do
  fields[#fields + 1] = c
  fields[#fields + 1] = 0
end
redis.call('HSET', META, unpack(fields))
redis.call('ZADD', REGISTRY, 0, ENTITY_NAME)
return done(seq, { created = true, queue = queue_view() })
