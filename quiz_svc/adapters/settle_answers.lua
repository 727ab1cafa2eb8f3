-- Settles reservations after a publication.
-- KEYS[1]: the quiz's key prefix.
-- ARGV: 'ack' or 'release', the settling instance ID, then (question_index, player_id) pairs.
-- ack: Kafka holds the answer; from now on a repeat is already_answered.
-- release: the publication failed; the reservation is given up (if still this process's) so a retry
-- takes it over at once. A judged one stays pending: it is owed to Kafka, and recover_answers.lua
-- publishes it should no retry come.
local prefix = KEYS[1]
local mode, me = ARGV[1], ARGV[2]
for i = 3, #ARGV, 2 do
  local member = ARGV[i] .. ':' .. ARGV[i + 1]
  local akey = prefix .. ':a:' .. ARGV[i]
  local raw = redis.call('HGET', akey, ARGV[i + 1])
  if raw then
    local h = cjson.decode(raw)
    if mode == 'ack' then
      h.ack = 1
      h.lease = 0
      redis.call('HSET', akey, ARGV[i + 1], cjson.encode(h))
      redis.call('SREM', prefix .. ':pending', member)
    elseif h.o == me and h.ack ~= 1 then
      h.o = ''
      h.lease = 0
      redis.call('HSET', akey, ARGV[i + 1], cjson.encode(h))
      if not h.p then redis.call('SREM', prefix .. ':pending', member) end
    end
  end
end
return 1
