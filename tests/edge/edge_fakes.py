"""Fakes for the edge's tests: in-process grpc.aio servers standing in for quiz_svc, leaderboard_svc and
persistence_svc, and a transport that records the frames the fan-out writes."""

from __future__ import annotations

import asyncio
import hashlib
import struct
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import orjson
from grpc_health.v1 import health_pb2

from edge.upstream import LEADERBOARD_SERVICE, QUIZ_SERVICE
from quiz_svc.messages import player_question, question_from_pb
from quizmesh.grpc_errors import ERROR_CODE_METADATA_KEY
from quizmesh.leaderboard.v1 import leaderboard_service_pb2 as leaderboard_pb2
from quizmesh.leaderboard.v1 import leaderboard_service_pb2_grpc as leaderboard_grpc
from quizmesh.persistence.v1 import persistence_service_pb2 as persistence_pb2
from quizmesh.persistence.v1 import persistence_service_pb2_grpc as persistence_grpc
from quizmesh.quiz.v1 import quiz_service_pb2 as quiz_pb2
from quizmesh.quiz.v1 import quiz_service_pb2_grpc as quiz_grpc


def frame_payloads(data: bytes) -> list[bytes]:
    """Splits server-to-client text frames into their payloads."""
    payloads = []
    offset = 0
    while offset < len(data):
        first, second = data[offset], data[offset + 1]
        assert first == 0x81, f"not a final text frame: {first:#x}"
        assert second & 0x80 == 0, "server frames are never masked"
        length, offset = second & 0x7F, offset + 2
        if length == 126:
            (length,) = struct.unpack_from("!H", data, offset)
            offset += 2
        elif length == 127:
            (length,) = struct.unpack_from("!Q", data, offset)
            offset += 8
        payloads.append(bytes(data[offset : offset + length]))
        offset += length
    return payloads


def decode_frames(data: bytes) -> list[Any]:
    """Splits server-to-client text frames and decodes their JSON payloads."""
    return [orjson.loads(payload) for payload in frame_payloads(data)]


class RecordingTransport:
    """Records what the fan-out writes; its buffer size is settable to play a slow reader."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.buffered = 0
        self.closing = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def abort(self) -> None:
        self.aborted = self.closing = True

    def messages(self) -> list[Any]:
        return decode_frames(bytes(self.data))


def _now() -> Any:
    from google.protobuf.timestamp_pb2 import Timestamp

    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


@dataclass
class FakeQuiz:
    quiz: quiz_pb2.Quiz
    host_token: str
    host_user: str = ""  # the signed-in user who started this session, if one did
    phase: int = quiz_pb2.QUIZ_PHASE_LOBBY
    question_index: int = -1
    leaderboard_visible: bool = True
    players: dict[str, quiz_pb2.Player] = field(default_factory=dict)  # by token
    answered: set[tuple[str, int]] = field(default_factory=set)
    choice_counts: Counter[tuple[int, int]] = field(default_factory=Counter)

    def state(self) -> quiz_pb2.QuizState:
        state = quiz_pb2.QuizState(
            quiz_id=self.quiz.quiz_id,
            title=self.quiz.title,
            phase=self.phase,  # type: ignore[arg-type]
            question_index=self.question_index,
            question_count=len(self.quiz.questions),
            leaderboard_visible=self.leaderboard_visible,
            participant_count=len(self.players),
            server_time=_now(),
        )
        if self.phase in (quiz_pb2.QUIZ_PHASE_QUESTION_OPEN, quiz_pb2.QUIZ_PHASE_QUESTION_CLOSED):
            # As quiz_svc shows it: the contract's question read into the domain's, then the players' view.
            question = question_from_pb(self.quiz.questions[self.question_index], self.question_index)
            now_ms = time.time_ns() // 1_000_000
            state.question.CopyFrom(player_question(question, self.question_index, now_ms, now_ms))
        return state

    def results(self) -> quiz_pb2.QuestionResults:
        q = self.quiz.questions[self.question_index]
        return quiz_pb2.QuestionResults(
            question_index=self.question_index,
            correct_choices=q.correct_choices,
            choice_counts=[self.choice_counts[(self.question_index, i)] for i in range(len(q.choices))],
            tallies={str(i): n for (index, i), n in self.choice_counts.items() if index == self.question_index},
        )


class FakeQuizService(quiz_grpc.QuizServiceServicer):
    """Just enough of QuizService's rules to drive the edge; records how it was called."""

    def __init__(self) -> None:
        self.quizzes: dict[str, FakeQuiz] = {}
        self.batch_sizes: list[int] = []
        # Answer batches that came as BatchSubmitAnswers calls, and StreamAnswers calls opened.
        self.unary_batches = 0
        self.answer_streams = 0
        self.answers: list[quiz_pb2.Answer] = []
        self.host_requests: list[Any] = []
        self.watch_calls: Counter[str] = Counter()
        self._watchers: dict[str, set[asyncio.Queue[quiz_pb2.WatchQuizResponse]]] = {}
        # Media by ID (the SHA-256 of the bytes), how often each was read, and a gate reads wait at.
        self.media: dict[str, bytes] = {}
        self.media_reads: Counter[str] = Counter()
        self.media_gate = asyncio.Event()
        self.media_gate.set()
        self.media_read = asyncio.Event()

    def _quiz(self, quiz_id: str) -> FakeQuiz | None:
        return self.quizzes.get(quiz_id)

    async def _user(self, identity_token: str, context: Any) -> str:
        """The user of an identity token ("identity:<user>" is a valid one here), "" for none; any other
        token is refused as quiz_svc refuses an expired one."""
        user = identity_token.removeprefix("identity:")
        if user == identity_token and identity_token:
            context.set_trailing_metadata(((ERROR_CODE_METADATA_KEY, "invalid_identity"),))
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "the identity token has expired; sign in again")
        return user

    async def _hosts(self, quiz: FakeQuiz, request: Any, context: Any) -> bool:
        """As quiz_svc decides: the session's host credential, or the identity token of the user who
        started it."""
        if request.host_token and request.host_token == quiz.host_token:
            return True
        user = await self._user(request.identity_token, context)
        return bool(user) and user == quiz.host_user

    async def _host(self, request: Any, context: Any) -> FakeQuiz:
        self.host_requests.append(request)
        quiz = self._quiz(request.quiz_id)
        if quiz is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"quiz {request.quiz_id} does not exist")
        assert quiz is not None
        if not await self._hosts(quiz, request, context):
            context.set_trailing_metadata(((ERROR_CODE_METADATA_KEY, "permission_denied"),))
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "only the quiz's host may do this")
        return quiz

    def _publish(self, quiz: FakeQuiz, **extra: Any) -> None:
        update = quiz_pb2.WatchQuizResponse(state=quiz.state(), **extra)
        for queue in self._watchers.get(quiz.quiz.quiz_id, ()):
            queue.put_nowait(update)

    async def GetMedia(self, request: Any, context: Any) -> quiz_pb2.GetMediaResponse:
        self.media_reads[request.media_id] += 1
        self.media_read.set()
        await self.media_gate.wait()
        if request.media_id not in self.media:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no media has the ID {request.media_id}")
        content = self.media[request.media_id]
        return quiz_pb2.GetMediaResponse(media_id=request.media_id, content_type="image/png", content=content)

    async def CreateQuiz(self, request: Any, context: Any) -> quiz_pb2.CreateQuizResponse:
        ids = {upload.name: hashlib.sha256(upload.content).hexdigest() for upload in request.media}
        for upload in request.media:
            self.media[ids[upload.name]] = upload.content
        for question in request.questions:
            question.image = ids.get(question.image, question.image)
        if request.validate_only:
            return quiz_pb2.CreateQuizResponse()
        quiz_id = f"q-{uuid.uuid4().hex[:8]}"
        quiz = quiz_pb2.Quiz(quiz_id=quiz_id, title=request.title, questions=request.questions)
        quiz.allow_late_join = request.allow_late_join if request.HasField("allow_late_join") else True
        owner = await self._user(request.identity_token, context)
        self.quizzes[quiz_id] = FakeQuiz(quiz, host_token=f"host-{uuid.uuid4().hex}", host_user=owner)
        return quiz_pb2.CreateQuizResponse(quiz=quiz, host_token=self.quizzes[quiz_id].host_token)

    async def GetQuiz(self, request: Any, context: Any) -> quiz_pb2.GetQuizResponse:
        quiz = self._quiz(request.quiz_id)
        if quiz is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"quiz {request.quiz_id} does not exist")
        assert quiz is not None
        shown = quiz_pb2.Quiz()
        shown.CopyFrom(quiz.quiz)
        is_host = await self._hosts(quiz, request, context)
        if not is_host:
            for question in shown.questions:
                del question.correct_choices[:]
        return quiz_pb2.GetQuizResponse(quiz=shown, host_verified=is_host)

    async def JoinQuiz(self, request: Any, context: Any) -> quiz_pb2.JoinQuizResponse:
        quiz = self._quiz(request.quiz_id)
        if quiz is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"quiz {request.quiz_id} does not exist")
        assert quiz is not None
        if not request.nickname.strip():
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "nickname must have 1 to 24 characters")
        player = quiz_pb2.Player(player_id=f"p-{uuid.uuid4().hex[:8]}", nickname=request.nickname)
        token = f"{quiz.quiz.quiz_id}/{player.player_id}"
        quiz.players[token] = player
        return quiz_pb2.JoinQuizResponse(player=player, player_token=token, state=quiz.state())

    def _player(self, token: str) -> tuple[FakeQuiz, quiz_pb2.Player] | None:
        quiz = self._quiz(token.split("/", maxsplit=1)[0])
        if quiz is None or token not in quiz.players:
            return None
        return quiz, quiz.players[token]

    async def ResumeQuiz(self, request: Any, context: Any) -> quiz_pb2.ResumeQuizResponse:
        found = self._player(request.player_token)
        if found is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "the player credential is not valid")
        assert found is not None
        quiz, player = found
        answered = (player.player_id, quiz.question_index) in quiz.answered
        return quiz_pb2.ResumeQuizResponse(
            player=player,
            state=quiz.state(),
            answered_current_question=answered,
            player_token=request.player_token,
        )

    async def LeaveQuiz(self, request: Any, context: Any) -> quiz_pb2.LeaveQuizResponse:
        found = self._player(request.player_token)
        if found is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "the player credential is not valid")
        assert found is not None
        del found[0].players[request.player_token]
        return quiz_pb2.LeaveQuizResponse()

    def _judge(self, answer: quiz_pb2.Answer) -> quiz_pb2.AnswerOutcome:
        found = self._player(answer.player_token)
        if found is None:
            return quiz_pb2.AnswerOutcome(error=quiz_pb2.ANSWER_ERROR_UNAUTHENTICATED, error_message="bad token")
        quiz, player = found
        if answer.question_index >= len(quiz.quiz.questions):
            return quiz_pb2.AnswerOutcome(error=quiz_pb2.ANSWER_ERROR_QUESTION_NOT_FOUND, error_message="no such")
        if quiz.phase != quiz_pb2.QUIZ_PHASE_QUESTION_OPEN or answer.question_index != quiz.question_index:
            return quiz_pb2.AnswerOutcome(
                error=quiz_pb2.ANSWER_ERROR_QUESTION_NOT_OPEN, error_message="question is not open"
            )
        if (player.player_id, answer.question_index) in quiz.answered:
            return quiz_pb2.AnswerOutcome(
                error=quiz_pb2.ANSWER_ERROR_ALREADY_ANSWERED, error_message="you already answered"
            )
        quiz.answered.add((player.player_id, answer.question_index))
        quiz.choice_counts[(answer.question_index, answer.choice)] += 1
        correct = answer.choice in quiz.quiz.questions[answer.question_index].correct_choices
        points = 1000 if correct else 0
        player.score += points
        player.streak = player.streak + 1 if correct else 0
        return quiz_pb2.AnswerOutcome(
            result=quiz_pb2.AnswerResult(
                correct=correct, points=points, total_score=player.score, streak=player.streak, response_time_ms=5
            )
        )

    async def SubmitAnswer(self, request: Any, context: Any) -> quiz_pb2.SubmitAnswerResponse:
        # The edge must batch; a single-answer call is a regression the tests should see.
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the edge sends answers with BatchSubmitAnswers")
        raise AssertionError("unreachable")

    async def ListQuizzes(self, request: Any, context: Any) -> quiz_pb2.ListQuizzesResponse:
        return quiz_pb2.ListQuizzesResponse(quizzes=[q.quiz for q in self.quizzes.values()])

    # Sessions are quiz_svc's (tests/quiz_svc/test_sessions.py); here a new session is a copy of the quiz
    # under a new ID, started by its owner only (a user-owned quiz's first session is hosted by its user).
    async def StartSession(self, request: Any, context: Any) -> quiz_pb2.StartSessionResponse:
        quiz = await self._host(request, context)
        self.host_requests.pop()  # not a host action on a session
        copy = quiz_pb2.Quiz()
        copy.CopyFrom(quiz.quiz)
        copy.quiz_id = f"s-{uuid.uuid4().hex[:8]}"
        started = FakeQuiz(copy, host_token=f"host-{uuid.uuid4().hex}", host_user=quiz.host_user)
        self.quizzes[copy.quiz_id] = started
        session = quiz_pb2.Session(session_id=copy.quiz_id, quiz_id=quiz.quiz.quiz_id, title=copy.title)
        return quiz_pb2.StartSessionResponse(quiz=copy, host_token=started.host_token, session=session)

    async def ListSessions(self, request: Any, context: Any) -> quiz_pb2.ListSessionsResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the fake quiz_svc runs no sessions")
        raise AssertionError("context.abort returned")

    # Only persistence_svc erases players (tests/persistence_svc/test_user_erasure.py); the edge never does.
    async def ErasePlayers(self, request: Any, context: Any) -> quiz_pb2.ErasePlayersResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the edge never erases players")
        raise AssertionError("context.abort returned")

    def _judge_batch(self, answers: Sequence[quiz_pb2.Answer]) -> list[quiz_pb2.AnswerOutcome]:
        self.batch_sizes.append(len(answers))
        self.answers.extend(answers)
        return [self._judge(a) for a in answers]

    async def BatchSubmitAnswers(self, request: Any, context: Any) -> quiz_pb2.BatchSubmitAnswersResponse:
        self.unary_batches += 1
        return quiz_pb2.BatchSubmitAnswersResponse(outcomes=self._judge_batch(request.answers))

    async def StreamAnswers(self, requests: Any, context: Any) -> AsyncIterator[quiz_pb2.StreamAnswersResponse]:
        self.answer_streams += 1
        async for request in requests:
            outcomes = self._judge_batch(request.answers)
            yield quiz_pb2.StreamAnswersResponse(batch_id=request.batch_id, outcomes=outcomes)

    async def StartQuiz(self, request: Any, context: Any) -> quiz_pb2.StartQuizResponse:
        quiz = await self._host(request, context)
        if quiz.phase != quiz_pb2.QUIZ_PHASE_LOBBY:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the quiz has already started")
        quiz.phase, quiz.question_index = quiz_pb2.QUIZ_PHASE_QUESTION_OPEN, 0
        self._publish(quiz)
        return quiz_pb2.StartQuizResponse(state=quiz.state())

    async def NextQuestion(self, request: Any, context: Any) -> quiz_pb2.NextQuestionResponse:
        quiz = await self._host(request, context)
        quiz.phase, quiz.question_index = quiz_pb2.QUIZ_PHASE_QUESTION_OPEN, quiz.question_index + 1
        self._publish(quiz)
        return quiz_pb2.NextQuestionResponse(state=quiz.state())

    async def CloseQuestion(self, request: Any, context: Any) -> quiz_pb2.CloseQuestionResponse:
        quiz = await self._host(request, context)
        quiz.phase = quiz_pb2.QUIZ_PHASE_QUESTION_CLOSED
        self._publish(quiz, results=quiz.results())
        return quiz_pb2.CloseQuestionResponse(state=quiz.state(), results=quiz.results())

    async def SetLeaderboardVisibility(self, request: Any, context: Any) -> quiz_pb2.SetLeaderboardVisibilityResponse:
        quiz = await self._host(request, context)
        quiz.leaderboard_visible = request.visible
        self._publish(quiz)
        return quiz_pb2.SetLeaderboardVisibilityResponse(state=quiz.state())

    async def KickPlayer(self, request: Any, context: Any) -> quiz_pb2.KickPlayerResponse:
        quiz = await self._host(request, context)
        tokens = [t for t, p in quiz.players.items() if p.player_id == request.player_id]
        if not tokens:
            # As quiz_svc does: what was not found travels as the stable error code in the trailer.
            context.set_trailing_metadata(((ERROR_CODE_METADATA_KEY, "player_not_found"),))
            await context.abort(grpc.StatusCode.NOT_FOUND, f"player {request.player_id} is not in this quiz")
        for token in tokens:
            del quiz.players[token]
        self._publish(quiz, kicked_player_id=request.player_id)
        return quiz_pb2.KickPlayerResponse(state=quiz.state())

    async def EndQuiz(self, request: Any, context: Any) -> quiz_pb2.EndQuizResponse:
        quiz = await self._host(request, context)
        quiz.phase = quiz_pb2.QUIZ_PHASE_ENDED
        self._publish(quiz)
        return quiz_pb2.EndQuizResponse(state=quiz.state())

    async def GetQuizState(self, request: Any, context: Any) -> quiz_pb2.GetQuizStateResponse:
        quiz = self._quiz(request.quiz_id)
        if quiz is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"quiz {request.quiz_id} does not exist")
        assert quiz is not None
        return quiz_pb2.GetQuizStateResponse(state=quiz.state())

    async def WatchQuiz(self, request: Any, context: Any) -> AsyncIterator[quiz_pb2.WatchQuizResponse]:
        quiz = self._quiz(request.quiz_id)
        if quiz is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"quiz {request.quiz_id} does not exist")
        assert quiz is not None
        self.watch_calls[request.quiz_id] += 1
        queue: asyncio.Queue[quiz_pb2.WatchQuizResponse] = asyncio.Queue()
        self._watchers.setdefault(request.quiz_id, set()).add(queue)
        try:
            yield quiz_pb2.WatchQuizResponse(state=quiz.state())
            while True:
                yield await queue.get()
        finally:
            self._watchers[request.quiz_id].discard(queue)


class FakeLeaderboardService(leaderboard_grpc.LeaderboardServiceServicer):
    """Publishes whatever leaderboards a test hands it; counts watches per quiz."""

    def __init__(self) -> None:
        self.watch_calls: Counter[str] = Counter()
        self.active_watches: Counter[str] = Counter()
        self.current: dict[str, leaderboard_pb2.Leaderboard] = {}
        self._watchers: dict[str, set[asyncio.Queue[leaderboard_pb2.Leaderboard | None]]] = {}

    def break_streams(self, quiz_id: str) -> None:
        """Fails every open watch of the quiz with UNAVAILABLE, as a restarting service would."""
        for queue in self._watchers.get(quiz_id, ()):
            queue.put_nowait(None)

    def publish(self, board: leaderboard_pb2.Leaderboard) -> None:
        self.current[board.quiz_id] = board
        for queue in self._watchers.get(board.quiz_id, ()):
            queue.put_nowait(board)

    async def GetLeaderboard(self, request: Any, context: Any) -> leaderboard_pb2.GetLeaderboardResponse:
        current = self.current.get(request.quiz_id, leaderboard_pb2.Leaderboard())
        return leaderboard_pb2.GetLeaderboardResponse(
            top_entries=current.entries[: request.top_n or 10],
            player_count=len(current.entries),
            version=current.version,
        )

    async def ErasePlayers(self, request: Any, context: Any) -> leaderboard_pb2.ErasePlayersResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the edge never erases players")
        raise AssertionError("context.abort returned")

    async def WatchLeaderboard(
        self, request: Any, context: Any
    ) -> AsyncIterator[leaderboard_pb2.WatchLeaderboardResponse]:
        self.watch_calls[request.quiz_id] += 1
        self.active_watches[request.quiz_id] += 1
        queue: asyncio.Queue[leaderboard_pb2.Leaderboard | None] = asyncio.Queue()
        self._watchers.setdefault(request.quiz_id, set()).add(queue)
        try:
            if request.quiz_id in self.current:
                yield leaderboard_pb2.WatchLeaderboardResponse(leaderboard=self.current[request.quiz_id])
            while (update := await queue.get()) is not None:
                yield leaderboard_pb2.WatchLeaderboardResponse(leaderboard=update)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the leaderboard service is restarting")
        finally:
            self._watchers[request.quiz_id].discard(queue)
            self.active_watches[request.quiz_id] -= 1


def board(quiz_id: str, version: int, ranking: list[tuple[str, str, int]]) -> leaderboard_pb2.Leaderboard:
    """A leaderboard from (player_id, nickname, score) in rank order."""
    return leaderboard_pb2.Leaderboard(
        quiz_id=quiz_id,
        version=version,
        entries=[
            leaderboard_pb2.LeaderboardEntry(player_id=pid, nickname=nick, score=score, rank=i + 1)
            for i, (pid, nick, score) in enumerate(ranking)
        ],
    )


class FakePersistenceService(persistence_grpc.PersistenceServiceServicer):
    """Has stored nothing yet: every quiz has no participants and no answers."""

    async def ListParticipants(self, request: Any, context: Any) -> persistence_pb2.ListParticipantsResponse:
        return persistence_pb2.ListParticipantsResponse()

    async def ListAnswers(self, request: Any, context: Any) -> persistence_pb2.ListAnswersResponse:
        return persistence_pb2.ListAnswersResponse()

    async def DeleteUserData(self, request: Any, context: Any) -> persistence_pb2.DeleteUserDataResponse:
        # The mesh keeps the edge from calling it (deploy/istio/mesh/authorization-policies.yaml).
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, "the edge does not delete user data")
        raise AssertionError("context.abort returned")

    async def ListUserResults(self, request: Any, context: Any) -> persistence_pb2.ListUserResultsResponse:
        """One session for the identity token "learner-token"; any other token is refused."""
        if request.identity_token != "learner-token":
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "the identity token is not valid")
        return persistence_pb2.ListUserResultsResponse(
            results=[persistence_pb2.UserSessionResult(session_id="S1", score=900, rank=1, player_count=3)],
            next_page_token="" if request.page_token else "page-2",
        )


@dataclass
class FakeServices:
    quiz: FakeQuizService
    leaderboard: FakeLeaderboardService
    health: Any
    address: str

    async def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in (QUIZ_SERVICE, LEADERBOARD_SERVICE):
            await self.health.set(name, status)
