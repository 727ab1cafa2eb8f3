"""The names quizmesh's JSON faces (the WebSocket protocol, quizctl) give to QuizService's enums, kept
once so that the edge and quizctl speak the same words."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from quizmesh.quiz.v1 import quiz_service_pb2 as quiz_pb2

POINTS_MODES: Final[Mapping[str, quiz_pb2.PointsMode.ValueType]] = {
    "standard": quiz_pb2.POINTS_MODE_STANDARD,
    "double": quiz_pb2.POINTS_MODE_DOUBLE,
    "none": quiz_pb2.POINTS_MODE_NONE,
}
POINTS_NAMES: Final[Mapping[int, str]] = {
    quiz_pb2.POINTS_MODE_UNSPECIFIED: "standard",
    **{mode: name for name, mode in POINTS_MODES.items()},
}
KINDS: Final[Mapping[str, quiz_pb2.QuestionKind.ValueType]] = {
    "single_choice": quiz_pb2.QUESTION_KIND_SINGLE_CHOICE,
    "multiple_select": quiz_pb2.QUESTION_KIND_MULTIPLE_SELECT,
    "true_false": quiz_pb2.QUESTION_KIND_TRUE_FALSE,
    "type_answer": quiz_pb2.QUESTION_KIND_TYPE_ANSWER,
    "ordering": quiz_pb2.QUESTION_KIND_ORDERING,
    "estimate": quiz_pb2.QUESTION_KIND_ESTIMATE,
    "poll": quiz_pb2.QUESTION_KIND_POLL,
}
KIND_NAMES: Final[Mapping[int, str]] = {
    quiz_pb2.QUESTION_KIND_UNSPECIFIED: "single_choice",
    **{kind: name for name, kind in KINDS.items()},
}
PHASE_NAMES: Final[Mapping[int, str]] = {
    quiz_pb2.QUIZ_PHASE_UNSPECIFIED: "lobby",
    quiz_pb2.QUIZ_PHASE_LOBBY: "lobby",
    quiz_pb2.QUIZ_PHASE_QUESTION_OPEN: "question_open",
    quiz_pb2.QUIZ_PHASE_QUESTION_CLOSED: "question_closed",
    quiz_pb2.QUIZ_PHASE_ENDED: "ended",
}
