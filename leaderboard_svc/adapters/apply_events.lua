-- Applies one quiz's batch of ranking events atomically; mirrors leaderboard_svc/domain.py.
-- KEYS: rank (zset of composite scores), players (hash player -> "score|reached_ms|last_question"),
--       nick (hash), left (set), last_answer (string, ms), version and built (strings; only their TTLs
--       are refreshed)
-- ARGV: ttl_s, reached_slots (domain.REACHED_SLOTS), then 7 fields per event: kind (J|A|L|E), player_id,
--       nickname (the replacement for E), question_index, total_score, quiz_elapsed_ms, answer_time_ms (fields an event kind
--       lacks are empty)
-- Returns 1 if the ranking changed, else 0.
local rank_key, players_key, nick_key, left_key, last_answer_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local ttl_s = tonumber(ARGV[1])
local SLOTS = tonumber(ARGV[2])
local MAX_MS = SLOTS - 1

local function composite(score, reached_ms)
  local ms = math.max(reached_ms, 0)
  if ms > MAX_MS then ms = MAX_MS end
  return score * SLOTS + (MAX_MS - ms)
end

local function parse(raw)
  local score, reached, last_question = string.match(raw, '^(-?%d+)|(-?%d+)|(-?%d+)$')
  return tonumber(score), tonumber(reached), tonumber(last_question)
end

local function write(player, score, reached_ms, last_question)
  redis.call('HSET', players_key, player, string.format('%d|%d|%d', score, reached_ms, last_question))
  -- Formatted as an integer: Lua's own number-to-string keeps only 14 significant digits.
  redis.call('ZADD', rank_key, string.format('%d', composite(score, reached_ms)), player)
end

local changed = 0
local last_answer = tonumber(redis.call('GET', last_answer_key) or '0')
local last_answer_before = last_answer

for i = 3, #ARGV, 7 do
  local kind, player = ARGV[i], ARGV[i + 1]
  local has_left = redis.call('SISMEMBER', left_key, player) == 1
  if kind == 'L' then
    if not has_left then
      redis.call('SADD', left_key, player)
      if redis.call('HDEL', players_key, player) == 1 then
        redis.call('ZREM', rank_key, player)
        redis.call('HDEL', nick_key, player)
        changed = 1
      end
    end
  elseif not has_left then
    local raw = redis.call('HGET', players_key, player)
    if kind == 'J' then
      local nickname, joined_at = ARGV[i + 2], tonumber(ARGV[i + 5])
      if not raw then
        write(player, 0, joined_at, -1)
        if nickname ~= '' then redis.call('HSET', nick_key, player, nickname) end
        changed = 1
      else
        -- The answer came before the join (another topic): the join names the player and, while the
        -- score is 0, dates it to the join.
        local score, reached, last_question = parse(raw)
        if score == 0 and reached ~= joined_at then
          write(player, 0, joined_at, last_question)
          changed = 1
        end
        if nickname ~= '' and redis.call('HSETNX', nick_key, player, nickname) == 1 then changed = 1 end
      end
    elseif kind == 'E' then
      -- domain.after_erase: the name alone changes; a player not projected yet is held at 0 under it
      -- while the ranking exists, so their join keeps it (HSETNX above).
      local replacement = ARGV[i + 2]
      if raw then
        if redis.call('HGET', nick_key, player) ~= replacement then
          redis.call('HSET', nick_key, player, replacement)
          changed = 1
        end
      elseif redis.call('EXISTS', rank_key) == 1 then
        write(player, 0, MAX_MS, -1)
        redis.call('HSET', nick_key, player, replacement)
        changed = 1
      end
    else
      local question, total, elapsed = tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5])
      local applied = false
      if not raw then
        write(player, total, elapsed, question)
        applied = true
      else
        local score, reached, last_question = parse(raw)
        if question > last_question then
          if total ~= score then reached = elapsed end
          write(player, total, reached, question)
          applied = true
        end
      end
      if applied then
        changed = 1
        local answered_at = tonumber(ARGV[i + 6])
        if answered_at > last_answer then last_answer = answered_at end
      end
    end
  end
end

if last_answer ~= last_answer_before then
  redis.call('SET', last_answer_key, string.format('%d', last_answer))
end
if changed == 1 then
  for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, ttl_s) end
end
return changed
