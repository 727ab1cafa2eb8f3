"""The results CSV a host downloads: one row per player per question, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io

import pytest

from quizmesh.persistence.v1 import persistence_service_pb2 as persistence_pb2
from quizmesh.quiz.v1.answer_value_pb2 import AnswerValue, ChoiceSet
from quizmesh.results import COLUMNS, results_csv


def _participant(player_id: str, nickname: str) -> persistence_pb2.Participant:
    return persistence_pb2.Participant(quiz_id="Q1", player_id=player_id, nickname=nickname)


def _answer(player_id: str, index: int, choice: int, points: int, total: int) -> persistence_pb2.StoredAnswer:
    return persistence_pb2.StoredAnswer(
        quiz_id="Q1",
        question_index=index,
        player_id=player_id,
        choice=choice,
        correct=points > 0,
        points=points,
        response_time_ms=1500 + index,
        total_score=total,
        answer_text=f"choice {choice}",
    )


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_every_player_gets_a_row_per_question_asked_with_a_running_total() -> None:
    participants = [_participant("p-ada", "Ada"), _participant("p-bob", "Bob")]
    answers = [_answer("p-bob", 0, 1, 900, 900), _answer("p-ada", 1, 0, 950, 950), _answer("p-bob", 1, 1, 0, 900)]

    rows = _rows(results_csv("Q1", 2, participants, answers))

    assert rows == [
        list(COLUMNS),
        ["Q1", "p-ada", "Ada", "0", "", "", "0", "", "0", ""],
        ["Q1", "p-ada", "Ada", "1", "0", "true", "950", "1501", "950", "choice 0"],
        ["Q1", "p-bob", "Bob", "0", "1", "true", "900", "1500", "900", "choice 1"],
        ["Q1", "p-bob", "Bob", "1", "1", "false", "0", "1501", "900", "choice 1"],
    ]


def test_every_kind_fills_the_answer_column_readably_and_choice_only_for_a_single_choice() -> None:
    typed = persistence_pb2.StoredAnswer(
        quiz_id="Q1", player_id="p-ada", question_index=0, value=AnswerValue(text="=cmd"), answer_text="=cmd", points=0
    )
    picked = persistence_pb2.StoredAnswer(
        quiz_id="Q1",
        player_id="p-ada",
        question_index=1,
        value=AnswerValue(choices=ChoiceSet(choices=[0, 2])),
        answer_text="Paris; Lyon",
        correct=True,
        points=1000,
        total_score=1000,
    )
    rows = _rows(results_csv("Q1", 2, [_participant("p-ada", "Ada")], [typed, picked]))
    assert [(r[4], r[9]) for r in rows[1:]] == [("", "'=cmd"), ("", "Paris; Lyon")]


def test_questions_not_asked_yet_have_no_rows_and_unlisted_players_still_appear() -> None:
    # The answer's player has no stored join yet: the two arrive on different topics.
    rows = _rows(results_csv("Q1", 1, [], [_answer("p-cy", 0, 0, 800, 800)]))

    assert rows[1:] == [["Q1", "p-cy", "", "0", "0", "true", "800", "1500", "800", "choice 0"]]


@pytest.mark.parametrize("nickname", ["=1+1", "+SUM(A1)", "-2", "@cmd", "\tx"])
def test_a_nickname_a_spreadsheet_would_run_as_a_formula_is_kept_as_text(nickname: str) -> None:
    rows = _rows(results_csv("Q1", 1, [_participant("p-1", nickname)], []))

    assert rows[1][2] == "'" + nickname


def test_commas_quotes_and_markup_in_nicknames_survive_the_round_trip() -> None:
    nickname = 'Ada, "the" <b>first</b>'
    rows = _rows(results_csv("Q1", 1, [_participant("p-1", nickname)], []))

    assert rows[1][2] == nickname
