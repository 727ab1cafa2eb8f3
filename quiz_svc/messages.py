"""Conversions between quiz_svc's domain values and its protobuf contract."""

from __future__ import annotations

from quiz_svc.domain import GameState, Phase, PointsMode, Question, QuizDefinition
from quiz_svc.ports import PlayerRecord, QuestionResults, QuizUpdate, StoredAnswer
from quizmesh.eventcodec import timestamp_ms
from quizmesh.quiz.v1 import quiz_service_pb2 as pb

_PHASES = {
    Phase.LOBBY: pb.QUIZ_PHASE_LOBBY,
    Phase.QUESTION_OPEN: pb.QUIZ_PHASE_QUESTION_OPEN,
    Phase.QUESTION_CLOSED: pb.QUIZ_PHASE_QUESTION_CLOSED,
    Phase.ENDED: pb.QUIZ_PHASE_ENDED,
}
_POINTS = {
    PointsMode.STANDARD: pb.POINTS_MODE_STANDARD,
    PointsMode.DOUBLE: pb.POINTS_MODE_DOUBLE,
    PointsMode.NONE: pb.POINTS_MODE_NONE,
}
_POINTS_IN = {
    pb.POINTS_MODE_UNSPECIFIED: PointsMode.STANDARD,
    pb.POINTS_MODE_STANDARD: PointsMode.STANDARD,
    pb.POINTS_MODE_DOUBLE: PointsMode.DOUBLE,
    pb.POINTS_MODE_NONE: PointsMode.NONE,
}


class UnknownPointsMode(ValueError):
    pass


def question_from_pb(q: pb.Question) -> Question:
    points = _POINTS_IN.get(q.points_mode)
    if points is None:
        raise UnknownPointsMode(f"points_mode {q.points_mode} is not a known PointsMode")
    return Question(
        text=q.text,
        choices=tuple(q.choices),
        correct_choices=frozenset(q.correct_choices),
        time_limit_s=q.time_limit_seconds,
        points=points,
    )


def quiz_to_pb(quiz: QuizDefinition, *, with_answers: bool) -> pb.Quiz:
    return pb.Quiz(
        quiz_id=quiz.quiz_id,
        title=quiz.title,
        allow_late_join=quiz.allow_late_join,
        create_time=timestamp_ms(quiz.created_ms),
        questions=[
            pb.Question(
                text=q.text,
                choices=q.choices,
                correct_choices=sorted(q.correct_choices) if with_answers else [],
                time_limit_seconds=q.time_limit_s,
                points_mode=_POINTS[q.points],
            )
            for q in quiz.questions
        ],
    )


def state_to_pb(quiz: QuizDefinition, state: GameState, now_ms: int) -> pb.QuizState:
    message = pb.QuizState(
        quiz_id=quiz.quiz_id,
        title=quiz.title,
        phase=_PHASES[state.phase],
        question_index=state.question_index,
        question_count=state.question_count,
        leaderboard_visible=state.leaderboard_visible,
        participant_count=state.participant_count,
        server_time=timestamp_ms(now_ms),
        version=state.version,
    )
    if state.phase in (Phase.QUESTION_OPEN, Phase.QUESTION_CLOSED) and state.question_index >= 0:
        q = quiz.questions[state.question_index]
        # Players' view: the correct choices are deliberately absent until results are published.
        message.question.CopyFrom(
            pb.PlayerQuestion(
                index=state.question_index,
                text=q.text,
                choices=q.choices,
                time_limit_seconds=q.time_limit_s,
                points_mode=_POINTS[q.points],
                open_time=timestamp_ms(state.open_ms),
                close_time=timestamp_ms(state.close_ms),
            )
        )
    return message


def results_to_pb(results: QuestionResults) -> pb.QuestionResults:
    return pb.QuestionResults(
        question_index=results.question_index,
        correct_choices=results.correct_choices,
        choice_counts=results.choice_counts,
    )


def update_to_pb(quiz: QuizDefinition, update: QuizUpdate, now_ms: int) -> pb.WatchQuizResponse:
    message = pb.WatchQuizResponse(
        state=state_to_pb(quiz, update.state, now_ms), kicked_player_id=update.kicked_player_id
    )
    if update.results is not None:
        message.results.CopyFrom(results_to_pb(update.results))
    return message


def player_to_pb(player: PlayerRecord) -> pb.Player:
    return pb.Player(
        player_id=player.player_id,
        nickname=player.nickname,
        score=player.standing.total,
        streak=player.standing.streak,
    )


def answer_to_pb(answer: StoredAnswer, event_id: str) -> pb.AnswerResult:
    return pb.AnswerResult(
        correct=answer.correct,
        points=answer.points,
        total_score=answer.standing.total,
        streak=answer.standing.streak,
        streak_bonus=answer.bonus,
        response_time_ms=answer.response_ms,
        event_id=event_id,
    )
