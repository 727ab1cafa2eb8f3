"""The game store in Redis, shared by every quiz_svc process.

One quiz's keys share a hash tag, `qz:{<quiz_id>}:...`, so they live on one cluster slot and each
script touches one slot. Every check-and-write runs inside a Lua script, which Redis executes
atomically: that is what makes answer-once hold across processes. redis-py's Script objects reload
a script after a Redis restart (NOSCRIPT).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import orjson
from redis.commands.core import AsyncScript

from quiz_svc.domain import AnswerRefusal, GameState, Phase, PlayerStanding
from quiz_svc.ports import (
    AnswerClaim,
    AnswerKey,
    ClaimOutcome,
    Fresh,
    PlayerRecord,
    Replay,
    StoredAnswer,
)
from quizmesh.redis_client import RedisClient, run_script_per_key

DEADLINES = "qz:deadlines"
# Idle sessions keep only their state hash; a finished quiz's keys expire after this.
_STATE_FIELDS = ("phase", "idx", "qc", "open", "close", "vis", "count", "ver")

_REPLACE_STATE = """
if redis.call('HGET', KEYS[1], 'ver') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""

_ADD_PLAYER = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HSETNX', KEYS[3], ARGV[3], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return redis.call('HINCRBY', KEYS[1], 'count', 1)
"""

_REMOVE_PLAYER = """
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then return 0 end
local p = cjson.decode(raw)
if p.a == 0 then return 0 end
p.a = 0
p.k = tonumber(ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(p))
redis.call('HDEL', KEYS[3], ARGV[3])
redis.call('HINCRBY', KEYS[1], 'count', -1)
return 1
"""

# The answer window below is domain.answer_window_refusal, restated so it runs atomically with the
# answer-once reservation. An existing unacknowledged reservation whose lease ran out is taken over
# before the window is checked: it was received in time, it only failed to reach Kafka.
_CLAIM = """
local prefix = KEYS[1]
local st = redis.call('HMGET', prefix .. ':state', 'phase', 'idx', 'qc', 'open', 'close')
local out = {}
local n = tonumber(ARGV[1])
for i = 0, n - 1 do
  local idx = tonumber(ARGV[2 + i * 5])
  local pid = ARGV[3 + i * 5]
  local choice = tonumber(ARGV[4 + i * 5])
  local now = tonumber(ARGV[5 + i * 5])
  local lease = tonumber(ARGV[6 + i * 5])
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
        if h.ack == 1 or h.lease > now then
          r = {'already_answered'}
        else
          h.lease = lease
          redis.call('HSET', akey, pid, cjson.encode(h))
          if h.p then r = {'replay', held} else r = {'fresh', raw, st[4], h.rcv} end
        end
      else
        local phase, cur, qc, close = st[1], tonumber(st[2]), tonumber(st[3]), tonumber(st[5])
        if idx < 0 or idx >= qc then r = {'question_not_found'}
        elseif phase == 'lobby' or idx > cur then r = {'question_not_open'}
        elseif idx < cur or phase ~= 'question_open' or now > close then r = {'question_closed'}
        else
          redis.call('HSET', akey, pid, cjson.encode({c = choice, rcv = now, lease = lease, ack = 0}))
          r = {'fresh', raw, st[4], now}
        end
      end
    end
  end
  out[#out + 1] = r
end
return cjson.encode(out)
"""

_RECORD = """
local prefix = KEYS[1]
local n = tonumber(ARGV[1])
for i = 0, n - 1 do
  local idx, pid, answer = ARGV[2 + i * 3], ARGV[3 + i * 3], ARGV[4 + i * 3]
  local a = cjson.decode(answer)
  local akey = prefix .. ':a:' .. idx
  local held = cjson.decode(redis.call('HGET', akey, pid))
  a.lease = held.lease
  a.ack = 0
  redis.call('HSET', akey, pid, cjson.encode(a))
  local p = cjson.decode(redis.call('HGET', prefix .. ':players', pid))
  p.t, p.s, p.l = a.t, a.s, a.l
  redis.call('HSET', prefix .. ':players', pid, cjson.encode(p))
  redis.call('HINCRBY', prefix .. ':c:' .. idx, a.c, 1)
end
return n
"""

# ARGV[1] = 'ack' or 'release'; then (idx, pid) pairs.
_SETTLE = """
local prefix = KEYS[1]
for i = 2, #ARGV, 2 do
  local akey = prefix .. ':a:' .. ARGV[i]
  local raw = redis.call('HGET', akey, ARGV[i + 1])
  if raw then
    local h = cjson.decode(raw)
    if ARGV[1] == 'ack' then h.ack = 1 end
    h.lease = 0
    redis.call('HSET', akey, ARGV[i + 1], cjson.encode(h))
  end
end
return 1
"""


# ARGV: state fields as name/value pairs up to '--', then 'P' player_id nickname_folded record
# or 'A' question_index player_id answer choice.
_RESTORE = """
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
    redis.call('HINCRBY', prefix .. ':c:' .. ARGV[i + 1], ARGV[i + 4], 1)
    i = i + 5
  end
end
return 1
"""


def _prefix(quiz_id: str) -> str:
    return f"qz:{{{quiz_id}}}"


def _standing(player: dict[str, Any]) -> PlayerStanding:
    return PlayerStanding(int(player["t"]), int(player["s"]), int(player["l"]))


def _stored(raw: dict[str, Any]) -> StoredAnswer:
    return StoredAnswer(
        choice=int(raw["c"]),
        correct=bool(raw["ok"]),
        points=int(raw["p"]),
        bonus=int(raw["b"]),
        response_ms=int(raw["rt"]),
        received_ms=int(raw["rcv"]),
        standing=PlayerStanding(int(raw["t"]), int(raw["s"]), int(raw["l"])),
    )


def _encode_stored(a: StoredAnswer) -> bytes:
    return orjson.dumps(
        {
            "c": a.choice,
            "ok": int(a.correct),
            "p": a.points,
            "b": a.bonus,
            "rt": a.response_ms,
            "rcv": a.received_ms,
            "t": a.standing.total,
            "s": a.standing.streak,
            "l": a.standing.last_correct_index,
        }
    )


def _state_fields(state: GameState) -> dict[str, str | int]:
    return {
        "phase": state.phase.value,
        "idx": state.question_index,
        "qc": state.question_count,
        "open": state.open_ms,
        "close": state.close_ms,
        "vis": int(state.leaderboard_visible),
        "ver": state.version,
    }


class RedisGameStore:
    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis
        self._replace_state = redis.register_script(_REPLACE_STATE)
        self._add_player = redis.register_script(_ADD_PLAYER)
        self._remove_player = redis.register_script(_REMOVE_PLAYER)
        self._claim = redis.register_script(_CLAIM)
        self._record = redis.register_script(_RECORD)
        self._settle = redis.register_script(_SETTLE)
        self._restore = redis.register_script(_RESTORE)

    async def create(self, state: GameState) -> None:
        fields: dict[Any, Any] = {**_state_fields(state), "count": state.participant_count}
        await self._redis.hset(f"{_prefix(state.quiz_id)}:state", mapping=fields)

    async def state(self, quiz_id: str) -> GameState | None:
        values: Any = await self._redis.hmget(f"{_prefix(quiz_id)}:state", _STATE_FIELDS)
        if values[0] is None:
            return None
        phase, idx, qc, opened, closes, visible, count, version = values
        return GameState(
            quiz_id=quiz_id,
            phase=Phase(phase.decode()),
            question_index=int(idx),
            question_count=int(qc),
            open_ms=int(opened),
            close_ms=int(closes),
            leaderboard_visible=visible == b"1",
            participant_count=int(count),
            version=int(version),
        )

    async def replace_state(self, expected: GameState, new: GameState) -> bool:
        flat: list[str | int] = [expected.version]
        for name, value in _state_fields(new).items():
            flat += [name, value]
        done = await self._replace_state(keys=[f"{_prefix(new.quiz_id)}:state"], args=flat)
        return bool(done)

    async def add_player(self, quiz_id: str, player_id: str, nickname: str) -> GameState | None:
        prefix = _prefix(quiz_id)
        record = orjson.dumps({"n": nickname, "t": 0, "s": 0, "l": -1, "a": 1, "k": 0})
        result = await self._add_player(
            keys=[f"{prefix}:state", f"{prefix}:players", f"{prefix}:nicks"],
            args=[player_id, record, nickname.casefold()],
        )
        if int(result) <= 0:
            return None
        return await self.state(quiz_id)

    async def remove_player(self, quiz_id: str, player_id: str, *, kicked: bool) -> bool:
        record = await self.player(quiz_id, player_id)
        if record is None:
            return False
        prefix = _prefix(quiz_id)
        done = await self._remove_player(
            keys=[f"{prefix}:state", f"{prefix}:players", f"{prefix}:nicks"],
            args=[player_id, int(kicked), record.nickname.casefold()],
        )
        return bool(done)

    async def player(self, quiz_id: str, player_id: str) -> PlayerRecord | None:
        raw: Any = await self._redis.hget(f"{_prefix(quiz_id)}:players", player_id)
        if raw is None:
            return None
        p = orjson.loads(raw)
        return PlayerRecord(player_id, p["n"], _standing(p), bool(p["a"]), bool(p["k"]))

    async def claim_answers(self, claims: Sequence[AnswerClaim]) -> list[ClaimOutcome]:
        by_quiz: dict[str, list[int]] = defaultdict(list)
        for position, claim in enumerate(claims):
            by_quiz[claim.quiz_id].append(position)
        outcomes: list[ClaimOutcome | None] = [None] * len(claims)
        calls: list[tuple[str, list[str | int]]] = []
        for quiz_id, positions in by_quiz.items():
            args: list[str | int] = [len(positions)]
            for position in positions:
                c = claims[position]
                args += [c.question_index, c.player_id, c.choice, c.received_ms, c.lease_until_ms]
            calls.append((_prefix(quiz_id), args))
        replies = await self._run_per_quiz(self._claim, calls)
        for positions, reply in zip(by_quiz.values(), replies, strict=True):
            for position, result in zip(positions, orjson.loads(reply), strict=True):
                outcomes[position] = _claim_outcome(result)
        return [o for o in outcomes if o is not None]

    async def record_verdicts(self, verdicts: Sequence[tuple[AnswerKey, StoredAnswer]]) -> None:
        grouped: dict[str, list[str | int | bytes]] = defaultdict(list)
        for key, answer in verdicts:
            grouped[key.quiz_id] += [key.question_index, key.player_id, _encode_stored(answer)]
        await self._run_per_quiz(
            self._record, [(_prefix(quiz_id), [len(args) // 3, *args]) for quiz_id, args in grouped.items()]
        )

    async def _settle_keys(self, keys: Sequence[AnswerKey], mode: str) -> None:
        grouped: dict[str, list[str | int]] = defaultdict(list)
        for key in keys:
            grouped[key.quiz_id] += [key.question_index, key.player_id]
        await self._run_per_quiz(self._settle, [(_prefix(quiz_id), [mode, *args]) for quiz_id, args in grouped.items()])

    async def _run_per_quiz(self, script: AsyncScript, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Runs `script` once per (quiz key prefix, args), all in one pipeline (one per cluster node)."""
        return await run_script_per_key(self._redis, script, [([prefix], args) for prefix, args in calls])

    async def acknowledge(self, keys: Sequence[AnswerKey]) -> None:
        await self._settle_keys(keys, "ack")

    async def release(self, keys: Sequence[AnswerKey]) -> None:
        await self._settle_keys(keys, "release")

    async def answer(self, key: AnswerKey) -> StoredAnswer | None:
        raw: Any = await self._redis.hget(f"{_prefix(key.quiz_id)}:a:{key.question_index}", key.player_id)
        if raw is None:
            return None
        held = orjson.loads(raw)
        return _stored(held) if "p" in held else None

    async def choice_counts(self, quiz_id: str, question_index: int, choices: int) -> list[int]:
        raw: Any = await self._redis.hgetall(f"{_prefix(quiz_id)}:c:{question_index}")
        return [int(raw.get(str(c).encode(), 0)) for c in range(choices)]

    async def schedule_close(self, quiz_id: str, close_ms: int) -> None:
        await self._redis.zadd(DEADLINES, {quiz_id: close_ms})

    async def due_closes(self, now_ms: int, limit: int) -> list[str]:
        due: Any = await self._redis.zrangebyscore(DEADLINES, "-inf", now_ms, start=0, num=limit)
        return [q.decode() for q in due]

    async def unschedule_close(self, quiz_id: str) -> None:
        await self._redis.zrem(DEADLINES, quiz_id)

    async def restore(
        self, state: GameState, players: Sequence[PlayerRecord], answers: Sequence[tuple[AnswerKey, StoredAnswer]]
    ) -> bool:
        args: list[Any] = []
        for name, value in {**_state_fields(state), "count": state.participant_count}.items():
            args += [name, value]
        args.append("--")
        for p in players:
            record = {
                "n": p.nickname,
                "t": p.standing.total,
                "s": p.standing.streak,
                "l": p.standing.last_correct_index,
                "a": int(p.active),
                "k": int(p.kicked),
            }
            args += ["P", p.player_id, p.nickname.casefold() if p.active else "", orjson.dumps(record)]
        for key, answer in answers:
            held = {**orjson.loads(_encode_stored(answer)), "lease": 0, "ack": 1}
            args += ["A", key.question_index, key.player_id, orjson.dumps(held), answer.choice]
        return bool(await self._restore(keys=[_prefix(state.quiz_id)], args=args))

    async def close(self) -> None:
        return None


def _claim_outcome(result: list[Any]) -> ClaimOutcome:
    kind = result[0]
    if kind == "fresh":
        return Fresh(_standing(orjson.loads(result[1])), int(result[2]), int(result[3]))
    if kind == "replay":
        return Replay(_stored(orjson.loads(result[1])))
    return AnswerRefusal(kind)
