-- Takes over the reservations of one quiz that nobody handles any more: released, or owned by a
-- process that is not alive, or past their lease (the same test as claim_answers.lua's takeover).
-- One not judged yet is released (a retry takes it over, keeping its first receipt time); a judged
-- one is reserved for the recovering process and returned, to be published with its verdict.
-- KEYS[1]: the quiz's key prefix.
-- ARGV: recovering instance ID, now_ms, lease_until_ms, number of live instance IDs, the live IDs.
-- Returns a JSON list of {question_index, player_id, reservation}.
local prefix = KEYS[1]
local me, now, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local live = {}
for i = 1, tonumber(ARGV[4]) do live[ARGV[4 + i]] = true end
local pending = prefix .. ':pending'
local out = {}
for _, member in ipairs(redis.call('SMEMBERS', pending)) do
  local sep = string.find(member, ':', 1, true)
  local idx, pid = string.sub(member, 1, sep - 1), string.sub(member, sep + 1)
  local akey = prefix .. ':a:' .. idx
  local raw = redis.call('HGET', akey, pid)
  local h = raw and cjson.decode(raw)
  if not h or h.ack == 1 then
    redis.call('SREM', pending, member)
  elseif not (h.o and live[h.o]) or h.lease <= now then
    if h.p then
      h.o = me
      h.lease = lease
      local taken = cjson.encode(h)
      redis.call('HSET', akey, pid, taken)
      out[#out + 1] = {tonumber(idx), pid, taken}
    else
      h.o = ''
      h.lease = 0
      redis.call('HSET', akey, pid, cjson.encode(h))
      redis.call('SREM', pending, member)
    end
  end
end
return cjson.encode(out)
