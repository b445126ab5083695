-- @include "prologue"
-- @include "access"
-- @include "topic_common"
-- Creates the subscription ARGV[6] (needs the receive right; the caller is its creator).
-- ARGV[7] start: 'earliest' (the first retained message), 'latest' (the next one published) or
-- 'time' (the first message published at or after ARGV[8] ms). ARGV[9] visibility timeout
-- seconds and ARGV[10] max deliveries, '' for the topic's defaults. The same configuration
-- again changes nothing; a different one is refused (already_exists).
require_right('receive')
local start, start_time = ARGV[7], tonumber(ARGV[8])
if start ~= 'earliest' and start ~= 'latest' and start ~= 'time' then
  fail('invalid', 'start must be earliest, latest or a time')
end
if start == 'time' and not start_time then fail('invalid', 'start time missing') end
if start ~= 'time' then start_time = nil end
local vis = tonumber(ARGV[9]) or tonumber(redis.call('HGET', META, 'vis'))
local maxd = tonumber(ARGV[10]) or tonumber(redis.call('HGET', META, 'maxd'))

local t = topic_state()
local keep_from = retained_first(t)
local existing = sub_config(SUB)
if existing then
  local same = existing.start == start and existing.visibilityTimeoutSeconds == vis
    and existing.maxDeliveries == maxd and (start ~= 'time' or existing.startTime == start_time)
  if not same then
    fail('already_exists', sub_label(SUB) .. ' exists with a different configuration')
  end
  return unchanged( { created = false, subscription = sub_view(SUB, existing, t, keep_from) })
end

local position
if start == 'earliest' then
  position = keep_from
elseif start == 'latest' then
  position = t.next
else
  position = offset_at_time(t, keep_from, start_time)
end

local seq = begin_change()
redis.call('HSET', SUBS, SUB, encode_sub(start, start_time, vis, maxd, CALLER, NOW))
redis.call('HSET', KEYS[5], 'position', int(position), 'skipped', 0)
return done(seq, { created = true, subscription = sub_view(SUB, sub_config(SUB), t, keep_from) })
