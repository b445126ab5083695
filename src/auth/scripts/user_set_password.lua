-- Replaces a user's password hash and gives it a new token version (every earlier token stops
-- working), then announces the change so every node drops its cached version.
--
-- KEYS[1] the user's hash
-- ARGV[1] username   ARGV[2] new password hash   ARGV[3] new token version
-- ARGV[4] the token version the caller saw when it checked the current password ('' = any):
--         if the password changed in between, nothing is written (compare-and-set)
-- ARGV[5] now (ISO 8601)   ARGV[6] the change channel
-- Returns 1, or the error `MOMD not_found ...` / `MOMD conflict ...`.

if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply("MOMD not_found user '" .. ARGV[1] .. "' does not exist")
end
if ARGV[4] ~= '' and redis.call('HGET', KEYS[1], 'tokenVersion') ~= ARGV[4] then
  return redis.error_reply("MOMD conflict the password was changed meanwhile; try again")
end
redis.call('HSET', KEYS[1], 'hash', ARGV[2], 'tokenVersion', ARGV[3], 'passwordChangedAt', ARGV[5])
redis.call('PUBLISH', ARGV[6], ARGV[1])
return 1
