-- Creates a user in one step: claims the name, writes every field and indexes the name, or, if
-- the name is taken, changes nothing. There is never a half-created user.
--
-- KEYS[1] the user's hash   KEYS[2] the index of names (zset, score 0)
-- ARGV[1] username   ARGV[2] role   ARGV[3] password hash   ARGV[4] createdAt (ISO 8601)
-- ARGV[5] token version (opaque random integer)
-- Returns 1, or the error `MOMD already_exists ...`.

if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply("MOMD already_exists user '" .. ARGV[1] .. "' already exists")
end
redis.call('HSET', KEYS[1],
  'role', ARGV[2],
  'hash', ARGV[3],
  'createdAt', ARGV[4],
  'passwordChangedAt', ARGV[4],
  'tokenVersion', ARGV[5])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
