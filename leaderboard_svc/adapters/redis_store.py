"""The ranking store in Redis, shared by every leaderboard_svc process.

Each quiz's keys carry its ID as a hash tag, so they share one cluster slot and one Lua script can
guard and update them atomically. Deadlines come from the client's socket timeout (see Runtime.redis).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from importlib import resources
from typing import Any, TypeVar

from redis.exceptions import RedisError

from leaderboard_svc.domain import (
    REACHED_SLOTS,
    AnswerScored,
    LeaderboardPage,
    PlayerErased,
    PlayerJoined,
    RankedEntry,
    RankingEvent,
    RankingSnapshot,
    score_of,
)
from leaderboard_svc.ports import StoreUnavailable
from quizmesh.redis_client import (
    NO_REPLICAS,
    RedisClient,
    ReplicaAcks,
    Unconfirmed,
    run_script_confirmed,
    run_script_per_key,
)

T = TypeVar("T")

# Quizzes applied but not yet published: quiz ID -> the mark of the batch that last touched it. One
# small hash for all quizzes (entries live about one coalescing interval), outside any quiz's slot.
DIRTY_KEY = "lb:dirty"

_CLEAR_IF_UNCHANGED = """
local cleared = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    cleared = cleared + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return cleared
"""

# KEYS: version, built. ARGV: version floor, ttl_s.
_MARK_BUILT = """
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
end
redis.call('SET', KEYS[2], '1', 'EX', ARGV[2])
return 1
"""


def _script(name: str) -> str:
    return resources.files("leaderboard_svc.adapters").joinpath(name).read_text()


class _Keys:
    def __init__(self, quiz_id: str) -> None:
        prefix = f"lb:{{{quiz_id}}}"
        self.rank = f"{prefix}:rank"
        self.players = f"{prefix}:players"
        self.nick = f"{prefix}:nick"
        self.left = f"{prefix}:left"
        self.last_answer = f"{prefix}:last_answer"
        self.version = f"{prefix}:version"
        # Present once the ranking holds the quiz's durable history; gone after a data loss.
        self.built = f"{prefix}:built"


def _arguments(event: RankingEvent) -> tuple[str | int, ...]:
    """The 7 Lua fields of one event; see apply_events.lua."""
    if isinstance(event, PlayerJoined):
        return ("J", event.player_id, event.nickname, "", "", event.quiz_elapsed_ms, "")
    if isinstance(event, AnswerScored):
        return (
            "A",
            event.player_id,
            "",
            event.question_index,
            event.total_score,
            event.quiz_elapsed_ms,
            event.answer_time_ms,
        )
    if isinstance(event, PlayerErased):
        return ("E", event.player_id, event.replacement, "", "", "", "")
    return ("L", event.player_id, "", "", "", "", "")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _composite(value: bytes | str | float) -> int:
    # Composites stay below 2**53, so the double Redis stores (and prints with %.17g) is exact.
    return int(float(value))


class RedisLeaderboardStore:
    def __init__(self, redis: RedisClient, *, ttl_s: int, replica_acks: ReplicaAcks = NO_REPLICAS) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._acks = replica_acks
        # register_script re-loads a script on NOSCRIPT, e.g. after Redis restarted.
        self._apply_events = redis.register_script(_script("apply_events.lua"))
        self._top = redis.register_script(_script("top.lua"))
        self._clear_if_unchanged = redis.register_script(_CLEAR_IF_UNCHANGED)
        self._mark_built = redis.register_script(_MARK_BUILT)

    async def _call(self, operation: Callable[[], Awaitable[T]]) -> T:
        try:
            return await operation()
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis: {exc!r}") from exc

    async def ping(self) -> None:
        await self._call(self._redis.ping)

    async def apply(self, events: Sequence[RankingEvent]) -> set[str]:
        by_quiz: dict[str, list[RankingEvent]] = defaultdict(list)
        for event in events:
            by_quiz[event.quiz_id].append(event)
        if not by_quiz:
            return set()
        quiz_ids = list(by_quiz)
        mark = uuid.uuid4().hex
        calls = []
        for quiz_id in quiz_ids:
            keys = _Keys(quiz_id)
            args: list[str | int] = [self._ttl_s, REACHED_SLOTS]
            for event in by_quiz[quiz_id]:
                args.extend(_arguments(event))
            calls.append(
                ([keys.rank, keys.players, keys.nick, keys.left, keys.last_answer, keys.version, keys.built], args)
            )

        async def run() -> list[Any]:
            # The marks are written before any quiz changes, so a quiz is never changed unmarked. The
            # mark hash and the quizzes live on different nodes of a cluster, whose pipeline runs
            # each node's part in parallel: hence two steps. Each script call is atomic on its own.
            await self._redis.hset(DIRTY_KEY, mapping=dict.fromkeys(quiz_ids, mark))
            if self._acks.replicas == 0:
                return await run_script_per_key(self._redis, self._apply_events, calls)
            # The batch's offsets are committed once this returns: its rankings must survive a failover.
            applied = await run_script_confirmed(self._redis, self._apply_events, calls, self._acks)
            unconfirmed = sum(1 for result in applied if isinstance(result, Unconfirmed))
            if unconfirmed:
                raise StoreUnavailable(f"Redis replicas did not confirm {unconfirmed} quizzes' rankings in time")
            return applied

        results = await self._call(run)
        return {quiz_id for quiz_id, changed in zip(quiz_ids, results, strict=True) if changed}

    async def dirty_marks(self, quiz_ids: Sequence[str] | None = None) -> dict[str, str]:
        if quiz_ids is None:
            everything: dict[Any, Any] = await self._call(lambda: self._redis.hgetall(DIRTY_KEY))
            return {_text(k): _text(v) for k, v in everything.items()}
        if not quiz_ids:
            return {}
        values: list[Any] = await self._call(lambda: self._redis.hmget(DIRTY_KEY, list(quiz_ids)))
        return {q: _text(v) for q, v in zip(quiz_ids, values, strict=True) if v is not None}

    async def clear_dirty(self, marks: Mapping[str, str]) -> None:
        if not marks:
            return
        args = [item for pair in marks.items() for item in pair]
        await self._call(lambda: self._clear_if_unchanged(keys=[DIRTY_KEY], args=args))

    async def unbuilt(self, quiz_ids: Sequence[str]) -> set[str]:
        if not quiz_ids:
            return set()

        async def run() -> list[Any]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for quiz_id in quiz_ids:
                    pipe.exists(_Keys(quiz_id).built)
                return await pipe.execute()

        exists = await self._call(run)
        return {quiz_id for quiz_id, present in zip(quiz_ids, exists, strict=True) if not present}

    async def mark_built(self, quiz_id: str, version_floor: int) -> None:
        keys = _Keys(quiz_id)
        await self._call(lambda: self._mark_built(keys=[keys.version, keys.built], args=[version_floor, self._ttl_s]))

    async def ranking(self, quiz_id: str) -> RankingSnapshot:
        return await self._read_ranking(quiz_id, allocate_version=False)

    async def next_ranking(self, quiz_id: str) -> RankingSnapshot:
        return await self._read_ranking(quiz_id, allocate_version=True)

    async def _read_ranking(self, quiz_id: str, *, allocate_version: bool) -> RankingSnapshot:
        keys = _Keys(quiz_id)

        async def run() -> list[Any]:
            async with self._redis.pipeline(transaction=True) as pipe:
                if allocate_version:
                    pipe.incr(keys.version)
                    pipe.expire(keys.version, self._ttl_s)
                else:
                    pipe.get(keys.version)
                pipe.zrevrange(keys.rank, 0, -1, withscores=True)
                pipe.hgetall(keys.nick)
                pipe.get(keys.last_answer)
                return await pipe.execute()

        replies = await self._call(run)
        version, members, nicknames, last_answer = replies[0], *replies[-3:]
        nickname_of = {_text(k): _text(v) for k, v in nicknames.items()}
        entries = []
        for position, (member, composite_score) in enumerate(members, start=1):
            player_id = _text(member)
            entries.append(
                RankedEntry(player_id, nickname_of.get(player_id, ""), score_of(_composite(composite_score)), position)
            )
        return RankingSnapshot(quiz_id, int(version or 0), entries, int(last_answer or 0))

    async def top(self, quiz_id: str, n: int, player_id: str) -> LeaderboardPage:
        keys = _Keys(quiz_id)
        reply = await self._call(lambda: self._top(keys=[keys.rank, keys.nick, keys.version], args=[n, player_id]))
        flat, nicknames, player_count, version, standing = reply
        top = [
            RankedEntry(_text(flat[i]), _text(nickname), score_of(_composite(flat[i + 1])), i // 2 + 1)
            for i, nickname in zip(range(0, len(flat), 2), nicknames, strict=True)
        ]
        player = None
        if standing:
            position, composite_score, nickname = standing
            player = RankedEntry(player_id, _text(nickname), score_of(_composite(composite_score)), int(position) + 1)
        return LeaderboardPage(top, player, int(player_count), int(version))
