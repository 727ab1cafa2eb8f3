-- Marks a player inactive (left, or kicked) and frees their nickname.
-- KEYS[1]: the quiz's key prefix. ARGV: player_id, kicked (0|1), folded nickname.
-- Returns 1 if the player was active, else 0.
local prefix = KEYS[1]
local raw = redis.call('HGET', prefix .. ':players', ARGV[1])
if not raw then return 0 end
local p = cjson.decode(raw)
if p.a == 0 then return 0 end
p.a = 0
p.k = tonumber(ARGV[2])
redis.call('HSET', prefix .. ':players', ARGV[1], cjson.encode(p))
redis.call('HDEL', prefix .. ':nicks', ARGV[3])
redis.call('HINCRBY', prefix .. ':state', 'count', -1)
return 1
