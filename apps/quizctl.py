"""`quizctl`: run and inspect quizzes from a shell, over the services' gRPC APIs.

It talks to quiz_svc, leaderboard_svc and persistence_svc directly (plaintext gRPC, as inside the mesh
or against `quizmesh dev`), so it needs no WebSocket and no browser. Exit codes: 0 done, 2 usage or a
bad input file, 3 not found, 4 permission denied or unauthenticated, 5 a service unavailable, 1
anything else, 141 the reader of stdout went away; errors are one line on stderr carrying the
service's own explanation.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NoReturn, TypeVar

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from quiz_svc.media import is_media_id
from quizmesh.grpc_errors import ERROR_CODE_METADATA_KEY, QUESTION_INDEX_METADATA_KEY
from quizmesh.grpc_retry import CHANNEL_OPTIONS as RETRY_OPTIONS
from quizmesh.leaderboard.v1 import leaderboard_service_pb2 as leaderboard_pb2
from quizmesh.leaderboard.v1 import leaderboard_service_pb2_grpc as leaderboard_grpc
from quizmesh.persistence.v1 import persistence_service_pb2_grpc as persistence_grpc
from quizmesh.quiz.v1 import quiz_service_pb2 as quiz_pb2
from quizmesh.quiz.v1 import quiz_service_pb2_grpc as quiz_grpc
from quizmesh.quiz_document import DocumentError, QuizDocument, read_document
from quizmesh.quiz_names import PHASE_NAMES
from quizmesh.results import read_stored_quiz, results_csv
from quizmesh.settings import LEADERBOARD_ADDR, PERSISTENCE_ADDR, QUIZ_ADDR, Text, Variables

EXIT_OK: Final = 0
EXIT_OTHER: Final = 1
EXIT_USAGE: Final = 2
EXIT_NOT_FOUND: Final = 3
EXIT_DENIED: Final = 4
EXIT_UNAVAILABLE: Final = 5
# The reader of stdout went away (`quizctl list | head -1`): the status a Unix tool killed by SIGPIPE has.
EXIT_READER_GONE: Final = 128 + 13

_EXIT_CODES: Final[Mapping[grpc.StatusCode, int]] = {
    grpc.StatusCode.NOT_FOUND: EXIT_NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED: EXIT_DENIED,
    grpc.StatusCode.UNAUTHENTICATED: EXIT_DENIED,
    grpc.StatusCode.UNAVAILABLE: EXIT_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: EXIT_UNAVAILABLE,
}
_PAGE_SIZE: Final = 1000
_M = TypeVar("_M", bound=Message)
HOST_TOKEN: Final = Text(
    "QUIZMESH_HOST_TOKEN",
    "The host credential of the quiz a host command acts on; --host-token wins.",
    default="",
)
IDENTITY_TOKEN: Final = Text(
    "QUIZMESH_IDENTITY_TOKEN",
    "The identity token of the signed-in user quizctl acts for (their quizzes and sessions); --identity-token wins.",
    default="",
)
VARIABLES: Final[Variables] = (QUIZ_ADDR, LEADERBOARD_ADDR, PERSISTENCE_ADDR, HOST_TOKEN, IDENTITY_TOKEN)


class UsageError(Exception):
    """A missing argument or an unreadable input file: exit code 2."""


class _Parser(argparse.ArgumentParser):
    """Reports a usage mistake in one line on stderr, as every other error, instead of argparse's usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {' '.join(message.split())} (see {self.prog} --help)\n")


@dataclass(frozen=True)
class Services:
    """One channel per service, each call bounded by timeout_s (watch streams are not)."""

    quiz: quiz_grpc.QuizServiceStub
    leaderboard: leaderboard_grpc.LeaderboardServiceStub
    persistence: persistence_grpc.PersistenceServiceStub
    timeout_s: float


@contextlib.asynccontextmanager
async def _connect(args: argparse.Namespace) -> AsyncIterator[Services]:
    async with (
        grpc.aio.insecure_channel(args.quiz_addr, options=RETRY_OPTIONS) as quiz,
        grpc.aio.insecure_channel(args.leaderboard_addr, options=RETRY_OPTIONS) as leaderboard,
        grpc.aio.insecure_channel(args.persistence_addr, options=RETRY_OPTIONS) as persistence,
    ):
        yield Services(
            quiz_grpc.QuizServiceStub(quiz),
            leaderboard_grpc.LeaderboardServiceStub(leaderboard),
            persistence_grpc.PersistenceServiceStub(persistence),
            args.timeout,
        )


def _json(message: Message) -> dict[str, Any]:
    """The proto3 JSON mapping, as grpcurl prints it (64-bit integers as strings)."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _emit(line: str) -> None:
    print(line, flush=True)


# --- create ---


def _read_quiz_file(path: str, title: str | None) -> QuizDocument:
    """The quiz in a JSON, CSV or XLSX document (quizmesh.quiz_document), with the media it names by file
    name read from the document's folder."""
    try:
        content = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        document = read_document(content, path)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except DocumentError as exc:
        raise UsageError(f"{path}: {exc}") from None
    request = document.request
    if title is not None:
        request.title = title
    elif not request.title:
        request.title = Path(path).stem if path != "-" else ""
    folder = Path(path).parent if path != "-" else Path.cwd()
    named = {ref for q in request.questions for ref in (q.image, q.audio, *q.choice_images) if ref}
    for name in sorted(named):
        if is_media_id(name):
            continue  # stored already, by an earlier quiz
        try:
            request.media.append(quiz_pb2.MediaUpload(name=name, content=(folder / name).read_bytes()))
        except OSError as exc:
            raise UsageError(f"cannot read {name}, which {path} names as a picture or a clip: {exc.strerror}") from None
    return document


async def _create(services: Services, args: argparse.Namespace) -> None:
    document = _read_quiz_file(args.file, args.title)
    document.request.identity_token = _identity_token(args)
    document.request.requires_sign_in = args.requires_sign_in
    try:
        response = await services.quiz.CreateQuiz(document.request, timeout=services.timeout_s)
    except grpc.aio.AioRpcError as exc:
        raise _located(exc, document) from None
    if args.json:
        _emit(json.dumps({"quiz_id": response.quiz.quiz_id, "host_token": response.host_token, **_json(response)}))
    else:
        _emit(f"quiz_id     {response.quiz.quiz_id}")
        _emit(f"host_token  {response.host_token}")


# --- list ---


async def _emit_listed(
    args: argparse.Namespace,
    page_of: Callable[[int, str], Awaitable[tuple[Sequence[_M], str]]],
    line: Callable[[_M], str],
) -> None:
    """Prints up to --limit items, page after page, as JSON lines or as `line` says:
    `page_of(page_size, page_token)` returns a page's items and the next page's token (empty after the last)."""
    remaining, token = args.limit, ""
    while remaining > 0:
        items, token = await page_of(min(remaining, _PAGE_SIZE), token)
        for item in items:
            _emit(json.dumps(_json(item)) if args.json else line(item))
        remaining -= len(items)
        if not token:
            break


async def _list(services: Services, args: argparse.Namespace) -> None:
    async def page_of(size: int, token: str) -> tuple[Sequence[quiz_pb2.Quiz], str]:
        page = await services.quiz.ListQuizzes(
            quiz_pb2.ListQuizzesRequest(page_size=size, page_token=token, identity_token=_identity_token(args)),
            timeout=services.timeout_s,
        )
        return page.quizzes, page.next_page_token

    await _emit_listed(args, page_of, lambda quiz: f"{quiz.quiz_id}  {quiz.create_time.ToJsonString()}  {quiz.title}")


# --- sessions: a quiz run again ---


def _identity_token(args: argparse.Namespace) -> str:
    token: str = args.identity_token or IDENTITY_TOKEN.read(os.environ)
    return token


def _owner(args: argparse.Namespace) -> dict[str, str]:
    """The owner's credential: their identity token, or the quiz's host credential (anonymous mode)."""
    identity = _identity_token(args)
    host = args.host_token or HOST_TOKEN.read(os.environ)
    if not identity and not host:
        raise UsageError(
            f"the quiz's owner is needed: pass --identity-token (or set {IDENTITY_TOKEN.name}) for a quiz created "
            f"signed in, else --host-token (or set {HOST_TOKEN.name}) with the quiz's first host credential"
        )
    return {"identity_token": identity, "host_token": host}


async def _run_again(services: Services, args: argparse.Namespace) -> None:
    # Not retried: a repeat would start a second session.
    response = await services.quiz.StartSession(
        quiz_pb2.StartSessionRequest(quiz_id=args.quiz_id, **_owner(args)), timeout=services.timeout_s
    )
    if args.json:
        _emit(json.dumps(_json(response)))
    else:
        _emit(f"session_id  {response.session.session_id}")
        _emit(f"host_token  {response.host_token}")


async def _sessions(services: Services, args: argparse.Namespace) -> None:
    owner = _owner(args)

    async def page_of(size: int, token: str) -> tuple[Sequence[quiz_pb2.Session], str]:
        page = await services.quiz.ListSessions(
            quiz_pb2.ListSessionsRequest(quiz_id=args.quiz_id, page_size=size, page_token=token, **owner),
            timeout=services.timeout_s,
        )
        return page.sessions, page.next_page_token

    await _emit_listed(
        args,
        page_of,
        lambda s: f"{s.session_id}  {s.create_time.ToJsonString()}  {PHASE_NAMES.get(s.phase, 'lobby')}",
    )


# --- host actions ---


def _host_token(args: argparse.Namespace) -> str:
    token: str = args.host_token or HOST_TOKEN.read(os.environ)
    if not token:
        raise UsageError(f"a host credential is needed: pass --host-token or set {HOST_TOKEN.name}")
    return token


def _state_line(state: quiz_pb2.QuizState) -> str:
    line = f"{state.quiz_id}  {PHASE_NAMES.get(state.phase, 'lobby')}"
    if state.question_index >= 0:
        line += f"  question {state.question_index + 1}/{state.question_count}"
    return line + f"  players {state.participant_count}"


# quizctl's host commands: each one's QuizService RPC and request.
_HOST_COMMANDS: Final[Mapping[str, tuple[str, Callable[..., Message]]]] = {
    "start": ("StartQuiz", quiz_pb2.StartQuizRequest),
    "next": ("NextQuestion", quiz_pb2.NextQuestionRequest),
    "close": ("CloseQuestion", quiz_pb2.CloseQuestionRequest),
    "end": ("EndQuiz", quiz_pb2.EndQuizRequest),
}


# Every host action may be repeated safely (start and end are idempotent, next and close name their
# question), so one that met UNAVAILABLE, and may have taken effect, is sent again a few times.
_HOST_ATTEMPTS: Final = 4


async def _host_action(services: Services, args: argparse.Namespace) -> None:
    method, request_type = _HOST_COMMANDS[args.command]
    named: dict[str, int] = {}
    if args.command in ("next", "close"):
        current = await services.quiz.GetQuizState(
            quiz_pb2.GetQuizStateRequest(quiz_id=args.quiz_id), timeout=services.timeout_s
        )
        named["question_index"] = current.state.question_index + (1 if args.command == "next" else 0)
    request = request_type(quiz_id=args.quiz_id, host_token=_host_token(args), **named)
    for attempt in range(_HOST_ATTEMPTS):
        try:
            response = await getattr(services.quiz, method)(request, timeout=services.timeout_s)
            break
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE or attempt == _HOST_ATTEMPTS - 1:
                raise
            await asyncio.sleep(0.5 * 2**attempt)
    if args.json:
        _emit(json.dumps(_json(response)))
        return
    _emit(_state_line(response.state))
    if args.command == "close":
        results = response.results
        _emit(f"correct {list(results.correct_choices)}  answers per choice {list(results.choice_counts)}")


# --- leaderboard ---


async def _leaderboard(services: Services, args: argparse.Namespace) -> None:
    response = await services.leaderboard.GetLeaderboard(
        leaderboard_pb2.GetLeaderboardRequest(quiz_id=args.quiz_id, top_n=args.top), timeout=services.timeout_s
    )
    if args.json:
        _emit(json.dumps(_json(response)))
        return
    _emit(f"{args.quiz_id}: {response.player_count} players, version {response.version}")
    for entry in response.top_entries:
        _emit(f"{entry.rank:>4}  {entry.score:>8}  {entry.nickname}  ({entry.player_id})")


# --- export ---


async def _export(services: Services, args: argparse.Namespace) -> None:
    """The same CSV as the edge's GET /quizzes/{quiz_id}/results.csv: one row per player per question
    asked so far. persistence_svc stores results from Kafka moments after they are judged, so export
    once the quiz has ended to have every answer."""
    quiz_id, timeout = args.quiz_id, services.timeout_s
    state = (await services.quiz.GetQuizState(quiz_pb2.GetQuizStateRequest(quiz_id=quiz_id), timeout=timeout)).state
    stored = await read_stored_quiz(
        quiz_id,
        functools.partial(services.persistence.ListParticipants, timeout=timeout),
        functools.partial(services.persistence.ListAnswers, timeout=timeout),
    )
    sys.stdout.write(results_csv(quiz_id, state.question_index + 1, stored.participants, stored.answers))
    sys.stdout.flush()


# --- tail ---


class _Enough(Exception):
    """--count lines have been printed."""


async def _tail(services: Services, args: argparse.Namespace) -> None:
    printed = 0

    async def pump(stream: str, responses: AsyncIterator[Message]) -> None:
        nonlocal printed
        async for response in responses:
            _emit(json.dumps({"stream": stream, **_json(response)}))
            printed += 1
            if args.count and printed >= args.count:
                raise _Enough

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(pump("quiz", services.quiz.WatchQuiz(quiz_pb2.WatchQuizRequest(quiz_id=args.quiz_id))))
            group.create_task(
                pump(
                    "leaderboard",
                    services.leaderboard.WatchLeaderboard(
                        leaderboard_pb2.WatchLeaderboardRequest(quiz_id=args.quiz_id)
                    ),
                )
            )
    except* _Enough:
        pass
    except* grpc.aio.AioRpcError as failed:
        raise failed.exceptions[0] from None
    except* BrokenPipeError as gone:
        raise gone.exceptions[0] from None


# --- the command line ---

_COMMANDS: Final[Mapping[str, Callable[[Services, argparse.Namespace], Any]]] = {
    "create": _create,
    "list": _list,
    "run-again": _run_again,
    "sessions": _sessions,
    "start": _host_action,
    "next": _host_action,
    "close": _host_action,
    "end": _host_action,
    "leaderboard": _leaderboard,
    "export": _export,
    "tail": _tail,
}


def _connection_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """Where the services are. Accepted before and after the command; only the top level has defaults,
    so an option given after the command is not overwritten by them."""
    for option, service, address in (
        ("--quiz-addr", "quiz_svc", QUIZ_ADDR),
        ("--leaderboard-addr", "leaderboard_svc", LEADERBOARD_ADDR),
        ("--persistence-addr", "persistence_svc", PERSISTENCE_ADDR),
    ):
        parser.add_argument(
            option,
            default=address.read(os.environ) if defaults else argparse.SUPPRESS,
            help=f"{service} (default: ${address.name} or {address.default})",
        )
    parser.add_argument(
        "--timeout", type=float, default=10.0 if defaults else argparse.SUPPRESS, help="seconds per call (default 10)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="quizctl",
        description="Run and inspect quizmesh quizzes over the services' gRPC APIs.",
        epilog=(
            "Exit codes: 0 ok, 1 other error, 2 usage, 3 not found, 4 permission denied, 5 unavailable,"
            " 141 stdout's reader went away."
        ),
    )
    _connection_options(parser, defaults=True)
    connection = _Parser(add_help=False)
    _connection_options(connection, defaults=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    create = commands.add_parser(
        "create", parents=[connection], help="create (or import) a quiz from a JSON, CSV or XLSX file"
    )
    create.add_argument(
        "--file",
        "-f",
        required=True,
        help="the quiz as JSON, CSV or XLSX, or - for stdin (docs/examples); pictures and clips it names are read"
        " from its folder",
    )
    create.add_argument("--title", help="the quiz's title (default: the document's, else the file's name)")
    create.add_argument("--json", action="store_true", help="print the created quiz as JSON")
    create.add_argument(
        "--identity-token", help="create it signed in, owned by this token's user (default: $QUIZMESH_IDENTITY_TOKEN)"
    )
    create.add_argument("--requires-sign-in", action="store_true", help="admit signed-in players only")

    listing = commands.add_parser("list", parents=[connection], help="list quizzes, newest first")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.add_argument(
        "--identity-token", help="only this token's user's quizzes (default: $QUIZMESH_IDENTITY_TOKEN)"
    )

    for name, text in [
        ("run-again", "start a new session of a quiz (its owner): a new join code and host credential"),
        ("sessions", "list a quiz's sessions, newest first (its owner)"),
    ]:
        owned = commands.add_parser(name, parents=[connection], help=text)
        owned.add_argument("quiz_id", help="the quiz's ID (its first session's join code)")
        owned.add_argument("--identity-token", help="the owner's identity token (default: $QUIZMESH_IDENTITY_TOKEN)")
        owned.add_argument("--host-token", help="the quiz's first host credential (default: $QUIZMESH_HOST_TOKEN)")
        owned.add_argument("--json", action="store_true", help="print JSON")
        if name == "sessions":
            owned.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")

    for name, text in [
        ("start", "start the quiz and open its first question"),
        ("next", "open the next question"),
        ("close", "close the open question now and show its results"),
        ("end", "end the quiz"),
    ]:
        action = commands.add_parser(name, parents=[connection], help=f"{text} (host)")
        action.add_argument("quiz_id")
        action.add_argument("--host-token", help="the host credential (default: $QUIZMESH_HOST_TOKEN)")
        action.add_argument("--json", action="store_true", help="print the reply as JSON")

    board = commands.add_parser("leaderboard", parents=[connection], help="show a quiz's leaderboard")
    board.add_argument("quiz_id")
    board.add_argument("--top", type=int, default=10, help="how many entries (default 10, at most 1000)")
    board.add_argument("--json", action="store_true", help="print the reply as JSON")

    export = commands.add_parser("export", parents=[connection], help="write a quiz's results as CSV to stdout")
    export.add_argument("quiz_id")

    tail = commands.add_parser(
        "tail", parents=[connection], help="print a quiz's state and leaderboard changes as JSON lines"
    )
    tail.add_argument("quiz_id")
    tail.add_argument("--count", type=int, default=0, help="stop after this many lines (default: until Ctrl+C)")
    return parser


def _located(exc: grpc.aio.AioRpcError, document: QuizDocument) -> grpc.aio.AioRpcError:
    """quiz_svc's refusal of a question, naming the row (or JSON path) of the document it came from."""
    trailers = exc.trailing_metadata() or ()
    index = next((v for k, v in trailers if k == QUESTION_INDEX_METADATA_KEY and isinstance(v, str)), "")
    if not index.isdigit():
        return exc
    details = document.locate(int(index), exc.details() or "")
    return grpc.aio.AioRpcError(exc.code(), exc.initial_metadata(), trailers, details)


def _describe(exc: grpc.aio.AioRpcError, args: argparse.Namespace) -> str:
    details = " ".join((exc.details() or "").split())
    reason = next((v for k, v in exc.trailing_metadata() or () if k == ERROR_CODE_METADATA_KEY), "")
    line = f"{exc.code().name}: {details}" + (f" [{reason}]" if reason else "")
    if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        line += f" (quiz {args.quiz_addr}, leaderboard {args.leaderboard_addr}, persistence {args.persistence_addr})"
    return line


async def _run(args: argparse.Namespace) -> None:
    async with _connect(args) as services:
        await _COMMANDS[args.command](services, args)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns its exit code (the console script exits with it)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    try:
        asyncio.run(_run(args))
    except UsageError as exc:
        print(f"quizctl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except grpc.aio.AioRpcError as exc:
        print(f"quizctl: {_describe(exc, args)}", file=sys.stderr)
        return _EXIT_CODES.get(exc.code(), EXIT_OTHER)
    except KeyboardInterrupt:
        return EXIT_OK if args.command == "tail" else 130
    except BrokenPipeError:
        # What is still buffered has nowhere to go; flushing it at exit would raise (and print) again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_READER_GONE
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
