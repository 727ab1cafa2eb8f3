-- Reads the top of one quiz's ranking and one player's standing in a single atomic step.
-- KEYS: rank, nick, version. ARGV: n, player_id (may be empty).
-- Returns {flat [member, composite, ...], nicknames, player_count, version, player or false}
-- where player is {rank (zero-based), composite, nickname}.
local rank_key, nick_key, version_key = KEYS[1], KEYS[2], KEYS[3]
local n, player = tonumber(ARGV[1]), ARGV[2]

local top = redis.call('ZREVRANGE', rank_key, 0, n - 1, 'WITHSCORES')
local nicknames = {}
for i = 1, #top, 2 do
  nicknames[#nicknames + 1] = redis.call('HGET', nick_key, top[i]) or ''
end
local standing = false
if player ~= '' then
  local position = redis.call('ZREVRANK', rank_key, player)
  if position then
    standing = {position, redis.call('ZSCORE', rank_key, player), redis.call('HGET', nick_key, player) or ''}
  end
end
return {top, nicknames, redis.call('ZCARD', rank_key), redis.call('GET', version_key) or '0', standing}
