-- Reserves one login attempt for a (username, client) pair, or refuses it. The sorted set holds
-- one member per attempt that has not succeeded, scored by its time; attempts older than the
-- window drop out (a sliding log). The reservation counts as a failure unless the caller removes
-- it after a correct password, so attempts running at the same time cannot exceed the limit.
--
-- KEYS[1] the pair's sorted set
-- ARGV[1] now (ms)   ARGV[2] window (ms)   ARGV[3] limit   ARGV[4] a unique id for this attempt
-- Returns {1, 0} when reserved, {0, ms until an attempt frees} when refused.

local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
if n >= limit then
  -- The count drops below the limit once the (n - limit + 1) oldest attempts have expired.
  local entry = redis.call('ZRANGE', KEYS[1], n - limit, n - limit, 'WITHSCORES')
  local wait = tonumber(entry[2]) + window - now
  if wait < 1 then wait = 1 end
  return {0, wait}
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], window)
return {1, 0}
