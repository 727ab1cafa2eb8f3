"""Ranking rules: how players are ordered, how events move a player's standing, when to publish.

Pure: no I/O, no clocks read here (callers pass the time in), no transport or driver imports.
The Redis adapter's Lua script restates `after_join` and `after_answer` (atomic per batch);
tests/leaderboard_svc/test_ranking_rule_table.py runs one table of cases through both.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

# The composite score packs (score, reached) into one Redis zset score, a double: the score in the
# high bits, the inverted reached time (milliseconds since the quiz's creation) in the low 32 bits,
# about 49.7 days. Millisecond resolution keeps apart players who reach a score one after another,
# each waiting for the server's reply (a join or an answer is a round trip of several milliseconds).
# A quiz scores at most 500 questions x (2000 points + 500 streak bonus) = 1,250,000 points, below
# 2**21: the composite stays below 2**53, where doubles are exact.
REACHED_SLOTS = 2**32
MAX_REACHED_MS = REACHED_SLOTS - 1
NOT_ANSWERED = -1  # last_question of a player who has only joined


def composite(score: int, reached_ms: int) -> int:
    """The zset score: higher for a higher score, then for reaching it earlier (to the millisecond).

    A time outside the window is clamped, so late ties fall back to the player ID instead of wrapping."""
    reached = min(max(reached_ms, 0), MAX_REACHED_MS)
    return score * REACHED_SLOTS + (MAX_REACHED_MS - reached)


def score_of(composite_score: int) -> int:
    return composite_score // REACHED_SLOTS


@dataclass(frozen=True)
class Standing:
    """One player's position-determining state."""

    player_id: str
    nickname: str
    score: int
    # When the score was reached, in ms since the quiz's creation on the server's clock: when quiz_svc
    # received the answer that last changed it, or, for 0, when the player joined.
    reached_ms: int
    last_question: int = NOT_ANSWERED  # highest question index applied; guards redeliveries


def rank_key(standing: Standing) -> tuple[int, str]:
    """Sorted descending, this is the ranking order; the player ID breaks composite ties last, descending,
    as ZREVRANGE orders equal scores (by member bytes, which UTF-8 keeps in code point order)."""
    return composite(standing.score, standing.reached_ms), standing.player_id


def rank(standings: Iterable[Standing]) -> list[Standing]:
    """Players in rank order: score desc, then who reached it first, then player ID desc."""
    return sorted(standings, key=rank_key, reverse=True)


@dataclass(frozen=True)
class PlayerJoined:
    quiz_id: str
    player_id: str
    nickname: str
    quiz_elapsed_ms: int


@dataclass(frozen=True)
class AnswerScored:
    quiz_id: str
    player_id: str
    question_index: int
    total_score: int  # absolute, after this answer
    quiz_elapsed_ms: int
    answer_time_ms: int  # server wall-clock time of the answer


@dataclass(frozen=True)
class PlayerLeft:
    quiz_id: str
    player_id: str


@dataclass(frozen=True)
class PlayerErased:
    """The player's user asked for their data to be deleted (persistence_svc's DeleteUserData): the player
    keeps their place under `replacement`, which no later event replaces."""

    quiz_id: str
    player_id: str
    replacement: str


RankingEvent = PlayerJoined | AnswerScored | PlayerLeft | PlayerErased


def after_join(current: Standing | None, joined: PlayerJoined, has_left: bool) -> Standing | None:
    """The standing after a join, or None when it changes nothing.

    Joins and answers travel on different topics, so an answer may be applied before its join: the
    join then fills in the nickname and, while the score is 0, when it was reached (at the join, not at
    the zero-point answer). A player who left is never re-added.
    """
    if has_left:
        return None
    if current is None:
        return Standing(joined.player_id, joined.nickname, 0, joined.quiz_elapsed_ms)
    nickname = current.nickname or joined.nickname
    reached_ms = joined.quiz_elapsed_ms if current.score == 0 else current.reached_ms
    if (nickname, reached_ms) == (current.nickname, current.reached_ms):
        return None
    return Standing(current.player_id, nickname, current.score, reached_ms, current.last_question)


def after_answer(current: Standing | None, answer: AnswerScored, has_left: bool) -> Standing | None:
    """The standing after an answer, or None when it changes nothing (a redelivery, or a player gone)."""
    if has_left:
        return None
    if current is None:
        return Standing(answer.player_id, "", answer.total_score, answer.quiz_elapsed_ms, answer.question_index)
    if answer.question_index <= current.last_question:
        return None
    # A zero-point answer leaves the score, and with it the moment it was reached, as it was.
    reached_ms = answer.quiz_elapsed_ms if answer.total_score != current.score else current.reached_ms
    return Standing(current.player_id, current.nickname, answer.total_score, reached_ms, answer.question_index)


def after_erase(current: Standing | None, erased: PlayerErased, has_left: bool, ranking_held: bool) -> Standing | None:
    """The standing after an erasure, or None when it changes nothing.

    Score, time and rank stay, so finished rankings stay consistent; only the name changes, and
    `after_join` never replaces a name already set. A player whose join is not applied yet (the
    projector lags behind persistence_svc) is held at 0 under the replacement, as an answer before
    its join is, so the join dates them and keeps the name. A ranking not held (expired, or lost with
    Redis) is not recreated: its rebuild reads the already anonymised history. A player who left is
    in no ranking.
    """
    if has_left:
        return None
    if current is None:
        return Standing(erased.player_id, erased.replacement, 0, MAX_REACHED_MS) if ranking_held else None
    if current.nickname == erased.replacement:
        return None
    return Standing(current.player_id, erased.replacement, current.score, current.reached_ms, current.last_question)


@dataclass(frozen=True)
class RankedEntry:
    player_id: str
    nickname: str
    score: int
    rank: int  # one-based


@dataclass(frozen=True)
class RankingSnapshot:
    """A quiz's whole ranking under one version."""

    quiz_id: str
    version: int
    entries: list[RankedEntry]
    last_answer_ms: int  # 0 when no answer was applied yet


@dataclass(frozen=True)
class LeaderboardPage:
    """The top of a ranking and, optionally, one player's standing in it."""

    top: list[RankedEntry]
    player: RankedEntry | None
    player_count: int
    version: int


def ranked(standings: Iterable[Standing], first_rank: int = 1) -> list[RankedEntry]:
    return [
        RankedEntry(s.player_id, s.nickname, s.score, position)
        for position, s in enumerate(standings, start=first_rank)
    ]


@dataclass
class Coalescer:
    """Decides when each quiz's ranking is published: at most once per interval, and only after a change.

    A quiz is marked dirty when events for it were seen. `take_due` hands out the dirty quizzes not
    taken within the last interval, clearing their mark *before* their ranking is read: a change
    applied while a publication is in flight marks the quiz again rather than being lost, and a
    failed publication is put back with `failed`, to be retried an interval later. Only quizzes taken
    within the last interval are remembered, so an idle quiz costs nothing.
    """

    interval_ms: int
    _dirty: set[str] = field(default_factory=set)
    _taken_at: dict[str, int] = field(default_factory=dict)

    def mark(self, quiz_ids: Iterable[str]) -> None:
        self._dirty.update(quiz_ids)

    def take_due(self, now_ms: int) -> list[str]:
        for quiz_id, taken_at in list(self._taken_at.items()):
            if now_ms - taken_at >= self.interval_ms:
                del self._taken_at[quiz_id]
        due = [q for q in self._dirty if q not in self._taken_at]
        self._dirty.difference_update(due)
        for quiz_id in due:
            self._taken_at[quiz_id] = now_ms
        return due

    def take_all(self) -> list[str]:
        """Every dirty quiz regardless of the interval: the final flush at shutdown."""
        due = list(self._dirty)
        self._dirty.clear()
        return due

    def failed(self, quiz_ids: Iterable[str]) -> None:
        """The publication did not happen; the quizzes are due again once their interval passed."""
        self._dirty.update(quiz_ids)
