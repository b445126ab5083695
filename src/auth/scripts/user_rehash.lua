-- Upgrades a password hash made with older parameters after a successful login. Only replaces the
-- exact hash that was verified (a password change in between wins); tokens stay valid.
--
-- KEYS[1] the user's hash
-- ARGV[1] the hash that was verified   ARGV[2] the new hash of the same password
-- Returns 1 when replaced, 0 otherwise.

if redis.call('HGET', KEYS[1], 'hash') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'hash', ARGV[2])
return 1
