-- Adds a player under a nickname unique in the quiz (case-insensitive).
-- KEYS[1]: the quiz's key prefix. ARGV: player_id, player record (JSON), folded nickname.
-- Returns the new participant count, 0 if the nickname or the player ID is taken (a signed-in user's
-- player ID is the same from every device), -1 if the quiz has no live state.
local prefix = KEYS[1]
if redis.call('EXISTS', prefix .. ':state') == 0 then return -1 end
-- HGET, not HEXISTS: the ACL of deployments (scripts/redis/quizmesh.acl) already allows it.
if redis.call('HGET', prefix .. ':players', ARGV[1]) then return 0 end
if redis.call('HSETNX', prefix .. ':nicks', ARGV[3], ARGV[1]) == 0 then return 0 end
redis.call('HSET', prefix .. ':players', ARGV[1], ARGV[2])
return redis.call('HINCRBY', prefix .. ':state', 'count', 1)
