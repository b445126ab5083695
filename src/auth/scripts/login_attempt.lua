-- Reserves one login attempt, or refuses it. Three sorted sets hold one member per attempt that
-- has not succeeded, scored by its time, and attempts older than the window drop out (sliding
-- logs): the (username, client) pair's, the client address's (any username: random names do not
-- get around it) and the cluster's. The reservation counts as a failure in all three unless the
-- caller removes it after a correct password, so attempts running at once cannot exceed a bound.
-- Past the cluster bound only addresses without a recent failure may try: a guessing storm from
-- many addresses cannot run scrypt without end, and people who type their password right still
-- get in.
--
-- KEYS[1] the pair's log   KEYS[2] the address's log   KEYS[3] the cluster's log
-- ARGV[1] now (ms)   ARGV[2] window (ms)   ARGV[3] pair bound   ARGV[4] address bound
-- ARGV[5] cluster bound   ARGV[6] a unique id for this attempt
-- Returns {1, 0, ''} when reserved, {0, ms until an attempt frees, 'pair'|'address'|'cluster'}
-- when refused.

local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local bounds = {tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])}
local names = {'pair', 'address', 'cluster'}

local counts = {}
for i = 1, 3 do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  counts[i] = redis.call('ZCARD', KEYS[i])
end

local function refuse(i)
  -- The count drops below the bound once the (n - bound + 1) oldest attempts have expired.
  local n, bound = counts[i], bounds[i]
  local entry = redis.call('ZRANGE', KEYS[i], n - bound, n - bound, 'WITHSCORES')
  local wait = tonumber(entry[2]) + window - now
  if wait < 1 then wait = 1 end
  return {0, wait, names[i]}
end

if counts[1] >= bounds[1] then return refuse(1) end
if counts[2] >= bounds[2] then return refuse(2) end
if counts[3] >= bounds[3] and counts[2] > 0 then return refuse(3) end

for i = 1, 3 do
  redis.call('ZADD', KEYS[i], now, ARGV[6])
  redis.call('PEXPIRE', KEYS[i], window)
end
-- Addresses without failures still add to the cluster's log; keep it to a bounded size.
if counts[3] + 1 > 4 * bounds[3] then
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, counts[3] - 4 * bounds[3])
end
return {1, 0, ''}
