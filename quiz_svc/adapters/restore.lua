-- Recreates a quiz's lost live state from its durable records, unless it exists already.
-- KEYS[1]: the quiz's key prefix. ARGV: state fields as name/value pairs up to '--', then
-- 'P' player_id folded_nickname record, or 'A' question_index player_id answer n tally_key_1..n.
-- Returns 1 if restored, 0 if a live state exists.
local prefix = KEYS[1]
if redis.call('EXISTS', prefix .. ':state') == 1 then return 0 end
local i = 1
local fields = {}
while ARGV[i] ~= '--' do
  fields[#fields + 1] = ARGV[i]
  i = i + 1
end
redis.call('HSET', prefix .. ':state', unpack(fields))
i = i + 1
while i <= #ARGV do
  if ARGV[i] == 'P' then
    redis.call('HSET', prefix .. ':players', ARGV[i + 1], ARGV[i + 3])
    if ARGV[i + 2] ~= '' then redis.call('HSET', prefix .. ':nicks', ARGV[i + 2], ARGV[i + 1]) end
    i = i + 4
  else
    redis.call('HSET', prefix .. ':a:' .. ARGV[i + 1], ARGV[i + 2], ARGV[i + 3])
    local keys = tonumber(ARGV[i + 4])
    for k = 1, keys do redis.call('HINCRBY', prefix .. ':c:' .. ARGV[i + 1], ARGV[i + 4 + k], 1) end
    i = i + 5 + keys
  end
end
return 1
