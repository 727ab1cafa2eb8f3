"""The game store in Redis, shared by every quiz_svc process, and the registry of those processes.

One quiz's keys share a hash tag, `qz:{<quiz_id>}:...`, so they live on one cluster slot and each
script touches one slot. Every check-and-write runs inside a Lua script (the `.lua` files beside this
module), which Redis executes atomically: that is what makes answer-once hold across processes. Every
script runs through `_run_per_quiz`, which reloads a script after a Redis restart (NOSCRIPT).

With replicas (ReplicaAcks, QUIZMESH_REDIS_WAIT_REPLICAS), the answer's steps also hold across a failover:
the claim, the verdicts, the acknowledgement and a recovery's takeover run through `_run_confirmed`, each
followed by WAIT on the connection that ran it. A step no replica confirmed in time counts as not done
(its reservations are released: the player's retry takes them over), so a promoted replica never lacks a
reservation whose verdict Kafka holds, nor the acknowledgement of an answer its player was told of.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from typing import Any

import orjson
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from quiz_svc.adapters.answer_codec import decode_value, encode_value
from quiz_svc.domain import AnswerRefusal, GameState, Phase, PlayerStanding, Unavailable
from quiz_svc.kinds import ChoiceAnswer, parse_credit
from quiz_svc.ports import (
    AnswerClaim,
    AnswerKey,
    Claimant,
    ClaimOutcome,
    Fresh,
    LiveState,
    PlayerRecord,
    Replay,
    StoredAnswer,
)
from quizmesh.redis_client import (
    NO_REPLICAS,
    RedisClient,
    ReplicaAcks,
    ScriptCall,
    Unconfirmed,
    run_script_confirmed,
    run_script_per_key,
    run_scripts,
)

log = logging.getLogger(__name__)

DEADLINES = "qz:deadlines"
# Without replicas to wait for, acknowledgement marks ride in the next claim's pipeline rather than
# take a round trip of their own (about a tenth of quiz_svc's CPU per batch at 500 answers/s). A mark
# changes nothing before a reservation's lease runs out (Timeouts.lease_ms, seconds), so marks that
# find no claim to ride with go alone after this long.
MARKS_RIDE_WAIT_S = 0.05
_STATE_FIELDS = ("phase", "idx", "qc", "open", "close", "vis", "count", "ver", "fx", "fxr")


def _script(name: str) -> str:
    return resources.files("quiz_svc.adapters").joinpath(name).read_text()


def _prefix(quiz_id: str) -> str:
    return f"qz:{{{quiz_id}}}"


def _standing(player: dict[str, Any]) -> PlayerStanding:
    return PlayerStanding(int(player["t"]), int(player["s"]), int(player["l"]))


def _stored(raw: dict[str, Any]) -> StoredAnswer:
    if "v" not in raw:
        # Judged by a process from before question kinds, during a rolling upgrade: a single choice.
        old = {"v": encode_value(ChoiceAnswer(int(raw["c"]))), "cr": "1" if raw["ok"] else "0", "k": [str(raw["c"])]}
        raw = {**raw, **old}
    return StoredAnswer(
        value=decode_value(raw["v"]),
        correct=bool(raw["ok"]),
        points=int(raw["p"]),
        bonus=int(raw["b"]),
        response_ms=int(raw["rt"]),
        received_ms=int(raw["rcv"]),
        standing=PlayerStanding(int(raw["t"]), int(raw["s"]), int(raw["l"])),
        credit=parse_credit(raw["cr"]),
        # cjson writes an empty list back as an empty object.
        tally=tuple(raw["k"] or ()),
    )


def _encode_stored(a: StoredAnswer) -> bytes:
    return orjson.dumps(
        {
            "v": encode_value(a.value),
            "cr": str(a.credit),
            "k": a.tally,
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
    def __init__(self, redis: RedisClient, replica_acks: ReplicaAcks = NO_REPLICAS) -> None:
        self._redis = redis
        self._acks = replica_acks
        self.waits_for_replicas = replica_acks.replicas > 0
        self._replace_state = redis.register_script(_script("replace_state.lua"))
        self._effects_done = redis.register_script(_script("effects_done.lua"))
        self._add_player = redis.register_script(_script("add_player.lua"))
        self._remove_player = redis.register_script(_script("remove_player.lua"))
        self._erase_player = redis.register_script(_script("erase_player.lua"))
        self._claim = redis.register_script(_script("claim_answers.lua"))
        self._record = redis.register_script(_script("record_verdicts.lua"))
        self._settle = redis.register_script(_script("settle_answers.lua"))
        self._recover = redis.register_script(_script("recover_answers.lua"))
        self._restore = redis.register_script(_script("restore.lua"))
        self._marks_waiting: list[tuple[list[ScriptCall], asyncio.Future[None]]] = []
        self._marks_timer: asyncio.TimerHandle | None = None
        # The event loop keeps only weak references to tasks: these are held until they finish.
        self._marks_sent_alone: set[asyncio.Task[list[Any]]] = set()

    async def create(self, state: GameState) -> None:
        fields: dict[Any, Any] = {**_state_fields(state), "count": state.participant_count}
        await self._redis.hset(f"{_prefix(state.quiz_id)}:state", mapping=fields)

    async def state(self, quiz_id: str) -> GameState | None:
        live = await self.live(quiz_id)
        return live.state if live else None

    async def live(self, quiz_id: str) -> LiveState | None:
        values: Any = await self._redis.hmget(f"{_prefix(quiz_id)}:state", _STATE_FIELDS)
        if values[0] is None:
            return None
        phase, idx, qc, opened, closes, visible, count, version, owed, closed = values
        state = GameState(
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
        owes = owed is not None and int(owed) == state.version
        return LiveState(state, owes, int(closed) if owes and closed is not None else -1)

    async def replace_state(self, expected: GameState, new: GameState, closed_question: int = -1) -> bool:
        flat: list[str | int] = [expected.version]
        for name, value in {**_state_fields(new), "fx": new.version, "fxr": closed_question}.items():
            flat += [name, value]
        [done] = await self._run_per_quiz(self._replace_state, [(_prefix(new.quiz_id), flat)])
        return bool(done)

    async def effects_done(self, quiz_id: str, version: int) -> None:
        await self._run_per_quiz(self._effects_done, [(_prefix(quiz_id), [version])])

    async def add_player(self, quiz_id: str, player_id: str, nickname: str) -> GameState | None:
        record = orjson.dumps({"n": nickname, "t": 0, "s": 0, "l": -1, "a": 1, "k": 0})
        [result] = await self._run_per_quiz(
            self._add_player, [(_prefix(quiz_id), [player_id, record, nickname.casefold()])]
        )
        if int(result) <= 0:
            return None
        return await self.state(quiz_id)

    async def remove_player(self, quiz_id: str, player_id: str, *, kicked: bool) -> bool:
        record = await self.player(quiz_id, player_id)
        if record is None:
            return False
        [done] = await self._run_per_quiz(
            self._remove_player, [(_prefix(quiz_id), [player_id, int(kicked), record.nickname.casefold()])]
        )
        return bool(done)

    async def player(self, quiz_id: str, player_id: str) -> PlayerRecord | None:
        raw: Any = await self._redis.hget(f"{_prefix(quiz_id)}:players", player_id)
        if raw is None:
            return None
        p = orjson.loads(raw)
        return PlayerRecord(player_id, p["n"], _standing(p), bool(p["a"]), bool(p["k"]))

    async def erase_player(self, quiz_id: str, player_id: str, nickname: str) -> bool:
        try:
            record = await self.player(quiz_id, player_id)
            if record is None or record.nickname == nickname:
                return False
            # The folded name is computed here: Lua's lower() is not Python's casefold().
            [done] = await self._run_per_quiz(
                self._erase_player, [(_prefix(quiz_id), [player_id, nickname, record.nickname.casefold()])]
            )
        except (RedisError, OSError) as exc:
            raise Unavailable(f"Redis: {exc!r}") from exc
        return bool(done)

    async def claim_answers(self, claims: Sequence[AnswerClaim], claimant: Claimant) -> list[ClaimOutcome]:
        by_quiz: dict[str, list[int]] = defaultdict(list)
        for position, claim in enumerate(claims):
            by_quiz[claim.quiz_id].append(position)
        outcomes: list[ClaimOutcome | None] = [None] * len(claims)
        calls: list[tuple[str, list[str | int]]] = []
        for quiz_id, positions in by_quiz.items():
            args = _claimant_args(claimant)
            args.append(len(positions))
            for position in positions:
                c = claims[position]
                args += [
                    c.question_index,
                    c.player_id,
                    encode_value(c.value),
                    c.received_ms,
                    c.now_ms,
                    c.lease_until_ms,
                ]
            calls.append((_prefix(quiz_id), args))
        if self.waits_for_replicas:
            replies = await self._run_confirmed(self._claim, calls)
        else:
            replies = await self._with_waiting_marks([(self._claim, [prefix], args) for prefix, args in calls])
        unconfirmed: list[AnswerKey] = []
        for positions, reply in zip(by_quiz.values(), replies, strict=True):
            if isinstance(reply, Unconfirmed):
                for position in positions:
                    outcomes[position] = AnswerRefusal.UNAVAILABLE
                    unconfirmed.append(_key(claims[position]))
                continue
            for position, result in zip(positions, orjson.loads(reply), strict=True):
                outcomes[position] = _claim_outcome(result)
        await self._give_up(unconfirmed, claimant.instance_id)
        return [o for o in outcomes if o is not None]

    async def _give_up(self, keys: Sequence[AnswerKey], instance_id: str) -> None:
        """Releases reservations whose step replicas did not confirm, so the players' retries take them
        over at once. If this fails too, their lease runs out (a backstop) and the retries take them then."""
        if not keys:
            return
        log.warning("%d answers' Redis writes not confirmed by replicas in time; released for a retry", len(keys))
        try:
            await self.release(keys, instance_id)
        except (RedisError, OSError) as exc:
            log.warning("could not release them; they are free once their lease runs out: %r", exc)

    async def record_verdicts(self, verdicts: Sequence[tuple[AnswerKey, StoredAnswer]], instance_id: str) -> list[bool]:
        by_quiz: dict[str, list[int]] = defaultdict(list)
        for position, (key, _) in enumerate(verdicts):
            by_quiz[key.quiz_id].append(position)
        calls: list[tuple[str, list[str | int | bytes]]] = []
        for quiz_id, positions in by_quiz.items():
            args: list[str | int | bytes] = [instance_id, len(positions)]
            for position in positions:
                key, answer = verdicts[position]
                args += [key.question_index, key.player_id, _encode_stored(answer)]
            calls.append((_prefix(quiz_id), args))
        written = [False] * len(verdicts)
        unconfirmed: list[AnswerKey] = []
        for positions, reply in zip(by_quiz.values(), await self._run_confirmed(self._record, calls), strict=True):
            if isinstance(reply, Unconfirmed):
                unconfirmed += [verdicts[position][0] for position in positions]
                continue
            for position, done in zip(positions, orjson.loads(reply), strict=True):
                written[position] = bool(done)
        await self._give_up(unconfirmed, instance_id)
        return written

    async def _settle_keys(
        self, keys: Sequence[AnswerKey], mode: str, instance_id: str, run: _ScriptRunner
    ) -> set[AnswerKey]:
        """Settles the keys; returns those whose settlement `run` confirmed."""
        grouped = _by_quiz(keys)
        replies = await run(self._settle, _settle_calls(grouped, mode, instance_id))
        return {
            key
            for group, reply in zip(grouped.values(), replies, strict=True)
            if not isinstance(reply, Unconfirmed)
            for key in group
        }

    async def _with_waiting_marks(self, calls: Sequence[ScriptCall]) -> list[Any]:
        """Runs `calls` in one pipeline after the acknowledgement marks waiting for a ride (first: a repeat
        of an answer just marked is then already_answered); returns their replies, raising their first error."""
        waiting = self._take_waiting_marks()
        if not waiting and not calls:
            return []
        marks = [call for group, _ in waiting for call in group]
        try:
            replies = await run_scripts(self._redis, [*marks, *calls])
        except asyncio.CancelledError:
            # The claim's caller went away; whether the marks were written is unknown, and writing one
            # twice does no harm: they wait for the next ride.
            self._wait_for_a_ride(waiting)
            raise
        except Exception as exc:
            for _, written in waiting:
                _settle_future(written, exc)
            raise
        position = 0
        for group, written in waiting:
            failed = [r for r in replies[position : position + len(group)] if isinstance(r, Exception)]
            _settle_future(written, failed[0] if failed else None)
            position += len(group)
        own = replies[position:]
        for reply in own:
            if isinstance(reply, Exception):
                raise reply
        return own

    def _wait_for_a_ride(self, marks: list[tuple[list[ScriptCall], asyncio.Future[None]]]) -> None:
        self._marks_waiting[:0] = marks
        if self._marks_timer is None:
            self._marks_timer = asyncio.get_running_loop().call_later(MARKS_RIDE_WAIT_S, self._send_marks_alone)

    def _take_waiting_marks(self) -> list[tuple[list[ScriptCall], asyncio.Future[None]]]:
        if self._marks_timer is not None:
            self._marks_timer.cancel()
            self._marks_timer = None
        waiting, self._marks_waiting = self._marks_waiting, []
        return waiting

    def _send_marks_alone(self) -> None:
        self._marks_timer = None
        task = asyncio.create_task(self._with_waiting_marks([]), name="acknowledgement-marks-alone")
        self._marks_sent_alone.add(task)
        task.add_done_callback(self._sent_alone)

    def _sent_alone(self, task: asyncio.Task[list[Any]]) -> None:
        self._marks_sent_alone.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved here: the marks' writers hear of a failure through their futures

    async def _run_per_quiz(self, script: AsyncScript, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Runs `script` once per (quiz key prefix, args), all in one pipeline (one per cluster node)."""
        return await run_script_per_key(self._redis, script, [([prefix], args) for prefix, args in calls])

    async def _run_confirmed(self, script: AsyncScript, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """As _run_per_quiz; with replicas to wait for, each node's calls are followed by WAIT, and a call
        whose writes they did not confirm in time comes back as an Unconfirmed (it may have run)."""
        if not self.waits_for_replicas:
            return await self._run_per_quiz(script, calls)
        return await run_script_confirmed(self._redis, script, [([prefix], args) for prefix, args in calls], self._acks)

    async def acknowledge(self, keys: Sequence[AnswerKey]) -> set[AnswerKey]:
        if self.waits_for_replicas:
            return await self._settle_keys(keys, "ack", "", self._run_confirmed)
        if not keys:
            return set()
        written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        calls = _settle_calls(_by_quiz(keys), "ack", "")
        self._wait_for_a_ride([([(self._settle, [prefix], args) for prefix, args in calls], written)])
        await written
        return set(keys)

    async def release(self, keys: Sequence[AnswerKey], instance_id: str) -> None:
        await self._settle_keys(keys, "release", instance_id, self._run_per_quiz)

    async def recover_answers(
        self, quiz_ids: Sequence[str], claimant: Claimant, now_ms: int, lease_until_ms: int
    ) -> list[tuple[AnswerKey, StoredAnswer]]:
        if not quiz_ids:
            return []
        live = sorted(claimant.live)
        args = [claimant.instance_id, now_ms, lease_until_ms, len(live), *live]
        replies = await self._run_confirmed(self._recover, [(_prefix(quiz_id), args) for quiz_id in quiz_ids])
        if any(isinstance(reply, Unconfirmed) for reply in replies):
            # What was taken over stays so until its lease runs out; the recovery comes back to it.
            raise Unavailable("Redis replicas did not confirm the recovery's takeover in time")
        taken: list[tuple[AnswerKey, StoredAnswer]] = []
        for quiz_id, reply in zip(quiz_ids, replies, strict=True):
            # cjson encodes an empty list as an object.
            for idx, player_id, raw in orjson.loads(reply) or []:
                taken.append((AnswerKey(quiz_id, int(idx), player_id), _stored(orjson.loads(raw))))
        return taken

    async def answer(self, key: AnswerKey) -> StoredAnswer | None:
        raw: Any = await self._redis.hget(f"{_prefix(key.quiz_id)}:a:{key.question_index}", key.player_id)
        if raw is None:
            return None
        held = orjson.loads(raw)
        return _stored(held) if "p" in held else None

    async def tallies(self, quiz_id: str, question_index: int) -> dict[str, int]:
        raw: Any = await self._redis.hgetall(f"{_prefix(quiz_id)}:c:{question_index}")
        return {key.decode(): int(count) for key, count in raw.items()}

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
            args += ["A", key.question_index, key.player_id, orjson.dumps(held), len(answer.tally), *answer.tally]
        [done] = await self._run_per_quiz(self._restore, [(_prefix(state.quiz_id), args)])
        return bool(done)

    async def close(self) -> None:
        if self._marks_waiting:
            await self._with_waiting_marks([])


_ScriptRunner = Callable[[AsyncScript, Sequence[tuple[str, Sequence[Any]]]], Awaitable[list[Any]]]


def _settle_future(written: asyncio.Future[None], error: BaseException | None) -> None:
    """Tells a mark's writer how its write went, unless it stopped waiting (its task was cancelled)."""
    if written.done():
        return
    if error is None:
        written.set_result(None)
    else:
        written.set_exception(error)


def _by_quiz(keys: Sequence[AnswerKey]) -> dict[str, list[AnswerKey]]:
    grouped: dict[str, list[AnswerKey]] = defaultdict(list)
    for key in keys:
        grouped[key.quiz_id].append(key)
    return grouped


def _settle_calls(
    grouped: dict[str, list[AnswerKey]], mode: str, instance_id: str
) -> list[tuple[str, list[str | int]]]:
    """settle_answers.lua's calls, one per quiz."""
    return [
        (
            _prefix(quiz_id),
            [mode, instance_id, *(part for key in group for part in (key.question_index, key.player_id))],
        )
        for quiz_id, group in grouped.items()
    ]


def _key(claim: AnswerClaim) -> AnswerKey:
    return AnswerKey(claim.quiz_id, claim.question_index, claim.player_id)


def _claimant_args(claimant: Claimant) -> list[str | int]:
    return [claimant.instance_id, len(claimant.live), *sorted(claimant.live)]


def _claim_outcome(result: list[Any]) -> ClaimOutcome:
    kind = result[0]
    if kind == "fresh":
        return Fresh(_standing(orjson.loads(result[1])), int(result[2]), int(result[3]))
    if kind == "replay":
        return Replay(_stored(orjson.loads(result[1])))
    return AnswerRefusal(kind)
