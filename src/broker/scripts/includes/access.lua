-- Who calls: ARGV[4] the caller's username, ARGV[5] its role. (ARGV[6] is the subscription name
-- for topic scripts, '' otherwise; op-specific arguments start at ARGV[7].)
local CALLER = ARGV[4]
local IS_ADMIN = ARGV[5] == 'admin'
local ENTITY_NAME = string.match(META, '{(.-)}')
local ENTITY_KIND = string.find(META, ':q:{', 1, true) and 'queue' or 'topic'

local function entity_exists()
  return redis.call('EXISTS', META) == 1 and redis.call('HEXISTS', META, 'owner') == 1
end

-- Fails with not_found unless the entity exists, then with forbidden unless the caller holds the
-- right: 'manage' (owner or admin), 'send' or 'receive' (anyone, unless the owner restricted it).
local function require_right(right)
  local m = shared('access', function()
    return redis.call('HMGET', META, 'owner', 'restricted', 'senders', 'receivers')
  end)
  if not m[1] then fail('not_found', ENTITY_KIND .. " '" .. ENTITY_NAME .. "' does not exist") end
  if IS_ADMIN or CALLER == m[1] then return end
  if right == 'manage' then
    fail('forbidden', "missing the 'manage' right on " .. ENTITY_KIND .. " '" .. ENTITY_NAME ..
      "' (only the owner or an admin may manage it)")
  end
  if m[2] ~= '1' then return end
  local list = cjson.decode((right == 'send' and m[3] or m[4]) or '[]')
  for _, u in ipairs(list) do
    if u == CALLER then return end
  end
  fail('forbidden', "missing the '" .. right .. "' right on " .. ENTITY_KIND .. " '" .. ENTITY_NAME .. "'")
end
