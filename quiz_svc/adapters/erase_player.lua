-- Renames an erased player (domain.erased_nickname) and frees the nickname they held, if they still do.
-- KEYS[1]: the quiz's key prefix. ARGV: player_id, replacement nickname, the player's folded nickname.
-- Returns 1 if the player was renamed, else 0.
local prefix = KEYS[1]
local raw = redis.call('HGET', prefix .. ':players', ARGV[1])
if not raw then return 0 end
local p = cjson.decode(raw)
if p.n == ARGV[2] then return 0 end
p.n = ARGV[2]
redis.call('HSET', prefix .. ':players', ARGV[1], cjson.encode(p))
if redis.call('HGET', prefix .. ':nicks', ARGV[3]) == ARGV[1] then
  redis.call('HDEL', prefix .. ':nicks', ARGV[3])
end
return 1
