"""A quiz's stored results as PersistenceService serves them: read page by page, and written as the CSV
a host downloads (the edge's `GET /quizzes/{quiz_id}/results.csv` and `quizctl export` write the same).

It lives in the runtime because the edge, quiz_svc and quizctl all read these results, and none of
them may import another.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar

from quizmesh.persistence.v1 import persistence_service_pb2 as persistence_pb2

COLUMNS: Final = (
    "quiz_id",
    "player_id",
    "nickname",
    "question_index",
    "choice",
    "correct",
    "points",
    "response_time_ms",
    "total_score",
    # Every kind's answer in words (the chosen choices' texts, the text as typed, the items in the
    # player's order, the number); last, so that readers of the columns before keep their positions.
    "answer",
)
PAGE_SIZE: Final = 1000
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection").
_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")

ListParticipants = Callable[
    [persistence_pb2.ListParticipantsRequest], Awaitable[persistence_pb2.ListParticipantsResponse]
]
ListAnswers = Callable[[persistence_pb2.ListAnswersRequest], Awaitable[persistence_pb2.ListAnswersResponse]]


@dataclass(frozen=True)
class StoredQuiz:
    """Everything persistence_svc holds of one quiz: its participants in join order and its answers."""

    participants: list[persistence_pb2.Participant]
    answers: list[persistence_pb2.StoredAnswer]


class _Page(Protocol):
    next_page_token: str


PageT = TypeVar("PageT", bound=_Page)
ItemT = TypeVar("ItemT")


async def _every_page(
    fetch: Callable[[str], Awaitable[PageT]], items: Callable[[PageT], Iterable[ItemT]]
) -> list[ItemT]:
    collected: list[ItemT] = []
    token = ""
    while True:
        page = await fetch(token)
        collected.extend(items(page))
        token = page.next_page_token
        if not token:
            return collected


async def read_stored_quiz(
    quiz_id: str,
    list_participants: ListParticipants,
    list_answers: ListAnswers,
    *,
    page_size: int = PAGE_SIZE,
    caught_up: bool = False,
) -> StoredQuiz:
    """Reads every page of a quiz's participants, then of its answers. `caught_up`: only once
    persistence_svc has stored every event Kafka holds of the quiz (what a rebuild needs; see the
    request's field of that name)."""
    participants = await _every_page(
        lambda token: list_participants(
            persistence_pb2.ListParticipantsRequest(
                quiz_id=quiz_id, page_size=page_size, page_token=token, caught_up=caught_up
            )
        ),
        lambda page: page.participants,
    )
    answers = await _every_page(
        lambda token: list_answers(
            persistence_pb2.ListAnswersRequest(
                quiz_id=quiz_id, page_size=page_size, page_token=token, caught_up=caught_up
            )
        ),
        lambda page: page.answers,
    )
    return StoredQuiz(participants, answers)


def _as_text(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def results_csv(
    quiz_id: str,
    questions_asked: int,
    participants: Sequence[persistence_pb2.Participant],
    answers: Sequence[persistence_pb2.StoredAnswer],
) -> str:
    """One row per player per question asked so far, players in join order. A question a player did not
    answer has an empty choice and answer, 0 points and the player's running total. `choice` is filled
    for single choice answers only."""
    nicknames = {participant.player_id: participant.nickname for participant in participants}
    for stored in answers:  # an answer stored before its player's join event is still reported
        nicknames.setdefault(stored.player_id, "")
    by_player_question = {(stored.player_id, stored.question_index): stored for stored in answers}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for player_id, nickname in nicknames.items():
        total = 0
        for index in range(questions_asked):
            answer = by_player_question.get((player_id, index))
            if answer is None:
                writer.writerow((quiz_id, player_id, _as_text(nickname), index, "", "", 0, "", total, ""))
                continue
            total = answer.total_score
            writer.writerow(
                (
                    quiz_id,
                    player_id,
                    _as_text(nickname),
                    index,
                    answer.choice if answer.value.WhichOneof("value") in (None, "choice") else "",
                    "true" if answer.correct else "false",
                    answer.points,
                    answer.response_time_ms,
                    answer.total_score,
                    _as_text(answer.answer_text),
                )
            )
    return out.getvalue()
