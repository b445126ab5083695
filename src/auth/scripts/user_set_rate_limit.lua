-- Sets or clears a user's own rate limit, only while the user exists (a hash for a missing user
-- would be half a user). Nodes pick the change up at their next bucket sync.
--
-- KEYS[1] the user's hash
-- ARGV[1] username   ARGV[2] "<requests/s>:<burst>", "none" (no limit) or "" (the default again)
-- Returns 1, or the error `MOMD not_found ...`.

if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply("MOMD not_found user '" .. ARGV[1] .. "' does not exist")
end
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], 'rateLimit')
else
  redis.call('HSET', KEYS[1], 'rateLimit', ARGV[2])
end
return 1
