"""What quiz_svc tells the rest of the platform happened: its domain events, as plain values.

The service layer makes them and hands them to the GameEvents port; at the service's edge
`messages.py` encodes them in the events contract (`protos/quizmesh/events/v1/events.proto`) and
`adapters/game_events.py` publishes them. A join and a
removal get a fresh event ID each time they are published (every sink applies them once per player);
an answer's ID is derived from (quiz, question, player) (`domain.answer_event_id`), so its republication
is recognised as the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from quiz_svc.kinds import AnswerValue


@dataclass(frozen=True, slots=True)
class PlayerJoined:
    quiz_id: str
    player_id: str
    nickname: str
    time_ms: int
    quiz_elapsed_ms: int  # since the quiz was created: the leaderboard ranks ties by it
    user_id: str = ""  # the signed-in user the player is; empty for an anonymous player


@dataclass(frozen=True, slots=True)
class PlayerLeft:
    quiz_id: str
    player_id: str
    time_ms: int
    kicked: bool  # the host removed them, rather than they left


@dataclass(frozen=True, slots=True)
class AnswerJudged:
    event_id: str
    quiz_id: str
    player_id: str
    question_index: int
    value: AnswerValue
    answer_text: str  # the answer in words, for the results export
    credit: Fraction
    correct: bool
    points: int
    total_score: int  # the player's total after this answer
    streak: int  # the player's streak after this answer
    response_ms: int
    received_ms: int  # when the platform received it: the time that scored it
    quiz_elapsed_ms: int
    time_ms: int  # when it was published


GameEvent = PlayerJoined | PlayerLeft | AnswerJudged
