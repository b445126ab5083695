-- @include "prologue"
-- @include "access"
-- @include "topic_common"
-- Read-only. ARGV[7]: 'topic' (configuration and counts; any authenticated caller),
-- 'subscription' (ARGV[6] with its counts) or 'subscriptions' (all, by name; receive right).
-- Counts are as of now: what lazy maintenance would make of the stored state.
local mode = ARGV[7]
if mode == 'topic' then
  require_topic()
  return done(0, { topic = topic_view() })
end
require_right('receive')
local t = topic_state()
local keep_from = retained_first(t)
if mode == 'subscription' then
  return done(0, { subscription = sub_view(SUB, require_sub(), t, keep_from) })
end
if mode ~= 'subscriptions' then fail('invalid', 'unknown stats mode') end
local names = redis.call('HKEYS', SUBS)
table.sort(names)
local out = {}
for _, name in ipairs(names) do
  out[#out + 1] = sub_view(name, sub_config(name), t, keep_from)
end
return done(0, { subscriptions = out })
