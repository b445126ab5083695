-- Brings the token buckets of several users up to date in one step: adds the refill since each
-- bucket's last update, takes off the calls one node admitted since its last sync, and returns
-- every bucket with the limit in force (the user's own, else the cluster default), so the node
-- decides the next calls locally. The clock is Redis's, the same for every node.
--
-- KEYS[2i-1] user i's bucket (hash: t = tokens, at = ms)   KEYS[2i] user i's hash (field rateLimit)
-- ARGV[1] default requests/s (0 = no default limit)   ARGV[2] default burst
-- ARGV[2+i] calls of user i admitted by the node since its last sync
-- Returns, per user, {tokens, requests/s, burst} as strings, or {'', '', ''} for no limit.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 1, #KEYS / 2 do
  local bucket = KEYS[2 * i - 1]
  local rps, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
  -- A user's own limit: "none", or "<requests/s>:<burst>".
  local own = redis.call('HGET', KEYS[2 * i], 'rateLimit')
  if own == 'none' then
    rps = 0
  elseif own then
    local r, b = string.match(own, '^([%d.]+):(%d+)$')
    if r then rps, burst = tonumber(r), tonumber(b) end
  end
  if rps <= 0 then
    redis.call('DEL', bucket)
    out[i] = {'', '', ''}
  else
    local state = redis.call('HMGET', bucket, 't', 'at')
    local tokens = tonumber(state[1]) or burst
    local at = tonumber(state[2]) or now
    if now > at then tokens = tokens + (now - at) * rps / 1000 end
    -- Calls admitted on credit leave a debt that later refill pays back, bounded by one burst.
    tokens = math.max(math.min(tokens, burst) - tonumber(ARGV[2 + i]), -burst)
    redis.call('HSET', bucket, 't', tostring(tokens), 'at', now)
    -- Once full again the bucket equals a missing one: let it expire then.
    redis.call('PEXPIRE', bucket, math.ceil((burst - tokens) / rps * 1000) + 1000)
    out[i] = {tostring(tokens), tostring(rps), tostring(burst)}
  end
end
return out
