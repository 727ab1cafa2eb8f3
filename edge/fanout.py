"""Fan-out of leaderboards and quiz states to this process's sockets.

Per quiz this process watches ONE leaderboard stream and ONE quiz stream, however many of its sockets are
in that quiz: a gRPC stream message costs 5-10x a WebSocket frame, so one per player would not scale.
Each update is encoded once. A leaderboard frame is the shared top-N JSON plus a few bytes of the
recipient's own standing; a quiz-state frame is the same bytes for everyone. Frames are written straight
to each socket's transport (`edge/wire.py`): no task, queue or re-encoding per recipient.
A socket's wire protocol (plain JSON, or Socket.IO events) only adds constant bytes around that JSON, once
per update per protocol.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator
from typing import Final, Protocol, TypeVar

import orjson

from edge import protocol
from edge.telemetry import EdgeTelemetry
from edge.wire import PLAIN_JSON, Framing, Pushed, Transport, text_frames
from quizmesh.leaderboard.v1 import leaderboard_service_pb2 as leaderboard_pb2
from quizmesh.quiz.v1 import quiz_service_pb2 as quiz_pb2

log = logging.getLogger(__name__)

_M = TypeVar("_M")


class FeedNotFound(Exception):
    """The watched quiz does not exist; watching it again will not help."""


class FeedSource(Protocol):
    """Where a quiz's updates come from (the gRPC services, or a fake in tests)."""

    def watch_quiz(self, quiz_id: str) -> AsyncIterator[quiz_pb2.WatchQuizResponse]:
        """The quiz's state changes, starting with the current state; waits for the service to be
        reachable rather than failing while it is not."""
        ...

    def watch_leaderboard(self, quiz_id: str) -> AsyncIterator[leaderboard_pb2.Leaderboard]:
        """The quiz's rankings, starting with the current one; waits as watch_quiz does."""
        ...


class Recipient:
    """One socket's membership in one quiz: where to write, in which protocol, and whose standing to show it."""

    __slots__ = ("framing", "is_host", "on_kicked", "player_id", "quiz_id", "transport")

    def __init__(
        self,
        transport: Transport,
        quiz_id: str,
        *,
        player_id: str = "",
        is_host: bool = False,
        on_kicked: Callable[[], None] | None = None,
        framing: Framing = PLAIN_JSON,
    ) -> None:
        self.transport = transport
        self.quiz_id = quiz_id
        self.player_id = player_id
        self.is_host = is_host
        self.on_kicked = on_kicked
        self.framing = framing


class Board:
    """One leaderboard update, encoded once: the shared prefix and a cheap personal suffix per player.

    The personal frames are built for all ranked players at once, in flat comprehensions over plain
    tuples, rather than one player at a time as each socket is written: per player a frame costs about a
    tenth of what building it through method calls did, and the write loop is left with a dict lookup per
    socket. At 10,000 recipients the per-player building, not the socket write, was most of the fan-out's
    own CPU.
    """

    __slots__ = ("_entries", "_frames", "_last_entry_before", "_prefix", "_suffix_steps", "anonymous", "version")

    def __init__(self, leaderboard: leaderboard_pb2.Leaderboard, top_n: int) -> None:
        entries = leaderboard.entries
        self.version = leaderboard.version
        self._entries = entries
        self._frames: dict[Framing, dict[str, bytes]] = {}  # per protocol: each ranked player's frame
        self._suffix_steps: dict[tuple[int, int], tuple[list[str], list[bytes]]] = {}  # by (first index, step)
        self._last_entry_before: dict[int, bytes] = {}  # the entry JSON just above each step
        shared = orjson.dumps(
            {
                "type": "leaderboard_updated",
                "quiz_id": leaderboard.quiz_id,
                "version": leaderboard.version,
                "player_count": len(entries),
                "top": [_entry_json(entry) for entry in entries[:top_n]],
            }
        )
        self._prefix = shared[:-1]  # without its closing brace; each recipient's part closes it
        # Hosts, and players not ranked yet, all get these same bytes (per protocol).
        self.anonymous = Pushed("leaderboard_updated", self._prefix + b',"me":null,"ahead":null}')

    def frame_for(self, player_id: str, framing: Framing = PLAIN_JSON) -> bytes:
        frame = self.personal_frames(framing).get(player_id)
        return frame if frame is not None else self.anonymous.frame(framing)

    def personal_frames(self, framing: Framing) -> dict[str, bytes]:
        """Each ranked player's frame in this protocol, by player ID (players not in it get `anonymous`)."""
        frames = self._frames.get(framing)
        if frames is None:
            for _ in self.build_personal_frames(framing, len(self._entries) or 1):
                pass
            frames = self._frames[framing]
        return frames

    def build_personal_frames(self, framing: Framing, step: int) -> Iterator[None]:
        """Builds the personal frames in this protocol `step` ranked players at a time, yielding after
        each step, so that a caller can let other work run between steps of a big quiz's building."""
        if framing in self._frames:
            return
        opening, closing = framing.enclosure("leaderboard_updated")
        prefix = opening + self._prefix
        frames: dict[str, bytes] = {}
        for start in range(0, len(self._entries), step):
            player_ids, suffixes = self._suffixes(start, step)
            if closing:
                suffixes = [suffix + closing for suffix in suffixes]
            frames.update(zip(player_ids, text_frames(prefix, suffixes), strict=True))
            yield
        self._frames[framing] = frames

    def _suffixes(self, start: int, step: int) -> tuple[list[str], list[bytes]]:
        """The player IDs and personal suffixes of ranking positions start to start + step, the same in
        every protocol: built once, in order (each player's "ahead" is the entry one place up, the
        leader has none, so a step needs the one before it)."""
        built = self._suffix_steps.get((start, step))
        if built is not None:
            return built
        dumps = orjson.dumps
        rows = [(e.rank, e.score, e.player_id, e.nickname) for e in self._entries[start : start + step]]
        entries = [_ENTRY_JSON % (rank, dumps(pid), dumps(nickname), score) for rank, score, pid, nickname in rows]
        aheads = [self._last_entry_before.get(start, b"null"), *entries]
        self._last_entry_before[start + step] = entries[-1]
        suffixes = [_PERSONAL_SUFFIX % (rank, score, up) for (rank, score, _, _), up in zip(rows, aheads, strict=False)]
        built = self._suffix_steps[start, step] = [row[2] for row in rows], suffixes
        return built


_PERSONAL_SUFFIX: Final = b',"me":{"rank":%d,"score":%d},"ahead":%b}'
_ENTRY_JSON: Final = b'{"rank":%d,"player_id":%b,"nickname":%b,"score":%d}'  # _entry_json's keys, in its order


def _entry_json(entry: leaderboard_pb2.LeaderboardEntry) -> dict[str, object]:
    return {"rank": entry.rank, "player_id": entry.player_id, "nickname": entry.nickname, "score": entry.score}


def quiz_state_payload(update: quiz_pb2.WatchQuizResponse) -> bytes:
    message: dict[str, object] = {"type": "quiz_state", "state": protocol.state_json(update.state)}
    if update.HasField("results"):
        message["results"] = protocol.results_json(update.results)
    if update.kicked_player_id:
        message["kicked_player_id"] = update.kicked_player_id
    return orjson.dumps(message)


def _state_key(state: quiz_pb2.QuizState) -> bytes:
    """What a state says, apart from when it was read."""
    timeless = quiz_pb2.QuizState()
    timeless.CopyFrom(state)
    timeless.ClearField("server_time")
    return timeless.SerializeToString(deterministic=True)


class _QuizFeed:
    """A quiz's local recipients, its two upstream watches and the latest of what they delivered."""

    def __init__(self, quiz_id: str, state: quiz_pb2.QuizState) -> None:
        self.quiz_id = quiz_id
        self.recipients: set[Recipient] = set()
        self.tasks: list[asyncio.Task[None]] = []
        self.visible = state.leaderboard_visible
        self.ended = state.phase == quiz_pb2.QUIZ_PHASE_ENDED
        self.state_time_ms = protocol.timestamp_ms(state.server_time)
        self.board: Board | None = None
        self.announced_count = -1  # the participant count last pushed to players of a hidden leaderboard
        self.state_message: Pushed | None = None
        self.state_message_time_ms = -1
        self.last_broadcast = _state_key(state)
        # The newest state version broadcast (or that the first socket's reply carried), and the last
        # question whose results were broadcast: states and results may be pushed more than once, late,
        # by any quiz_svc replica finishing a transition, and every stream starts with the current state.
        self.version = state.version
        self.results_index = -1

    def observe(self, state: quiz_pb2.QuizState) -> bool:
        """Adopts state if it is the newest seen; returns whether players just got to see the board."""
        time_ms = protocol.timestamp_ms(state.server_time)
        if time_ms < self.state_time_ms:
            return False
        self.state_time_ms = time_ms
        shown_before = self.players_see_board
        self.visible = state.leaderboard_visible
        self.ended = state.phase == quiz_pb2.QUIZ_PHASE_ENDED
        return self.players_see_board and not shown_before

    @property
    def players_see_board(self) -> bool:
        """The final ranking is every player's to see, even when the host hid the live one."""
        return self.visible or self.ended


class Fanout:
    """Attaches sockets to quizzes and keeps exactly one pair of upstream watches per watched quiz."""

    def __init__(
        self,
        source: FeedSource,
        *,
        top_n: int,
        max_buffered_bytes: int,
        retry_pause_s: float = 0.1,
        retry_pause_max_s: float = 2.0,
        broadcast_slice: int = 500,
        telemetry: EdgeTelemetry | None = None,
    ) -> None:
        self._telemetry = telemetry or EdgeTelemetry.disabled()
        self._broadcast_slice = broadcast_slice
        self._source = source
        self._top_n = top_n
        self._max_buffered = max_buffered_bytes
        self._retry_pause_s = retry_pause_s
        self._retry_pause_max_s = retry_pause_max_s
        self._feeds: dict[str, _QuizFeed] = {}

    @property
    def watched_quizzes(self) -> frozenset[str]:
        return frozenset(self._feeds)

    def attach(self, recipient: Recipient, state: quiz_pb2.QuizState) -> None:
        """Adds a socket to its quiz, given the state its reply carried; starts the watches if first.

        Whatever the feed delivered after that state (a question opened while the join was in flight)
        and the latest leaderboard are sent to the newcomer right away, so it misses nothing.
        """
        feed = self._feeds.get(recipient.quiz_id)
        if feed is None:
            feed = self._feeds[recipient.quiz_id] = _QuizFeed(recipient.quiz_id, state)
            feed.tasks = [
                asyncio.create_task(self._watch_quiz(feed), name=f"watch-quiz-{feed.quiz_id}"),
                asyncio.create_task(self._watch_leaderboard(feed), name=f"watch-leaderboard-{feed.quiz_id}"),
            ]
        else:
            self._observe(feed, state)
        feed.recipients.add(recipient)
        framing = recipient.framing
        if feed.state_message is not None and feed.state_message_time_ms > protocol.timestamp_ms(state.server_time):
            self._write(recipient, feed.state_message.frame(framing), droppable=False)
        if feed.board is not None:
            if recipient.is_host:
                self._write(recipient, feed.board.anonymous.frame(framing), droppable=True)
            elif feed.players_see_board:
                self._write(recipient, feed.board.frame_for(recipient.player_id, framing), droppable=True)

    def detach(self, recipient: Recipient) -> None:
        """Removes a socket; the quiz's watches stop with its last local socket."""
        feed = self._feeds.get(recipient.quiz_id)
        if feed is None or recipient not in feed.recipients:
            return
        feed.recipients.discard(recipient)
        if not feed.recipients:
            del self._feeds[recipient.quiz_id]
            for task in feed.tasks:
                task.cancel()

    def observe_state(self, state: quiz_pb2.QuizState) -> None:
        """Learns from a state read by a unary call (e.g. the host's own visibility change)."""
        feed = self._feeds.get(state.quiz_id)
        if feed is not None:
            self._observe(feed, state)

    async def close(self) -> None:
        tasks = [task for feed in self._feeds.values() for task in feed.tasks]
        self._feeds.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- delivery ---

    def _observe(self, feed: _QuizFeed, state: quiz_pb2.QuizState) -> None:
        if feed.observe(state) and feed.board is not None:
            self._send_board(feed, feed.board, to_hosts=False, to_players=True)

    def _write(self, recipient: Recipient, frame: bytes, *, droppable: bool) -> None:
        transport = recipient.transport
        if transport.is_closing():
            return
        if transport.get_write_buffer_size() > self._max_buffered:
            if droppable:
                return  # a leaderboard is a snapshot: the next one supersedes this one
            # A socket this far behind cannot follow the quiz; cut it so the client resumes afresh.
            log.warning("cutting off a socket of quiz %s that stopped reading", recipient.quiz_id)
            transport.abort()
            return
        transport.write(frame)

    async def deliver_leaderboard(self, quiz_id: str, leaderboard: leaderboard_pb2.Leaderboard) -> None:
        """Writes the update to the quiz's sockets, a slice at a time: between slices the event loop runs
        whatever is ready (answers' replies, reads), which a 10,000-socket broadcast would otherwise hold
        up for its whole length (tens of milliseconds)."""
        feed = self._feeds.get(quiz_id)
        if feed is None or (feed.board is not None and leaderboard.version <= feed.board.version):
            return  # a replay after reconnecting, or a late message for a quiz no longer watched
        board = feed.board = Board(leaderboard, self._top_n)
        answered_ms = leaderboard.last_answer_time.ToMilliseconds() if leaderboard.HasField("last_answer_time") else 0
        with self._telemetry.broadcast(leaderboard.trace_context, answered_ms, len(feed.recipients)):
            if feed.players_see_board:
                await self._send_board_in_slices(feed, board)
                return
            self._send_board(feed, board, to_hosts=True, to_players=False)
            # Players of a hidden leaderboard still see the participant count change.
            count = len(leaderboard.entries)
            if count != feed.announced_count:
                feed.announced_count = count
                participants = Pushed(
                    "participants",
                    orjson.dumps({"type": "participants", "quiz_id": quiz_id, "player_count": count}),
                )
                for recipient in feed.recipients:
                    if not recipient.is_host:
                        self._write(recipient, participants.frame(recipient.framing), droppable=True)

    async def _send_board_in_slices(self, feed: _QuizFeed, board: Board) -> None:
        recipients: Collection[Recipient] = feed.recipients
        slice_size = self._broadcast_slice
        if len(recipients) <= slice_size:
            self._send_board(feed, board, to_hosts=True, to_players=True)
            return
        everyone = list(recipients)
        framings = {recipient.framing for recipient in everyone}
        building = itertools.chain.from_iterable(board.build_personal_frames(f, slice_size) for f in framings)
        for _ in building:
            await asyncio.sleep(0)
            if feed.board is not board:
                return  # superseded: its successor goes to everyone
        for start in range(0, len(everyone), slice_size):
            # Sockets that left while the loop ran other work are skipped.
            still_here = [r for r in everyone[start : start + slice_size] if r in feed.recipients]
            self._send_board(feed, board, to_hosts=True, to_players=True, recipients=still_here)
            await asyncio.sleep(0)
            if feed.board is not board:
                return

    def _send_board(
        self,
        feed: _QuizFeed,
        board: Board,
        *,
        to_hosts: bool,
        to_players: bool,
        recipients: Collection[Recipient] | None = None,
    ) -> None:
        """Writes the board to the quiz's hosts, its players, or both (of recipients, or all of the quiz's).

        The per-socket loop is kept flat (no call per socket beyond the transport's and a dict lookup): it
        runs once per socket per update. A socket whose buffer is full skips this board; a leaderboard is
        a snapshot, and the next one supersedes it.
        """
        limit = self._max_buffered
        frames_in: dict[Framing, dict[str, bytes]] = {}
        for recipient in feed.recipients if recipients is None else recipients:
            transport = recipient.transport
            if transport.is_closing() or transport.get_write_buffer_size() > limit:
                continue
            framing = recipient.framing
            if recipient.is_host:
                if to_hosts:
                    transport.write(board.anonymous.frame(framing))
            elif to_players:
                frames = frames_in.get(framing)
                if frames is None:
                    frames = frames_in[framing] = board.personal_frames(framing)
                frame = frames.get(recipient.player_id)
                transport.write(frame if frame is not None else board.anonymous.frame(framing))

    def deliver_quiz_update(self, quiz_id: str, update: quiz_pb2.WatchQuizResponse) -> None:
        feed = self._feeds.get(quiz_id)
        if feed is None:
            return
        state = update.state
        if state.version < feed.version:
            return  # a transition pushed late, after a newer one
        revealed = feed.observe(state)
        key = _state_key(state)
        # A (re)opened stream starts with the current state, which every socket may already have, and a
        # transition may be pushed twice (its process died after pushing, and another finished it). A
        # service that does not number its states (version 0) is followed by what the state says.
        newer = state.version > feed.version or (state.version == 0 and key != feed.last_broadcast)
        unseen_results = update.HasField("results") and update.results.question_index > feed.results_index
        if newer or unseen_results or update.kicked_player_id:
            feed.last_broadcast, feed.version = key, state.version
            if update.HasField("results"):
                feed.results_index = max(feed.results_index, update.results.question_index)
            self._broadcast_quiz_update(feed, update)
        if revealed and feed.board is not None:
            self._send_board(feed, feed.board, to_hosts=False, to_players=True)

    def _broadcast_quiz_update(self, feed: _QuizFeed, update: quiz_pb2.WatchQuizResponse) -> None:
        message = feed.state_message = Pushed("quiz_state", quiz_state_payload(update))
        feed.state_message_time_ms = protocol.timestamp_ms(update.state.server_time)
        kicked_id = update.kicked_player_id
        kicked: list[Recipient] = []
        for recipient in feed.recipients:
            if kicked_id and not recipient.is_host and recipient.player_id == kicked_id:
                kicked.append(recipient)
            else:
                self._write(recipient, message.frame(recipient.framing), droppable=False)
        if kicked:
            kicked_message = Pushed("kicked", orjson.dumps({"type": "kicked", "quiz_id": feed.quiz_id}))
            for recipient in kicked:
                self._write(recipient, kicked_message.frame(recipient.framing), droppable=False)
                self.detach(recipient)
                if recipient.on_kicked is not None:
                    recipient.on_kicked()

    # --- upstream watches ---

    async def _watch_quiz(self, feed: _QuizFeed) -> None:
        async def deliver(quiz_id: str, update: quiz_pb2.WatchQuizResponse) -> None:
            self.deliver_quiz_update(quiz_id, update)

        await self._keep_watching(feed, "quiz", lambda: self._source.watch_quiz(feed.quiz_id), deliver)

    async def _watch_leaderboard(self, feed: _QuizFeed) -> None:
        await self._keep_watching(
            feed,
            "leaderboard",
            lambda: self._source.watch_leaderboard(feed.quiz_id),
            self.deliver_leaderboard,
        )

    async def _keep_watching(
        self,
        feed: _QuizFeed,
        what: str,
        open_stream: Callable[[], AsyncIterator[_M]],
        deliver: Callable[[str, _M], Awaitable[None]],
    ) -> None:
        """Watches until cancelled. A broken stream is opened again at once: the source's new stream
        waits until the service can be reached again (the channel's connectivity, not a timer), so it
        resumes as soon as a replica serves, and it starts with the full current state (and the results
        of a question closed meanwhile), so a break loses clients nothing. Only a stream that breaks
        again before delivering anything is retried after a pause, doubling up to retry_pause_max_s,
        so that a service refusing streams is not called in a loop."""
        failures = 0
        while True:
            try:
                async for message in open_stream():
                    failures = 0
                    await deliver(feed.quiz_id, message)
            except FeedNotFound:
                log.info("stopped watching the %s of quiz %s: it does not exist", what, feed.quiz_id)
                return
            except Exception as exc:
                log.warning("the %s stream of quiz %s broke (%s); reconnecting", what, feed.quiz_id, exc)
            else:
                if feed.ended:
                    return
                log.info("the %s stream of quiz %s ended; reconnecting", what, feed.quiz_id)
            if failures:
                pause = min(self._retry_pause_s * 2 ** (failures - 1), self._retry_pause_max_s)
                await asyncio.sleep(pause * random.uniform(0.5, 1.0))
            failures += 1
