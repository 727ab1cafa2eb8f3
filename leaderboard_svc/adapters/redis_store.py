"""The ranking store in Redis, shared by every leaderboard_svc process.

Each quiz's keys carry its ID as a hash tag, so they share one cluster slot and one Lua script can
guard and update them atomically. Deadlines come from the client's socket timeout (see Runtime.redis).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from leaderboard_svc.domain import (
    AnswerScored,
    LeaderboardPage,
    PlayerJoined,
    RankedEntry,
    RankingEvent,
    RankingSnapshot,
    score_of,
)
from leaderboard_svc.ports import StoreUnavailable

T = TypeVar("T")


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
    return ("L", event.player_id, "", "", "", "", "")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _composite(value: bytes | str | float) -> int:
    # Composites stay below 2**53, so the double Redis stores (and prints with %.17g) is exact.
    return int(float(value))


class RedisLeaderboardStore:
    def __init__(self, redis: Redis, *, ttl_s: int) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        # register_script re-loads a script on NOSCRIPT, e.g. after Redis restarted.
        self._apply_events = redis.register_script(_script("apply_events.lua"))
        self._top = redis.register_script(_script("top.lua"))

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

        async def run() -> list[Any]:
            # One script call per quiz, all in one round trip; each call is atomic on its own.
            async with self._redis.pipeline(transaction=False) as pipe:
                for quiz_id in quiz_ids:
                    keys = _Keys(quiz_id)
                    args: list[str | int] = [self._ttl_s]
                    for event in by_quiz[quiz_id]:
                        args.extend(_arguments(event))
                    await self._apply_events(
                        keys=[keys.rank, keys.players, keys.nick, keys.left, keys.last_answer, keys.version],
                        args=args,
                        client=pipe,
                    )
                return await pipe.execute()

        results = await self._call(run)
        return {quiz_id for quiz_id, changed in zip(quiz_ids, results, strict=True) if changed}

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
