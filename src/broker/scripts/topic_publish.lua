-- @include "prologue"
-- @include "access"
-- @include "topic_common"
-- Appends a batch of messages, all or none. ARGV[7] the number of messages, then five values
-- per message: id, body, attributes JSON ('' when none), key ('' when none), size in bytes.
-- Each message gets the next offset; then retention trims the log (by count, age and bytes).
require_right('send')
local n = tonumber(ARGV[7])
local FIRST, PER = 8, 5
if not n or n < 1 or #ARGV ~= FIRST - 1 + n * PER then fail('invalid', 'malformed publish') end
local maxb = tonumber(redis.call('HGET', META, 'maxb'))
for i = 1, n do
  local size = tonumber(ARGV[FIRST + (i - 1) * PER + 4])
  if size > maxb then
    fail('too_large', 'message ' .. i .. ' has ' .. size .. ' bytes; ' .. topic_label()
      .. ' accepts at most ' .. maxb)
  end
end

local seq = begin_change()
local t = topic_state()
local at = math.max(NOW, tonumber(redis.call('HGET', META, 'lastt')))
local out = {}
for i = 1, n do
  local base = FIRST + (i - 1) * PER
  local id, body, attrs, key = ARGV[base], ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
  t.btotal = t.btotal + tonumber(ARGV[base + 4])
  local entry = { 'i', id, 'b', body }
  if attrs ~= '' then
    entry[#entry + 1] = 'a'
    entry[#entry + 1] = attrs
  end
  if key ~= '' then
    entry[#entry + 1] = 'k'
    entry[#entry + 1] = key
  end
  entry[#entry + 1] = 'p'
  entry[#entry + 1] = CALLER
  entry[#entry + 1] = 't'
  entry[#entry + 1] = int(at)
  entry[#entry + 1] = 'c'
  entry[#entry + 1] = int(t.btotal)
  redis.call('XADD', LOG, entry_id(t.next), unpack(entry))
  out[i] = { offset = t.next, id = id }
  t.next = t.next + 1
end
redis.call('HSET', META, 'next', int(t.next), 'btotal', int(t.btotal), 'lastt', int(at))
trim_to(t, retained_first(t))
return done(seq, { messages = out, publishedAt = at, firstOffset = t.first })
