-- @include "prologue"
-- @include "access"
-- @include "topic_common"
-- Read-only (receive right). ARGV[7] 'log': up to ARGV[9] retained messages from offset ARGV[8]
-- ('' for the first retained one). ARGV[7] 'dead': up to ARGV[9] dead letters of subscription
-- ARGV[6], skipping the first ARGV[8].
require_right('receive')
local mode, from, limit = ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9])
if not limit or limit < 1 then fail('invalid', 'malformed peek') end
if mode == 'dead' then
  require_sub()
  local skip = from or 0
  local k = this_sub()
  return done(0, {
    dead = redis.call('LRANGE', k.dead, skip, skip + limit - 1),
    total = redis.call('LLEN', k.dead),
  })
end
if mode ~= 'log' then fail('invalid', 'unknown peek mode') end
local t = topic_state()
local keep_from = retained_first(t)
local start = math.max(from or keep_from, keep_from)
local out = {}
if start < t.next then
  for _, r in ipairs(redis.call('XRANGE', LOG, entry_id(start), '+', 'COUNT', limit)) do
    out[#out + 1] = message_view(tonumber(string.match(r[1], '^(%d+)')), entry_fields(r[2]))
  end
end
return done(0, { messages = out, firstOffset = keep_from, nextOffset = t.next })
