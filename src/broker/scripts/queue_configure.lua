-- @include "prologue"
-- @include "access"
-- @include "queue_common"
-- Changes some configuration fields (owner or admin). ARGV[7..]: field, value pairs, fields
-- named as in CONFIG_FIELDS. Messages already held keep their expiry and delay.
require_right('manage')
local known = {}
for _, f in ipairs(CONFIG_FIELDS) do known[f] = true end
local pairs_ = {}
for i = 7, #ARGV, 2 do
  if not known[ARGV[i]] or ARGV[i + 1] == nil then
    fail('invalid', 'unknown configuration field ' .. tostring(ARGV[i]))
  end
  pairs_[#pairs_ + 1] = ARGV[i]
  pairs_[#pairs_ + 1] = ARGV[i + 1]
end
if #pairs_ == 0 then return unchanged({ queue = queue_view() }) end

local seq = begin_change()
redis.call('HSET', META, unpack(pairs_))
return done(seq, { queue = queue_view() })
