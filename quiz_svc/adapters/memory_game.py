"""The game store in process memory, for the embedded mode and unit tests.

Single process, single event loop: each method runs without awaiting in between, which makes it as
atomic as the Redis engine's scripts.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from quiz_svc.domain import (
    AnswerRefusal,
    GameState,
    PlayerStanding,
    answer_window_refusal,
    receipt_after_open,
)
from quiz_svc.kinds import AnswerValue
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


@dataclass
class _Reservation:
    """An answer reserved by `owner` (see claim_answers.lua for the life of a reservation)."""

    value: AnswerValue
    received_ms: int
    owner: str
    lease_until_ms: int
    acknowledged: bool = False
    judged: StoredAnswer | None = None

    def abandoned(self, live: frozenset[str], now_ms: int) -> bool:
        return self.owner not in live or self.lease_until_ms <= now_ms


@dataclass
class _Game:
    state: GameState
    players: dict[str, PlayerRecord] = field(default_factory=dict)
    nicknames: dict[str, str] = field(default_factory=dict)
    answers: dict[tuple[int, str], _Reservation] = field(default_factory=dict)
    pending: set[tuple[int, str]] = field(default_factory=set)
    tallies: dict[int, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    owed_version: int | None = None  # the version whose transition's effects are owed, if any
    owed_closed_question: int = -1


class InMemoryGameStore:
    # One process's memory: nothing to replicate, and nothing a failover could forget.
    waits_for_replicas = False

    def __init__(self) -> None:
        self._games: dict[str, _Game] = {}
        self._deadlines: dict[str, int] = {}

    async def create(self, state: GameState) -> None:
        self._games[state.quiz_id] = _Game(state)

    async def state(self, quiz_id: str) -> GameState | None:
        game = self._games.get(quiz_id)
        return game.state if game else None

    async def live(self, quiz_id: str) -> LiveState | None:
        game = self._games.get(quiz_id)
        if game is None:
            return None
        owes = game.owed_version == game.state.version
        return LiveState(game.state, owes, game.owed_closed_question if owes else -1)

    async def replace_state(self, expected: GameState, new: GameState, closed_question: int = -1) -> bool:
        game = self._games.get(expected.quiz_id)
        if game is None or game.state.version != expected.version:
            return False
        game.state = dataclasses.replace(new, participant_count=game.state.participant_count)
        game.owed_version, game.owed_closed_question = new.version, closed_question
        return True

    async def effects_done(self, quiz_id: str, version: int) -> None:
        game = self._games.get(quiz_id)
        if game is not None and game.owed_version == version:
            game.owed_version = None

    async def add_player(self, quiz_id: str, player_id: str, nickname: str) -> GameState | None:
        game = self._games[quiz_id]
        folded = nickname.casefold()
        if folded in game.nicknames or player_id in game.players:
            return None
        game.nicknames[folded] = player_id
        game.players[player_id] = PlayerRecord(player_id, nickname, PlayerStanding(0, 0, -1), True, False)
        game.state = dataclasses.replace(game.state, participant_count=game.state.participant_count + 1)
        return game.state

    async def remove_player(self, quiz_id: str, player_id: str, *, kicked: bool) -> bool:
        game = self._games.get(quiz_id)
        record = game.players.get(player_id) if game else None
        if game is None or record is None or not record.active:
            return False
        game.players[player_id] = dataclasses.replace(record, active=False, kicked=kicked)
        game.nicknames.pop(record.nickname.casefold(), None)
        game.state = dataclasses.replace(game.state, participant_count=game.state.participant_count - 1)
        return True

    async def player(self, quiz_id: str, player_id: str) -> PlayerRecord | None:
        game = self._games.get(quiz_id)
        return game.players.get(player_id) if game else None

    async def erase_player(self, quiz_id: str, player_id: str, nickname: str) -> bool:
        game = self._games.get(quiz_id)
        record = game.players.get(player_id) if game else None
        if game is None or record is None or record.nickname == nickname:
            return False
        game.players[player_id] = dataclasses.replace(record, nickname=nickname)
        folded = record.nickname.casefold()
        if game.nicknames.get(folded) == player_id:
            del game.nicknames[folded]
        return True

    async def claim_answers(self, claims: Sequence[AnswerClaim], claimant: Claimant) -> list[ClaimOutcome]:
        return [self._claim(c, claimant) for c in claims]

    def _claim(self, claim: AnswerClaim, claimant: Claimant) -> ClaimOutcome:
        game = self._games.get(claim.quiz_id)
        if game is None:
            return AnswerRefusal.QUIZ_NOT_FOUND
        record = game.players.get(claim.player_id)
        if record is None or not record.active:
            return AnswerRefusal.NOT_A_PARTICIPANT
        slot = (claim.question_index, claim.player_id)
        held = game.answers.get(slot)
        if held is not None:
            if held.acknowledged:
                return AnswerRefusal.ALREADY_ANSWERED
            if not held.abandoned(claimant.live, claim.now_ms):
                return AnswerRefusal.UNAVAILABLE
            if held.judged is None:
                refusal = answer_window_refusal(game.state, claim.question_index, held.received_ms)
                if refusal is not None:
                    return refusal
            held.owner, held.lease_until_ms = claimant.instance_id, claim.lease_until_ms
            game.pending.add(slot)
            if held.judged is not None:
                return Replay(held.judged)
            return Fresh(record.standing, game.state.open_ms, held.received_ms)
        received = claim.received_ms
        if claim.question_index == game.state.question_index:
            received = receipt_after_open(received, game.state.open_ms, claim.now_ms)
        refusal = answer_window_refusal(game.state, claim.question_index, received)
        if refusal is not None:
            return refusal
        game.answers[slot] = _Reservation(claim.value, received, claimant.instance_id, claim.lease_until_ms)
        game.pending.add(slot)
        return Fresh(record.standing, game.state.open_ms, received)

    async def record_verdicts(self, verdicts: Sequence[tuple[AnswerKey, StoredAnswer]], instance_id: str) -> list[bool]:
        written = []
        for key, answer in verdicts:
            game = self._games[key.quiz_id]
            held = game.answers.get((key.question_index, key.player_id))
            if held is None or held.owner != instance_id or held.acknowledged or held.judged is not None:
                written.append(False)
                continue
            held.judged, held.value = answer, answer.value
            record = game.players[key.player_id]
            game.players[key.player_id] = dataclasses.replace(record, standing=answer.standing)
            game.tallies[key.question_index].update(answer.tally)
            written.append(True)
        return written

    async def acknowledge(self, keys: Sequence[AnswerKey]) -> set[AnswerKey]:
        for key in keys:
            game = self._games[key.quiz_id]
            slot = (key.question_index, key.player_id)
            held = game.answers[slot]
            held.acknowledged, held.lease_until_ms = True, 0
            game.pending.discard(slot)
        return set(keys)

    async def release(self, keys: Sequence[AnswerKey], instance_id: str) -> None:
        for key in keys:
            game = self._games[key.quiz_id]
            slot = (key.question_index, key.player_id)
            held = game.answers.get(slot)
            if held is None or held.owner != instance_id or held.acknowledged:
                continue
            held.owner, held.lease_until_ms = "", 0
            if held.judged is None:
                game.pending.discard(slot)

    async def recover_answers(
        self, quiz_ids: Sequence[str], claimant: Claimant, now_ms: int, lease_until_ms: int
    ) -> list[tuple[AnswerKey, StoredAnswer]]:
        taken = []
        for quiz_id in quiz_ids:
            game = self._games.get(quiz_id)
            if game is None:
                continue
            for slot in sorted(game.pending):
                held = game.answers[slot]
                if held.acknowledged:
                    game.pending.discard(slot)
                elif held.abandoned(claimant.live, now_ms):
                    if held.judged is None:
                        held.owner, held.lease_until_ms = "", 0
                        game.pending.discard(slot)
                    else:
                        held.owner, held.lease_until_ms = claimant.instance_id, lease_until_ms
                        taken.append((AnswerKey(quiz_id, *slot), held.judged))
        return taken

    async def answer(self, key: AnswerKey) -> StoredAnswer | None:
        game = self._games.get(key.quiz_id)
        held = game.answers.get((key.question_index, key.player_id)) if game else None
        return held.judged if held else None

    async def tallies(self, quiz_id: str, question_index: int) -> dict[str, int]:
        return dict(self._games[quiz_id].tallies.get(question_index, {}))

    async def schedule_close(self, quiz_id: str, close_ms: int) -> None:
        self._deadlines[quiz_id] = close_ms

    async def due_closes(self, now_ms: int, limit: int) -> list[str]:
        due = sorted((ms, q) for q, ms in self._deadlines.items() if ms <= now_ms)
        return [q for _, q in due[:limit]]

    async def unschedule_close(self, quiz_id: str) -> None:
        self._deadlines.pop(quiz_id, None)

    async def restore(
        self, state: GameState, players: Sequence[PlayerRecord], answers: Sequence[tuple[AnswerKey, StoredAnswer]]
    ) -> bool:
        if state.quiz_id in self._games:
            return False
        game = self._games[state.quiz_id] = _Game(state)
        for p in players:
            game.players[p.player_id] = p
            if p.active:
                game.nicknames[p.nickname.casefold()] = p.player_id
        for key, answer in answers:
            game.answers[(key.question_index, key.player_id)] = _Reservation(
                answer.value, answer.received_ms, "", 0, acknowledged=True, judged=answer
            )
            game.tallies[key.question_index].update(answer.tally)
        return True

    async def close(self) -> None:
        return None
