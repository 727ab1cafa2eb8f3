"""quiz_svc's codec: conversions between its domain values and events and its protobuf contracts (the
QuizService API and the events it publishes); the one module of quiz_svc that reads or builds them."""

from __future__ import annotations

from decimal import Decimal

from quiz_svc.domain import GameState, InvalidQuiz, Phase, PointsMode, Question, QuizDefinition, Session
from quiz_svc.events import AnswerJudged, GameEvent, PlayerJoined
from quiz_svc.kinds import (
    AnswerValue,
    ChoiceAnswer,
    ChoicesAnswer,
    Estimate,
    InvalidAnswer,
    Kind,
    MultipleSelect,
    NumberAnswer,
    OrderAnswer,
    Ordering,
    Poll,
    SingleChoice,
    Spec,
    TextAnswer,
    TrueFalse,
    TruthAnswer,
    TypeAnswer,
    accepted_answer,
    credit_text,
    new_shown_order,
    number_text,
    parse_number,
)
from quiz_svc.media import QuestionMedia
from quiz_svc.ports import PlayerRecord, QuestionResults, QuizUpdate, StoredAnswer
from quizmesh.eventcodec import Event, new_event_id, timestamp_ms
from quizmesh.events.v1 import events_pb2
from quizmesh.quiz.v1 import answer_value_pb2 as answer_pb
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
_POINTS_IN = {pb.POINTS_MODE_UNSPECIFIED: PointsMode.STANDARD, **{v: k for k, v in _POINTS.items()}}


_KINDS = {
    Kind.SINGLE_CHOICE: pb.QUESTION_KIND_SINGLE_CHOICE,
    Kind.MULTIPLE_SELECT: pb.QUESTION_KIND_MULTIPLE_SELECT,
    Kind.TRUE_FALSE: pb.QUESTION_KIND_TRUE_FALSE,
    Kind.TYPE_ANSWER: pb.QUESTION_KIND_TYPE_ANSWER,
    Kind.ORDERING: pb.QUESTION_KIND_ORDERING,
    Kind.ESTIMATE: pb.QUESTION_KIND_ESTIMATE,
    Kind.POLL: pb.QUESTION_KIND_POLL,
}
_KINDS_IN = {pb.QUESTION_KIND_UNSPECIFIED: Kind.SINGLE_CHOICE, **{v: k for k, v in _KINDS.items()}}


def _number(text: str, name: str, position: int) -> Decimal:
    try:
        return parse_number(text)
    except InvalidAnswer as exc:
        raise InvalidQuiz(f"question {position + 1}: the estimate's {name}: {exc}", position) from None


def _spec_from_pb(q: pb.Question, kind: Kind, position: int) -> Spec:
    """A question's kind-specific part, as authored. The rules on it are checked by the domain."""
    if kind == Kind.SINGLE_CHOICE:
        return SingleChoice(tuple(q.choices), frozenset(q.correct_choices))
    if kind == Kind.MULTIPLE_SELECT:
        return MultipleSelect(tuple(q.choices), frozenset(q.correct_choices))
    if kind == Kind.TRUE_FALSE:
        if len(q.correct_choices) != 1 or q.correct_choices[0] not in (0, 1):
            raise InvalidQuiz(
                f"question {position + 1}: a true/false question needs correct_choices [0] (true) or [1] (false)",
                position,
            )
        return TrueFalse(q.correct_choices[0] == 0)
    if kind == Kind.TYPE_ANSWER:
        return TypeAnswer(tuple(q.accepted_answers), q.accent_insensitive, q.typo_tolerant)
    if kind == Kind.ORDERING:
        return Ordering(tuple(q.items), new_shown_order(len(q.items)) if len(q.items) > 1 else (0,) * len(q.items))
    if kind == Kind.ESTIMATE:
        e = q.estimate
        return Estimate(
            _number(e.min, "min", position),
            _number(e.max, "max", position),
            _number(e.answer, "answer", position),
            _number(e.tolerance or "0", "tolerance", position),
        )
    return Poll(tuple(q.choices))


def question_from_pb(q: pb.Question, position: int) -> Question:
    """A question as authored; InvalidQuiz when it cannot even be read (an unknown kind, say)."""
    points = _POINTS_IN.get(q.points_mode)
    if points is None:
        raise InvalidQuiz(f"question {position + 1}: points_mode {q.points_mode} is not a known PointsMode", position)
    kind = _KINDS_IN.get(q.kind)
    if kind is None:
        raise InvalidQuiz(f"question {position + 1}: kind {q.kind} is not a known QuestionKind", position)
    media = QuestionMedia(q.image, q.audio, tuple(q.choice_images))
    return Question(q.text, _spec_from_pb(q, kind, position), q.time_limit_seconds, points, media)


def question_to_pb(q: Question, *, with_answers: bool) -> pb.Question:
    """A question as its host (with_answers) or anyone else may read it."""
    message = pb.Question(
        text=q.text,
        time_limit_seconds=q.time_limit_s,
        points_mode=_POINTS[q.points],
        kind=_KINDS[q.kind],
        choices=q.choices,
        image=q.media.image,
        audio=q.media.audio,
        choice_images=q.media.choice_images,
    )
    spec = q.spec
    if isinstance(spec, SingleChoice | MultipleSelect | TrueFalse) and with_answers:
        message.correct_choices[:] = sorted(spec.correct)
    elif isinstance(spec, TypeAnswer):
        message.accent_insensitive, message.typo_tolerant = spec.accent_insensitive, spec.typo_tolerant
        if with_answers:
            message.accepted_answers[:] = spec.accepted
    elif isinstance(spec, Ordering):
        message.items[:] = spec.items if with_answers else spec.shown_items
    elif isinstance(spec, Estimate):
        message.estimate.CopyFrom(_estimate_to_pb(spec, with_answer=with_answers))
    return message


def _estimate_to_pb(spec: Estimate, *, with_answer: bool) -> pb.EstimateSpec:
    return pb.EstimateSpec(
        min=number_text(spec.low),
        max=number_text(spec.high),
        answer=number_text(spec.answer) if with_answer else "",
        tolerance=number_text(spec.tolerance),
    )


def quiz_to_pb(quiz: QuizDefinition, *, with_answers: bool) -> pb.Quiz:
    return pb.Quiz(
        quiz_id=quiz.quiz_id,
        title=quiz.title,
        allow_late_join=quiz.allow_late_join,
        create_time=timestamp_ms(quiz.created_ms),
        questions=[question_to_pb(q, with_answers=with_answers) for q in quiz.questions],
        requires_sign_in=quiz.requires_sign_in,
    )


def session_to_pb(session: Session) -> pb.Session:
    return pb.Session(
        session_id=session.session_id,
        quiz_id=session.quiz_id,
        title=session.title,
        create_time=timestamp_ms(session.created_ms),
        phase=_PHASES[session.phase],
        host_user_id=session.host_user_id or "",
    )


def value_from_pb(value: answer_pb.AnswerValue, choice: int) -> AnswerValue:
    """An answer as sent; without a value, `choice` (Answer.choice, for clients of single choices).
    InvalidAnswer for a number that is not one."""
    which = value.WhichOneof("value")
    if which is None or which == "choice":
        return ChoiceAnswer(value.choice if which else choice)
    if which == "choices":
        return ChoicesAnswer(frozenset(value.choices.choices))
    if which == "truth":
        return TruthAnswer(value.truth)
    if which == "text":
        return TextAnswer(value.text)
    if which == "order":
        return OrderAnswer(tuple(value.order.positions))
    return NumberAnswer(parse_number(value.number))


def value_to_pb(value: AnswerValue) -> answer_pb.AnswerValue:
    if isinstance(value, ChoiceAnswer):
        return answer_pb.AnswerValue(choice=value.choice)
    if isinstance(value, ChoicesAnswer):
        return answer_pb.AnswerValue(choices=answer_pb.ChoiceSet(choices=sorted(value.choices)))
    if isinstance(value, TruthAnswer):
        return answer_pb.AnswerValue(truth=value.truth)
    if isinstance(value, TextAnswer):
        return answer_pb.AnswerValue(text=value.text)
    if isinstance(value, OrderAnswer):
        return answer_pb.AnswerValue(order=answer_pb.ItemOrder(positions=value.positions))
    return answer_pb.AnswerValue(number=number_text(value.number))


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
        question = quiz.questions[state.question_index]
        message.question.CopyFrom(player_question(question, state.question_index, state.open_ms, state.close_ms))
    return message


def player_question(q: Question, index: int, open_ms: int, close_ms: int) -> pb.PlayerQuestion:
    """The open (or just closed) question of a quiz state, as players see it."""
    # Players' view: the answers are deliberately absent until results are published.
    shown = question_to_pb(q, with_answers=False)
    return pb.PlayerQuestion(
        index=index,
        text=q.text,
        choices=q.choices,
        time_limit_seconds=q.time_limit_s,
        points_mode=_POINTS[q.points],
        open_time=timestamp_ms(open_ms),
        close_time=timestamp_ms(close_ms),
        kind=shown.kind,
        items=shown.items,
        estimate=shown.estimate if shown.HasField("estimate") else None,
        image=q.media.image,
        audio=q.media.audio,
        choice_images=q.media.choice_images,
    )


def results_to_pb(quiz: QuizDefinition, results: QuestionResults) -> pb.QuestionResults:
    question = quiz.questions[results.question_index]
    return pb.QuestionResults(
        question_index=results.question_index,
        correct_choices=results.correct_choices,
        choice_counts=results.choice_counts,
        kind=_KINDS[question.kind],
        tallies=results.tallies,
        question=question_to_pb(question, with_answers=True),
    )


def update_to_pb(quiz: QuizDefinition, update: QuizUpdate, now_ms: int) -> pb.WatchQuizResponse:
    message = pb.WatchQuizResponse(
        state=state_to_pb(quiz, update.state, now_ms), kicked_player_id=update.kicked_player_id
    )
    if update.results is not None:
        message.results.CopyFrom(results_to_pb(quiz, update.results))
    return message


def player_to_pb(player: PlayerRecord) -> pb.Player:
    return pb.Player(
        player_id=player.player_id,
        nickname=player.nickname,
        score=player.standing.total,
        streak=player.standing.streak,
    )


def answer_to_pb(answer: StoredAnswer, event_id: str, question: Question) -> pb.AnswerResult:
    return pb.AnswerResult(
        correct=answer.correct,
        points=answer.points,
        total_score=answer.standing.total,
        streak=answer.standing.streak,
        streak_bonus=answer.bonus,
        response_time_ms=answer.response_ms,
        event_id=event_id,
        credit=credit_text(answer.credit),
        accepted_answer=accepted_answer(question.spec, answer.tally),
        value=value_to_pb(answer.value),
    )


def event_to_pb(event: GameEvent) -> Event:
    if isinstance(event, AnswerJudged):
        return events_pb2.AnswerSubmitted(
            event_id=event.event_id,
            event_time=timestamp_ms(event.time_ms),
            quiz_id=event.quiz_id,
            player_id=event.player_id,
            question_index=event.question_index,
            # A single choice also travels as `choice`, for consumers from before kinds.
            choice=event.value.choice if isinstance(event.value, ChoiceAnswer) else 0,
            value=value_to_pb(event.value),
            answer_text=event.answer_text,
            credit=credit_text(event.credit),
            correct=event.correct,
            points=event.points,
            total_score=event.total_score,
            streak=event.streak,
            response_time_ms=event.response_ms,
            answer_time=timestamp_ms(event.received_ms),
            quiz_elapsed_ms=event.quiz_elapsed_ms,
        )
    if isinstance(event, PlayerJoined):
        return events_pb2.UserJoinedQuiz(
            event_id=new_event_id(),
            event_time=timestamp_ms(event.time_ms),
            quiz_id=event.quiz_id,
            player_id=event.player_id,
            nickname=event.nickname,
            quiz_elapsed_ms=event.quiz_elapsed_ms,
            user_id=event.user_id,
        )
    return events_pb2.UserLeftQuiz(
        event_id=new_event_id(),
        event_time=timestamp_ms(event.time_ms),
        quiz_id=event.quiz_id,
        player_id=event.player_id,
        kicked=event.kicked,
    )
