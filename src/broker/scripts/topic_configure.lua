-- @include "prologue"
-- @include "access"
-- @include "topic_common"
-- Changes some configuration fields (owner or admin). ARGV[7..]: (field, value) pairs, fields
-- from CONFIG_FIELDS. Retention changes apply from the next publish or receive; the
-- subscription defaults (vis, maxd) apply to subscriptions created afterwards.
require_right('manage')
local known = {}
for _, f in ipairs(CONFIG_FIELDS) do known[f] = true end
local changes = {}
for i = 7, #ARGV, 2 do
  local f, v = ARGV[i], ARGV[i + 1]
  if not known[f] or v == nil then fail('invalid', 'unknown configuration field ' .. tostring(f)) end
  changes[f] = v
end
local function value(f)
  return changes[f] or redis.call('HGET', META, f)
end
local retb, maxb = tonumber(value('retb')), tonumber(value('maxb'))
if retb > 0 and retb < maxb then
  fail('invalid', 'retentionMaxBytes (' .. retb .. ') must be 0 or at least maxMessageBytes ('
    .. maxb .. ')')
end

local fields = {}
for _, f in ipairs(CONFIG_FIELDS) do
  if changes[f] and changes[f] ~= redis.call('HGET', META, f) then
    fields[#fields + 1] = f
    fields[#fields + 1] = changes[f]
  end
end
if #fields == 0 then return unchanged( { topic = topic_view() }) end

local seq = begin_change()
redis.call('HSET', META, unpack(fields))
return done(seq, { topic = topic_view() })
