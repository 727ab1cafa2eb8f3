-- Writes judged answers, each player's new standing and the counts of their tally keys, for the answers the
-- recording process still owns and nobody has judged yet (another process may have taken one over).
-- KEYS[1]: the quiz's key prefix.
-- ARGV: recording instance ID, number of answers, then 3 per answer: question_index, player_id,
--       the judged answer (JSON with its tally keys k, which the domain computed and this script only
--       counts, and the player's standing after it: t, s, l).
-- Returns a JSON list of 1 (written) or 0 (no longer this process's to write), one per answer.
local prefix = KEYS[1]
local me = ARGV[1]
local n = tonumber(ARGV[2])
local out = {}
for i = 0, n - 1 do
  local idx, pid, answer = ARGV[3 + i * 3], ARGV[4 + i * 3], ARGV[5 + i * 3]
  local akey = prefix .. ':a:' .. idx
  local raw = redis.call('HGET', akey, pid)
  local held = raw and cjson.decode(raw)
  if held and held.o == me and held.ack ~= 1 and not held.p then
    local a = cjson.decode(answer)
    a.lease = held.lease
    a.o = me
    a.ack = 0
    redis.call('HSET', akey, pid, cjson.encode(a))
    local p = cjson.decode(redis.call('HGET', prefix .. ':players', pid))
    p.t, p.s, p.l = a.t, a.s, a.l
    redis.call('HSET', prefix .. ':players', pid, cjson.encode(p))
    for _, tally in ipairs(a.k) do redis.call('HINCRBY', prefix .. ':c:' .. idx, tally, 1) end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return cjson.encode(out)
