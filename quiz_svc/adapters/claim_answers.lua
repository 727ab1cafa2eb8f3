-- Reserves each first answer to a question for the claiming process, atomically with answer-once and
-- the answer window (domain.answer_window_refusal and domain.receipt_after_open, restated here so they
-- hold across processes; tests/quiz_svc/test_window_rule.py holds both to one table of cases). Kinds
-- play no part here: the answer is opaque text, judged by the domain once reserved.
-- KEYS[1]: the quiz's key prefix.
-- ARGV: claimant instance ID, number of live instance IDs, the live IDs, number of answers, then 6 per
--       answer: question_index, player_id, the answer (opaque text), received_ms, now_ms, lease_until_ms.
-- Returns a JSON list, one entry per answer: {'fresh', player record, open_ms, received_ms},
-- {'replay', reservation} (judged before, never acknowledged) or {refusal}.
--
-- A reservation {v, rcv, o, lease, ack} (judged: plus the verdict) is owned by process o until it is
-- acknowledged (ack = 1: Kafka holds it) or given up. A repeat while its owner is alive and within its
-- lease is refused as unavailable (retry), never as already_answered: the first attempt may still fail.
-- Once its owner is dead or its lease is over, or after a release (o = ''), the repeat takes it over.
-- The per-quiz set `pending` lists every reservation not acknowledged yet, for recover_answers.lua.
local prefix = KEYS[1]
local me = ARGV[1]
local live = {}
local n_live = tonumber(ARGV[2])
for i = 1, n_live do live[ARGV[2 + i]] = true end
local base = 3 + n_live
local n = tonumber(ARGV[base])
local st = redis.call('HMGET', prefix .. ':state', 'phase', 'idx', 'qc', 'open', 'close')
local phase, cur, qc, opened, close = st[1], tonumber(st[2]), tonumber(st[3]), tonumber(st[4]), tonumber(st[5])
local out = {}
for i = 0, n - 1 do
  local at = base + 1 + i * 6
  local idx, pid, value = tonumber(ARGV[at]), ARGV[at + 1], ARGV[at + 2]
  local received, now, lease = tonumber(ARGV[at + 3]), tonumber(ARGV[at + 4]), tonumber(ARGV[at + 5])
  local r
  if not st[1] then
    r = {'quiz_not_found'}
  else
    local raw = redis.call('HGET', prefix .. ':players', pid)
    local p = raw and cjson.decode(raw)
    if not p or p.a == 0 then
      r = {'not_a_participant'}
    else
      local akey = prefix .. ':a:' .. idx
      local held = redis.call('HGET', akey, pid)
      if held then
        local h = cjson.decode(held)
        if h.ack == 1 then
          r = {'already_answered'}
        elseif h.o and live[h.o] and h.lease > now then
          r = {'unavailable'}
        elseif not h.p and (idx < cur or h.rcv > close) then
          -- Not judged before a later question opened: judging it now would score it after answers
          -- that came later, on a standing that already holds them.
          r = {'question_closed'}
        else
          h.o = me
          h.lease = lease
          local taken = cjson.encode(h)
          redis.call('HSET', akey, pid, taken)
          redis.call('SADD', prefix .. ':pending', idx .. ':' .. pid)
          if h.p then r = {'replay', taken} else r = {'fresh', raw, st[4], h.rcv} end
        end
      else
        if idx == cur and received < opened then received = now end
        if idx < 0 or idx >= qc then r = {'question_not_found'}
        elseif phase == 'lobby' or idx > cur then r = {'question_not_open'}
        elseif idx < cur or received > close then r = {'question_closed'}
        else
          redis.call('HSET', akey, pid, cjson.encode({v = value, rcv = received, o = me, lease = lease, ack = 0}))
          redis.call('SADD', prefix .. ':pending', idx .. ':' .. pid)
          r = {'fresh', raw, st[4], received}
        end
      end
    end
  end
  out[#out + 1] = r
end
return cjson.encode(out)
