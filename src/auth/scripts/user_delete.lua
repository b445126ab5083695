-- Deletes a user and announces it on the change channel, so every node drops its tokens.
-- When an acting admin is named, it must still exist as an admin at this moment and must not be
-- the user deleted: each deletion leaves its actor, an admin, in place, so deletions can never
-- remove the last admin (two admins deleting each other at once: the second finds itself gone).
--
-- KEYS[1] the user's hash   KEYS[2] the index of names   KEYS[3] the actor's hash ('' = none)
-- ARGV[1] username   ARGV[2] actor's username ('' = none)   ARGV[3] the change channel
-- Returns 1 when deleted, 0 when there was no such user.

if ARGV[2] ~= '' then
  if ARGV[1] == ARGV[2] then
    return redis.error_reply("MOMD conflict an admin cannot delete itself; " ..
      "another admin has to delete this user")
  end
  if redis.call('HGET', KEYS[3], 'role') ~= 'admin' then
    return redis.error_reply("MOMD forbidden deleting users needs the admin role")
  end
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[3], ARGV[1])
return 1
