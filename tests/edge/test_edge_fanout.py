"""The fan-out's encoding and membership, with recording transports and a source that never speaks."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from edge.fanout import Board, Fanout, Recipient
from edge.wire import PLAIN_JSON, text_frame, text_frames
from quizmesh.leaderboard.v1 import leaderboard_service_pb2 as leaderboard_pb2
from quizmesh.quiz.v1 import quiz_service_pb2 as quiz_pb2
from tests.edge.edge_fakes import RecordingTransport, board, decode_frames

QUIZ = "q-fan"
RANKING = [("p1", "Ann", 3000), ("p2", "Bob", 2000), ('p"3', 'Cy "the" Kid', 1000), ("p4", "Dee", 0)]


class SilentSource:
    """Counts watches and keeps them open without delivering anything; tests deliver by hand."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self.open: Counter[tuple[str, str]] = Counter()

    async def _hold(self, key: tuple[str, str]) -> AsyncIterator[Any]:
        self.calls[key] += 1
        self.open[key] += 1
        try:
            await asyncio.Event().wait()
            yield  # pragma: no cover - never reached
        finally:
            self.open[key] -= 1

    def watch_quiz(self, quiz_id: str) -> AsyncIterator[quiz_pb2.WatchQuizResponse]:
        return self._hold(("quiz", quiz_id))

    def watch_leaderboard(self, quiz_id: str) -> AsyncIterator[leaderboard_pb2.Leaderboard]:
        return self._hold(("leaderboard", quiz_id))


def state(*, visible: bool = True, time_ms: int = 1_000, phase: int = quiz_pb2.QUIZ_PHASE_LOBBY) -> Any:
    s = quiz_pb2.QuizState(quiz_id=QUIZ, phase=phase, leaderboard_visible=visible)  # type: ignore[arg-type]
    s.server_time.FromMilliseconds(time_ms)
    return s


def player(pid: str) -> tuple[Recipient, RecordingTransport]:
    transport = RecordingTransport()
    return Recipient(transport, QUIZ, player_id=pid), transport


def everyone_in_the_ranking(hub: Fanout) -> list[tuple[Recipient, RecordingTransport]]:
    """Every player of RANKING attached to the hub, in ranking order."""
    members = [player(pid) for pid, _, _ in RANKING]
    for member, _ in members:
        hub.attach(member, state())
    return members


def attached(hub: Fanout, pid: str, reply: Any) -> RecordingTransport:
    """A player attached with the state its join reply carried; what the hub sends it is recorded."""
    recipient, transport = player(pid)
    hub.attach(recipient, reply)
    return transport


def host() -> tuple[Recipient, RecordingTransport]:
    transport = RecordingTransport()
    return Recipient(transport, QUIZ, is_host=True), transport


@pytest.fixture
async def fanout() -> AsyncIterator[tuple[Fanout, SilentSource]]:
    source = SilentSource()
    hub = Fanout(source, top_n=2, max_buffered_bytes=1000)
    yield hub, source
    await hub.close()


def test_text_frames_use_the_right_length_encoding() -> None:
    for size in (0, 125, 126, 65535, 65536):
        payload = b'"' + b"x" * max(size - 2, 0) + b'"' if size >= 2 else b"1" * size or b"0"
        assert decode_frames(text_frame(payload)) == [__import__("orjson").loads(payload)]


def test_frames_built_together_match_frames_built_one_by_one() -> None:
    short, long = b'{"a":1', b'{"a":"' + b"y" * 200
    for prefix in (short, long, b'{"a":"' + b"z" * 70_000):
        suffixes = [b"}", b',"b":' + b"9" * 130 + b"}", b',"c":"' + b"w" * 60_000 + b'"}']
        assert text_frames(prefix, suffixes) == [text_frame(prefix, suffix) for suffix in suffixes]
    assert text_frames(long, []) == []


def each_turn(work: Callable[[], bool]) -> None:
    """Runs work once per turn of the event loop until it returns False."""

    def turn() -> None:
        if work():
            asyncio.get_running_loop().call_soon(turn)

    asyncio.get_running_loop().call_soon(turn)


async def test_a_big_broadcast_lets_other_work_run_between_its_slices() -> None:
    hub = Fanout(SilentSource(), top_n=2, max_buffered_bytes=1000, broadcast_slice=2)
    members = everyone_in_the_ranking(hub)
    written_at_each_turn: list[int] = []

    def count() -> bool:
        written_at_each_turn.append(sum(bool(t.messages()) for _, t in members))
        return written_at_each_turn[-1] < len(members)

    each_turn(count)
    await hub.deliver_leaderboard(QUIZ, board(QUIZ, 1, RANKING))
    await asyncio.sleep(0)
    await hub.close()
    # Two turns build the four frames two at a time, then each turn writes one slice; other work runs between.
    assert written_at_each_turn == [0, 0, 2, 4]
    assert [t.messages()[0]["me"]["rank"] for _, t in members] == [1, 2, 3, 4]


async def test_a_socket_that_leaves_mid_broadcast_gets_nothing_more_and_a_newer_board_supersedes() -> None:
    hub = Fanout(SilentSource(), top_n=2, max_buffered_bytes=1000, broadcast_slice=1)
    members = everyone_in_the_ranking(hub)
    left: list[Recipient] = []

    def one_leaves_once_one_got_it() -> bool:
        if not any(t.messages() for _, t in members):
            return True
        left.append([m for m, t in members if not t.messages()][-1])
        hub.detach(left[0])
        return False

    each_turn(one_leaves_once_one_got_it)
    await hub.deliver_leaderboard(QUIZ, board(QUIZ, 1, RANKING))
    stayed = [(m, t) for m, t in members if m is not left[0]]
    assert [len(t.messages()) for m, t in members if m is left[0]] == [0]
    assert all(len(t.messages()) == 1 for _, t in stayed)

    newer: list[asyncio.Task[None]] = []

    def a_newer_board_once_one_got_version_2() -> bool:
        if not any(len(t.messages()) == 2 for _, t in stayed):
            return True
        newer.append(asyncio.create_task(hub.deliver_leaderboard(QUIZ, board(QUIZ, 3, RANKING))))
        return False

    each_turn(a_newer_board_once_one_got_version_2)
    await hub.deliver_leaderboard(QUIZ, board(QUIZ, 2, RANKING))
    await newer[0]
    await hub.close()
    versions = [[m["version"] for m in t.messages()[1:]] for _, t in stayed]
    # Version 2 stopped part-way, once version 3 took over; version 3 reached everyone, once.
    assert all(v in ([2, 3], [3]) for v in versions)
    assert 0 < sum(v == [2, 3] for v in versions) < len(stayed)


def test_frames_built_in_steps_match_frames_built_at_once() -> None:
    ranking = [(f"p{i}", f"N{i}", 100 - i) for i in range(7)]
    stepwise = Board(board(QUIZ, 1, ranking), top_n=2)
    for _ in stepwise.build_personal_frames(PLAIN_JSON, 3):
        pass
    at_once = Board(board(QUIZ, 1, ranking), top_n=2)
    assert stepwise.personal_frames(PLAIN_JSON) == at_once.personal_frames(PLAIN_JSON)
    assert len(at_once.personal_frames(PLAIN_JSON)) == 7
    mixed = Board(board(QUIZ, 1, ranking), top_n=2)
    steps = mixed.build_personal_frames(PLAIN_JSON, 3)
    next(steps)  # a broadcast part-way through its building when a socket attaches
    assert mixed.frame_for("p6") == at_once.frame_for("p6")
    for _ in steps:
        pass
    assert mixed.personal_frames(PLAIN_JSON) == at_once.personal_frames(PLAIN_JSON)


def test_personal_parts_for_first_middle_last_and_unranked_players() -> None:
    encoded = Board(board(QUIZ, 7, RANKING), top_n=2)
    first, middle, last, unranked = (decode_frames(encoded.frame_for(pid))[0] for pid in ("p1", 'p"3', "p4", "p-new"))
    top = [
        {"rank": 1, "player_id": "p1", "nickname": "Ann", "score": 3000},
        {"rank": 2, "player_id": "p2", "nickname": "Bob", "score": 2000},
    ]
    shared = {"type": "leaderboard_updated", "quiz_id": QUIZ, "version": 7, "player_count": 4, "top": top}
    assert first == {**shared, "me": {"rank": 1, "score": 3000}, "ahead": None}
    assert middle == {
        **shared,
        "me": {"rank": 3, "score": 1000},
        "ahead": {"rank": 2, "player_id": "p2", "nickname": "Bob", "score": 2000},
    }
    assert last == {
        **shared,
        "me": {"rank": 4, "score": 0},
        "ahead": {"rank": 3, "player_id": 'p"3', "nickname": 'Cy "the" Kid', "score": 1000},
    }
    assert unranked == {**shared, "me": None, "ahead": None}


async def test_one_pair_of_watches_per_quiz_started_by_the_first_socket_stopped_by_the_last(
    fanout: tuple[Fanout, SilentSource],
) -> None:
    hub, source = fanout
    members = [player(f"p{i}")[0] for i in range(3)]
    for member in members:
        hub.attach(member, state())
    await asyncio.sleep(0)
    assert source.calls == Counter({("quiz", QUIZ): 1, ("leaderboard", QUIZ): 1})
    for member in members:
        hub.detach(member)
    await asyncio.sleep(0)
    assert hub.watched_quizzes == frozenset()
    assert +source.open == Counter()


async def test_each_player_gets_its_own_standing_and_the_host_gets_none(
    fanout: tuple[Fanout, SilentSource],
) -> None:
    hub, _ = fanout
    (ann, ann_t), (cy, cy_t), (dee, dee_t), (boss, boss_t) = player("p1"), player('p"3'), player("p4"), host()
    for member in (ann, cy, dee, boss):
        hub.attach(member, state())
    await hub.deliver_leaderboard(QUIZ, board(QUIZ, 1, RANKING))

    assert ann_t.messages()[0]["me"] == {"rank": 1, "score": 3000}
    assert cy_t.messages()[0]["ahead"]["player_id"] == "p2"
    assert dee_t.messages()[0]["me"] == {"rank": 4, "score": 0}
    host_view = boss_t.messages()[0]
    assert (host_view["me"], host_view["ahead"], host_view["player_count"]) == (None, None, 4)


async def test_hidden_leaderboard_reaches_hosts_only_and_players_once_revealed(
    fanout: tuple[Fanout, SilentSource],
) -> None:
    hub, _ = fanout
    (ann, ann_t), (boss, boss_t) = player("p1"), host()
    hub.attach(ann, state(visible=False))
    hub.attach(boss, state(visible=False))
    await hub.deliver_leaderboard(QUIZ, board(QUIZ, 1, RANKING))
    await hub.deliver_leaderboard(QUIZ, board(QUIZ, 2, RANKING))
    # Players see only the participant count, and only when it changed.
    assert ann_t.messages() == [{"type": "participants", "quiz_id": QUIZ, "player_count": 4}]
    assert len(boss_t.messages()) == 2

    hub.observe_state(state(visible=True, time_ms=2_000))
    assert ann_t.messages()[-1]["me"] == {"rank": 1, "score": 3000}


async def attached_to_a_hidden_board(hub: Fanout, pid: str) -> RecordingTransport:
    """A player who joined while the leaderboard was hidden, after the first ranking arrived."""
    transport = attached(hub, pid, state(visible=False))
    await hub.deliver_leaderboard(QUIZ, board(QUIZ, 1, RANKING))
    return transport


async def test_the_final_ranking_reaches_players_even_when_the_leaderboard_was_hidden(
    fanout: tuple[Fanout, SilentSource],
) -> None:
    hub, _ = fanout
    ann_t = await attached_to_a_hidden_board(hub, "p2")
    ended = state(visible=False, time_ms=2_000, phase=quiz_pb2.QUIZ_PHASE_ENDED)
    hub.deliver_quiz_update(QUIZ, quiz_pb2.WatchQuizResponse(state=ended))
    final = ann_t.messages()[-1]
    assert final["type"] == "leaderboard_updated"
    assert final["me"] == {"rank": 2, "score": 2000}


async def test_a_reveal_seen_only_on_the_stream_still_shows_players_the_board(
    fanout: tuple[Fanout, SilentSource],
) -> None:
    hub, _ = fanout
    ann_t = await attached_to_a_hidden_board(hub, "p1")
    hub.deliver_quiz_update(QUIZ, quiz_pb2.WatchQuizResponse(state=state(visible=True, time_ms=2_000)))
    assert [m["type"] for m in ann_t.messages()] == ["participants", "quiz_state", "leaderboard_updated"]


async def test_stale_or_replayed_leaderboards_are_dropped(fanout: tuple[Fanout, SilentSource]) -> None:
    hub, _ = fanout
    ann_t = attached(hub, "p1", state())
    await hub.deliver_leaderboard(QUIZ, board(QUIZ, 5, RANKING))
    await hub.deliver_leaderboard(QUIZ, board(QUIZ, 5, RANKING))  # the first message after a reconnect
    await hub.deliver_leaderboard(QUIZ, board(QUIZ, 4, RANKING))
    assert [m["version"] for m in ann_t.messages()] == [5]


async def test_quiz_state_is_one_encoding_for_all_and_kicked_player_is_detached(
    fanout: tuple[Fanout, SilentSource],
) -> None:
    hub, _ = fanout
    kicked_calls: list[str] = []
    (ann, ann_t), (bob, bob_t), (boss, boss_t) = player("p1"), player("p2"), host()
    bob.on_kicked = lambda: kicked_calls.append("p2")
    for member in (ann, bob, boss):
        hub.attach(member, state())
    update = quiz_pb2.WatchQuizResponse(state=state(time_ms=2_000), kicked_player_id="p2")
    hub.deliver_quiz_update(QUIZ, update)

    assert ann_t.data == boss_t.data
    assert ann_t.messages()[0]["type"] == "quiz_state"
    assert ann_t.messages()[0]["kicked_player_id"] == "p2"
    assert bob_t.messages() == [{"type": "kicked", "quiz_id": QUIZ}]
    assert kicked_calls == ["p2"]
    hub.deliver_quiz_update(QUIZ, quiz_pb2.WatchQuizResponse(state=state(time_ms=3_000)))
    assert len(bob_t.messages()) == 1


async def test_a_late_joiner_gets_what_happened_after_its_reply_state(
    fanout: tuple[Fanout, SilentSource],
) -> None:
    hub, _ = fanout
    attached(hub, "p1", state(time_ms=1_000))
    opened = state(time_ms=5_000, phase=quiz_pb2.QUIZ_PHASE_QUESTION_OPEN)
    hub.deliver_quiz_update(QUIZ, quiz_pb2.WatchQuizResponse(state=opened))
    await hub.deliver_leaderboard(QUIZ, board(QUIZ, 1, RANKING))

    bob, bob_t = player("p2")
    hub.attach(bob, state(time_ms=4_000))  # its join read the state before the question opened
    received = bob_t.messages()
    assert received[0]["state"]["phase"] == "question_open"
    assert received[1]["me"] == {"rank": 2, "score": 2000}

    cy_t = attached(hub, 'p"3', state(time_ms=6_000))
    assert [m["type"] for m in cy_t.messages()] == ["leaderboard_updated"]


async def test_slow_readers_skip_leaderboards_and_are_cut_off_for_quiz_states(
    fanout: tuple[Fanout, SilentSource],
) -> None:
    hub, _ = fanout
    ann_t = attached(hub, "p1", state())
    ann_t.buffered = 10_000
    await hub.deliver_leaderboard(QUIZ, board(QUIZ, 1, RANKING))
    assert ann_t.messages() == []
    assert not ann_t.aborted
    opened = state(time_ms=2_000, phase=quiz_pb2.QUIZ_PHASE_QUESTION_OPEN)
    hub.deliver_quiz_update(QUIZ, quiz_pb2.WatchQuizResponse(state=opened))
    assert ann_t.aborted


async def test_a_stream_opening_with_the_state_sockets_already_have_sends_nothing(
    fanout: tuple[Fanout, SilentSource],
) -> None:
    hub, _ = fanout
    ann_t = attached(hub, "p1", state(time_ms=1_000))
    hub.deliver_quiz_update(QUIZ, quiz_pb2.WatchQuizResponse(state=state(time_ms=1_500)))
    assert ann_t.messages() == []
    opened = state(time_ms=2_000, phase=quiz_pb2.QUIZ_PHASE_QUESTION_OPEN)
    hub.deliver_quiz_update(QUIZ, quiz_pb2.WatchQuizResponse(state=opened))
    hub.deliver_quiz_update(QUIZ, quiz_pb2.WatchQuizResponse(state=opened))  # replayed after a reconnect
    assert [m["state"]["phase"] for m in ann_t.messages()] == ["question_open"]


def numbered(version: int, phase: int, index: int, time_ms: int) -> Any:
    s = state(time_ms=time_ms, phase=phase)
    s.version, s.question_index = version, index
    return s


def closing(version: int, index: int, time_ms: int) -> quiz_pb2.WatchQuizResponse:
    results = quiz_pb2.QuestionResults(question_index=index, correct_choices=[1], choice_counts=[3, 4])
    return quiz_pb2.WatchQuizResponse(
        state=numbered(version, quiz_pb2.QUIZ_PHASE_QUESTION_CLOSED, index, time_ms), results=results
    )


async def test_a_transition_pushed_twice_or_late_reaches_each_socket_once_and_in_order(
    fanout: tuple[Fanout, SilentSource],
) -> None:
    hub, _ = fanout
    ann, ann_t = player("p1")
    opened = numbered(1, quiz_pb2.QUIZ_PHASE_QUESTION_OPEN, 0, 1_000)
    hub.attach(ann, opened)
    hub.deliver_quiz_update(QUIZ, closing(2, 0, 2_000))
    # The same close again, from a replica that finished the transition its dead owner had pushed,
    # then the opening pushed late by a replica that was slow to finish it, then a reopened stream.
    hub.deliver_quiz_update(QUIZ, closing(2, 0, 2_500))
    hub.deliver_quiz_update(
        QUIZ, quiz_pb2.WatchQuizResponse(state=numbered(1, quiz_pb2.QUIZ_PHASE_QUESTION_OPEN, 0, 3_000))
    )
    hub.deliver_quiz_update(QUIZ, closing(2, 0, 3_500))
    hub.deliver_quiz_update(
        QUIZ, quiz_pb2.WatchQuizResponse(state=numbered(3, quiz_pb2.QUIZ_PHASE_QUESTION_OPEN, 1, 4_000))
    )
    seen = [(m["state"]["phase"], m["state"]["question_index"], "results" in m) for m in ann_t.messages()]
    assert seen == [("question_closed", 0, True), ("question_open", 1, False)]


async def test_a_close_missed_while_the_stream_was_down_arrives_with_its_results(
    fanout: tuple[Fanout, SilentSource],
) -> None:
    hub, _ = fanout
    ann_t = attached(hub, "p1", numbered(1, quiz_pb2.QUIZ_PHASE_QUESTION_OPEN, 0, 1_000))
    # The stream broke before the close was pushed; the new stream opens with the closed state and results.
    hub.deliver_quiz_update(QUIZ, closing(2, 0, 5_000))
    [message] = ann_t.messages()
    assert message["state"]["phase"] == "question_closed"
    assert message["results"] == {
        "question_index": 0,
        "kind": "single_choice",
        "correct_choices": [1],
        "choice_counts": [3, 4],
        "tallies": {},
    }
    # A socket seated after the close (its reply carried the closed state) gets the results too, once.
    bob_t = attached(hub, "p2", numbered(2, quiz_pb2.QUIZ_PHASE_QUESTION_CLOSED, 0, 4_000))
    assert [m.get("results", {}).get("question_index") for m in bob_t.messages()] == [0]


class BreakingSource:
    """Each watch of the quiz delivers the next scripted messages, then breaks as a stream does when the
    replica serving it dies; once the script is used up, the watch stays open."""

    def __init__(self, scripts: list[list[quiz_pb2.WatchQuizResponse]]) -> None:
        self.scripts = scripts
        self.opened = 0

    async def watch_quiz(self, quiz_id: str) -> AsyncIterator[quiz_pb2.WatchQuizResponse]:
        self.opened += 1
        if not self.scripts:
            await asyncio.Event().wait()
        for message in self.scripts.pop(0):
            yield message
        raise ConnectionError("the replica serving this stream died")

    async def watch_leaderboard(self, quiz_id: str) -> AsyncIterator[leaderboard_pb2.Leaderboard]:
        await asyncio.Event().wait()
        yield leaderboard_pb2.Leaderboard()  # pragma: no cover - never reached


async def test_a_broken_stream_is_opened_again_at_once_and_only_a_stream_failing_empty_waits() -> None:
    opened = numbered(1, quiz_pb2.QUIZ_PHASE_QUESTION_OPEN, 0, 1_000)
    source = BreakingSource(
        [
            [quiz_pb2.WatchQuizResponse(state=opened)],
            [closing(2, 0, 2_000)],
            [],  # the replica refuses streams: reopened at once once more, then only after a pause
            [],
        ]
    )
    # A pause outlasts the test: every reopening it sees happened without one.
    hub = Fanout(source, top_n=2, max_buffered_bytes=1000, retry_pause_s=3600, retry_pause_max_s=3600)
    ann_t = attached(hub, "p1", opened)
    try:
        for _ in range(500):
            if source.opened == 3:
                break
            await asyncio.sleep(0.01)
        assert [m["state"]["phase"] for m in ann_t.messages()] == ["question_closed"]
        await asyncio.sleep(0.1)
        assert source.opened == 3  # the 4th waits out the pause after an empty stream
    finally:
        await hub.close()
