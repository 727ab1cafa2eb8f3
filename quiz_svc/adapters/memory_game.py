"""The game store in process memory, for the embedded mode and unit tests.

Single process, single event loop: each method runs without awaiting in between, which makes it as
atomic as the Redis engine's scripts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from quiz_svc.domain import AnswerRefusal, GameState, PlayerStanding, answer_window_refusal
from quiz_svc.ports import (
    AnswerClaim,
    AnswerKey,
    ClaimOutcome,
    Fresh,
    PlayerRecord,
    Replay,
    StoredAnswer,
)


@dataclass
class _Reservation:
    choice: int
    received_ms: int
    lease_until_ms: int
    acknowledged: bool = False
    judged: StoredAnswer | None = None


@dataclass
class _Game:
    state: GameState
    players: dict[str, PlayerRecord] = field(default_factory=dict)
    nicknames: dict[str, str] = field(default_factory=dict)
    answers: dict[tuple[int, str], _Reservation] = field(default_factory=dict)
    counts: dict[tuple[int, int], int] = field(default_factory=dict)


class InMemoryGameStore:
    def __init__(self) -> None:
        self._games: dict[str, _Game] = {}
        self._deadlines: dict[str, int] = {}

    async def create(self, state: GameState) -> None:
        self._games[state.quiz_id] = _Game(state)

    async def state(self, quiz_id: str) -> GameState | None:
        game = self._games.get(quiz_id)
        return game.state if game else None

    async def replace_state(self, expected: GameState, new: GameState) -> bool:
        game = self._games.get(expected.quiz_id)
        if game is None or game.state.version != expected.version:
            return False
        game.state = dataclasses.replace(new, participant_count=game.state.participant_count)
        return True

    async def add_player(self, quiz_id: str, player_id: str, nickname: str) -> GameState | None:
        game = self._games[quiz_id]
        folded = nickname.casefold()
        if folded in game.nicknames:
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

    async def claim_answers(self, claims: Sequence[AnswerClaim]) -> list[ClaimOutcome]:
        return [self._claim(c) for c in claims]

    def _claim(self, claim: AnswerClaim) -> ClaimOutcome:
        game = self._games.get(claim.quiz_id)
        if game is None:
            return AnswerRefusal.QUIZ_NOT_FOUND
        record = game.players.get(claim.player_id)
        if record is None or not record.active:
            return AnswerRefusal.NOT_A_PARTICIPANT
        slot = (claim.question_index, claim.player_id)
        held = game.answers.get(slot)
        if held is not None:
            if held.acknowledged or held.lease_until_ms > claim.received_ms:
                return AnswerRefusal.ALREADY_ANSWERED
            held.lease_until_ms = claim.lease_until_ms
            if held.judged is not None:
                return Replay(held.judged)
            return Fresh(record.standing, game.state.open_ms, held.received_ms)
        refusal = answer_window_refusal(game.state, claim.question_index, claim.received_ms)
        if refusal is not None:
            return refusal
        game.answers[slot] = _Reservation(claim.choice, claim.received_ms, claim.lease_until_ms)
        return Fresh(record.standing, game.state.open_ms, claim.received_ms)

    async def record_verdicts(self, verdicts: Sequence[tuple[AnswerKey, StoredAnswer]]) -> None:
        for key, answer in verdicts:
            game = self._games[key.quiz_id]
            game.answers[(key.question_index, key.player_id)].judged = answer
            record = game.players[key.player_id]
            game.players[key.player_id] = dataclasses.replace(record, standing=answer.standing)
            count_key = (key.question_index, answer.choice)
            game.counts[count_key] = game.counts.get(count_key, 0) + 1

    async def acknowledge(self, keys: Sequence[AnswerKey]) -> None:
        for key in keys:
            held = self._games[key.quiz_id].answers[(key.question_index, key.player_id)]
            held.acknowledged = True

    async def release(self, keys: Sequence[AnswerKey]) -> None:
        for key in keys:
            held = self._games[key.quiz_id].answers.get((key.question_index, key.player_id))
            if held is not None:
                held.lease_until_ms = 0

    async def answer(self, key: AnswerKey) -> StoredAnswer | None:
        game = self._games.get(key.quiz_id)
        held = game.answers.get((key.question_index, key.player_id)) if game else None
        return held.judged if held else None

    async def choice_counts(self, quiz_id: str, question_index: int, choices: int) -> list[int]:
        game = self._games[quiz_id]
        return [game.counts.get((question_index, c), 0) for c in range(choices)]

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
                answer.choice, answer.received_ms, 0, acknowledged=True, judged=answer
            )
            count_key = (key.question_index, answer.choice)
            game.counts[count_key] = game.counts.get(count_key, 0) + 1
        return True

    async def close(self) -> None:
        return None
