"""`quizmesh loadtest`: many players in many quizzes over real WebSockets, measured from the outside.

One coordinator process creates the quizzes, hosts them over WebSockets and drives their questions;
worker processes hold the players (picows connections on uvloop) and report every second. A player
answers every `answer_min_s`..`answer_max_s` seconds, correctly with probability `correct_ratio`.
Questions advance every `answer_min_s`, so a player never answers the same question twice.

What is measured, all on this machine's monotonic clock (shared by every process):
- answer→ack: from sending `submit_answer` to its `answer_result`;
- answer→leaderboard: from sending a scoring answer to the first `leaderboard_updated` whose `me.score`
  includes it;
- broadcast spread: for each leaderboard version, from the first to the last player receiving it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import multiprocessing
import os
import queue
import random
import re
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from quizmesh.garbage_collector import tune_garbage_collector
from quizmesh.process import ProcessSettings

Message = dict[str, Any]

_LEADERBOARD_PREFIX: Final = b'{"type":"leaderboard_updated"'
_VERSION: Final = re.compile(rb'"version":(\d+)')
# The edge closes each leaderboard frame with the recipient's own standing.
_ME: Final = re.compile(rb'"me":\{"rank":\d+,"score":(\d+)\}')
_STOP_GRACE_S: Final = 30.0


@dataclass(frozen=True)
class Plan:
    """What to simulate."""

    url: str
    players: int
    quizzes: int = 1
    duration_s: float = 60.0
    join_rate: float = 200.0
    answer_min_s: float = 10.0
    answer_max_s: float = 20.0
    correct_ratio: float = 0.7
    workers: int = 1
    worker_cpus: tuple[int, ...] = ()
    choices: int = 4
    max_pending_joins: int = 100  # per worker
    # Where the players connect, one URL per worker in turn (the quizzes are hosted on `url`); empty: `url`.
    # Two edges' own URLs spread a quiz over them as a load balancer would, without its descriptors.
    player_urls: tuple[str, ...] = ()

    @property
    def question_count(self) -> int:
        return math.ceil(self.duration_s / self.answer_min_s) + 2

    @property
    def time_limit_s(self) -> int:
        # The host closes each question after answer_min_s; the limit only has to outlast that.
        return min(120, max(5, math.ceil(self.answer_min_s) + 5))

    def validate(self) -> None:
        if self.players < 1 or self.quizzes < 1 or self.workers < 1:
            raise ValueError("players, quizzes and workers must be at least 1")
        if self.quizzes > self.players:
            raise ValueError("every quiz needs at least one player")
        if not 0.2 <= self.answer_min_s <= self.answer_max_s:
            raise ValueError("the answer interval must be MIN:MAX with 0.2 <= MIN <= MAX")
        if self.answer_min_s > 115:
            raise ValueError("the shortest answer interval must be at most 115 s (a question lasts it)")
        if self.question_count > 500:
            raise ValueError("duration / answer_min is too large: a quiz has at most 500 questions")
        if not 0 <= self.correct_ratio <= 1:
            raise ValueError("correct_ratio must be between 0 and 1")
        if self.join_rate <= 0 or self.duration_s <= 0:
            raise ValueError("join_rate and duration must be positive")


@dataclass(frozen=True)
class QuizPlan:
    quiz_id: str
    correct_choices: tuple[int, ...]


@dataclass(frozen=True)
class WorkerPlan:
    url: str
    quizzes: tuple[QuizPlan, ...]
    player_indexes: tuple[int, ...]
    join_rate: float
    answer_min_s: float
    answer_max_s: float
    correct_ratio: float
    choices: int
    cpus: tuple[int, ...]
    seed: int
    max_pending_joins: int


@dataclass
class Tick:
    """What one worker saw in one reporting interval."""

    worker: int
    time: float
    connections: int = 0
    joins: int = 0
    answers_sent: int = 0
    answers_accepted: int = 0
    leaderboard_messages: int = 0
    ack_ms: list[float] = field(default_factory=list)
    leaderboard_ms: list[float] = field(default_factory=list)
    join_ms: list[float] = field(default_factory=list)
    # First and last successful join (monotonic), carried by a worker's final tick.
    join_window: tuple[float, float] | None = None
    errors: dict[str, int] = field(default_factory=dict)
    # (quiz index, version) -> (first, last) receive time; only in a worker's final tick.
    spread: dict[tuple[int, int], tuple[float, float]] = field(default_factory=dict)
    final: bool = False


def percentiles(samples: Sequence[float]) -> dict[str, float | None]:
    """Nearest-rank p50/p95/p99 and max, in the samples' unit; None when there are none."""
    if not samples:
        return {"count": 0, "p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(samples)

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p * len(ordered)) - 1)], 2)

    return {"count": len(ordered), "p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99), "max": rank(1.0)}


# --- the players (worker processes) ---


class _Counters:
    def __init__(self) -> None:
        self.tick = Tick(worker=0, time=0.0)
        self.connections = 0
        self.spread: dict[tuple[int, int], tuple[float, float]] = {}
        self.join_window: tuple[float, float] | None = None
        self.stopping = False

    def joined(self, connect_started: float) -> None:
        now = time.monotonic()
        self.connections += 1
        self.tick.joins += 1
        self.tick.join_ms.append((now - connect_started) * 1000)
        self.join_window = (now, now) if self.join_window is None else (self.join_window[0], now)

    def error(self, code: str) -> None:
        errors = self.tick.errors
        errors[code] = errors.get(code, 0) + 1

    def take(self, worker: int) -> Tick:
        tick, self.tick = self.tick, Tick(worker=worker, time=0.0)
        tick.worker, tick.time, tick.connections = worker, time.monotonic(), self.connections
        return tick


class Player(WSListener):
    """One simulated player: joins, answers on its own schedule, and times what comes back."""

    def __init__(self, index: int, quiz_index: int, quiz: QuizPlan, plan: WorkerPlan, counters: _Counters) -> None:
        super().__init__()
        self.index = index
        self.quiz_index = quiz_index
        self.quiz = quiz
        self.plan = plan
        self.counters = counters
        self.transport: WSTransport | None = None
        self.joined: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.connect_started = time.monotonic()
        self.question_index = -1
        self.question_open = False
        self.opened_at = 0.0
        self.answered_index = -1
        self.waiting = False
        self.outstanding: tuple[str, float] | None = None
        self.unreflected: list[tuple[int, float]] = []  # (total score, sent at) not yet seen on a board
        self.timer: asyncio.TimerHandle | None = None
        self.ids = itertools.count(1)

    # picows callbacks

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.joined.done() and self.joined.result():
            self.counters.connections -= 1
            if not self.counters.stopping:
                self.counters.error("disconnected")
        elif not self.joined.done():
            self.joined.set_result(False)
            self.counters.error("disconnected_before_joining")

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != WSMsgType.TEXT:
            return
        payload = frame.get_payload_as_bytes()
        if payload.startswith(_LEADERBOARD_PREFIX):
            self._on_leaderboard(payload)
            return
        message: Message = orjson.loads(payload)
        kind = message.get("type")
        if kind == "quiz_state":
            self._on_state(message["state"])
        elif "id" in message:
            self._on_reply(message)
        elif kind == "error":
            self.counters.error(str(message.get("code")))

    # protocol

    def send(self, message: Message) -> None:
        if self.transport is not None and not self.transport.is_disconnected:
            self.transport.send(WSMsgType.TEXT, orjson.dumps(message))

    def join(self) -> None:
        self.send({"type": "join_quiz", "id": "join", "quiz_id": self.quiz.quiz_id, "nickname": f"p{self.index}"})

    def _on_reply(self, message: Message) -> None:
        kind = message.get("type")
        if message["id"] == "join":
            if kind == "joined":
                self.counters.joined(self.connect_started)
                self.joined.set_result(True)
                self._on_state(message["state"])
                self._schedule(random.uniform(0, self.plan.answer_max_s))
            else:
                self.counters.error(f"join:{message.get('code')}")
                self.joined.set_result(False)
            return
        if self.outstanding is None or message["id"] != self.outstanding[0]:
            return
        sent_at = self.outstanding[1]
        self.outstanding = None
        if kind == "answer_result":
            tick = self.counters.tick
            tick.answers_accepted += 1
            tick.ack_ms.append((time.monotonic() - sent_at) * 1000)
            if message.get("points", 0) > 0:
                self.unreflected.append((int(message["total_score"]), sent_at))
        else:
            self.counters.error(str(message.get("code")))

    def _on_state(self, state: Message) -> None:
        index = int(state.get("question_index", -1))
        is_open = state.get("phase") == "question_open"
        if is_open and (index != self.question_index or not self.question_open):
            self.opened_at = time.monotonic()
            if self.waiting:
                self.waiting = False
                self._schedule(random.uniform(0, min(1.0, self.plan.answer_min_s * 0.3)))
        self.question_index, self.question_open = index, is_open

    def _on_leaderboard(self, payload: bytes) -> None:
        now = time.monotonic()
        counters = self.counters
        counters.tick.leaderboard_messages += 1
        version = _VERSION.search(payload, 0, 200)
        if version is not None:
            key = (self.quiz_index, int(version.group(1)))
            seen = counters.spread.get(key)
            counters.spread[key] = (now, now) if seen is None else (seen[0], now)
        if not self.unreflected:
            return
        me = _ME.search(payload, max(0, len(payload) - 600))
        if me is None:
            return
        score = int(me.group(1))
        still = []
        for total, sent_at in self.unreflected:
            if score >= total:
                counters.tick.leaderboard_ms.append((now - sent_at) * 1000)
            else:
                still.append((total, sent_at))
        self.unreflected = still

    def _schedule(self, delay_s: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(delay_s, self._answer_when_due)

    def _answer_when_due(self) -> None:
        self.timer = None
        if self.counters.stopping:
            return
        now = time.monotonic()
        # Late in a question the host may close it before the answer lands; wait for the next one then.
        fresh = now - self.opened_at < self.plan.answer_min_s * 0.8 - 0.1
        if not (self.question_open and self.answered_index < self.question_index and fresh):
            self.waiting = True  # answer as soon as the next question opens
            return
        if self.outstanding is not None:
            self._schedule(0.1)
            return
        correct = self.quiz.correct_choices[self.question_index % len(self.quiz.correct_choices)]
        choice = correct
        if random.random() >= self.plan.correct_ratio:
            choice = random.choice([c for c in range(self.plan.choices) if c != correct])
        request_id = str(next(self.ids))
        self.outstanding = (request_id, now)
        self.answered_index = self.question_index
        self.counters.tick.answers_sent += 1
        self.send({"type": "submit_answer", "id": request_id, "question_index": self.question_index, "choice": choice})
        self._schedule(random.uniform(self.plan.answer_min_s, self.plan.answer_max_s))


def raise_fd_limit(wanted: int = 65536) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return max(soft, target)


async def _worker(number: int, plan: WorkerPlan, reports: Any, stop: Any) -> None:
    random.seed(plan.seed)
    counters = _Counters()
    players: list[Player] = []
    joining: set[asyncio.Task[None]] = set()

    # Joins beyond what the stack absorbs wait here rather than pile up as timeouts: the ramp then
    # measures the stack's join capacity.
    pending_joins = asyncio.Semaphore(plan.max_pending_joins)

    async def connect(index: int) -> None:
        async with pending_joins:
            await _connect(index)

    async def _connect(index: int) -> None:
        quiz_index = index % len(plan.quizzes)

        def factory() -> Player:
            player = Player(index, quiz_index, plan.quizzes[quiz_index], plan, counters)
            players.append(player)
            return player

        try:
            _, listener = await ws_connect(factory, plan.url, websocket_handshake_timeout=30)
        except Exception as exc:  # OSError, TimeoutError and picows's own handshake errors alike
            counters.error(f"connect:{type(exc).__name__}")
            return
        assert isinstance(listener, Player)
        listener.join()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(listener.joined), 30)
        if not listener.joined.done():
            counters.error("join:timeout")

    async def ramp() -> None:
        started = time.monotonic()
        for n, index in enumerate(plan.player_indexes):
            delay = started + n / plan.join_rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if counters.stopping:
                return
            task = asyncio.create_task(connect(index))
            joining.add(task)
            task.add_done_callback(joining.discard)

    ramping = asyncio.create_task(ramp())
    while not stop.is_set():
        await asyncio.sleep(1.0)
        reports.put(counters.take(number))
    counters.stopping = True
    ramping.cancel()
    for task in list(joining):
        task.cancel()
    await asyncio.gather(ramping, *joining, return_exceptions=True)
    for player in players:
        if player.timer is not None:
            player.timer.cancel()
    # Answers still in flight get a last chance to be acknowledged before the sockets close.
    for _ in range(50):
        if not any(p.outstanding for p in players):
            break
        await asyncio.sleep(0.1)
    last = counters.take(number)
    last.spread, last.join_window, last.final = counters.spread, counters.join_window, True
    for player in players:
        if player.transport is not None:
            player.transport.disconnect()
    reports.put(last)


def _worker_entry(number: int, plan: WorkerPlan, reports: Any, stop: Any) -> None:
    tune_garbage_collector(ProcessSettings.from_env(os.environ).gc_gen0_threshold)
    if plan.cpus:
        os.sched_setaffinity(0, plan.cpus)
    raise_fd_limit()
    _run_loop(_worker(number, plan, reports, stop))


def _run_loop(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


# --- the hosts and the coordinator ---


class Host(WSListener):
    """A quiz host: request/reply over one socket, pushed messages ignored."""

    def __init__(self) -> None:
        super().__init__()
        self.transport: WSTransport | None = None
        self.replies: dict[str, asyncio.Future[Message]] = {}
        self.ids = itertools.count(1)

    @classmethod
    async def connect(cls, url: str) -> Host:
        _, host = await ws_connect(cls, url)
        assert isinstance(host, Host)
        return host

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != WSMsgType.TEXT:
            return
        message: Message = orjson.loads(frame.get_payload_as_bytes())
        reply = self.replies.pop(str(message.get("id")), None) if "id" in message else None
        if reply is not None and not reply.done():
            reply.set_result(message)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        for reply in self.replies.values():
            if not reply.done():
                reply.set_exception(ConnectionError("the host's socket closed"))

    async def request(self, message_type: str, timeout_s: float = 30, **fields: Any) -> Message:
        assert self.transport is not None
        request_id = str(next(self.ids))
        reply: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.replies[request_id] = reply
        self.transport.send(WSMsgType.TEXT, orjson.dumps({"type": message_type, "id": request_id, **fields}))
        return await asyncio.wait_for(reply, timeout_s)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.disconnect()


async def _open_quiz(url: str, plan: Plan, number: int) -> tuple[Host, QuizPlan]:
    host = await Host.connect(url)
    rng = random.Random(number)
    correct = tuple(rng.randrange(plan.choices) for _ in range(plan.question_count))
    questions = [
        {
            "text": f"Question {i + 1}?",
            "choices": [f"choice {c}" for c in range(plan.choices)],
            "correct_choices": [correct[i]],
            "time_limit_seconds": plan.time_limit_s,
        }
        for i in range(plan.question_count)
    ]
    created = await host.request("create_quiz", title=f"loadtest {number}", questions=questions, allow_late_join=True)
    if created.get("type") != "quiz_created":
        raise RuntimeError(f"create_quiz failed: {created}")
    quiz_id = created["quiz"]["quiz_id"]
    hosting = await host.request("host_quiz", quiz_id=quiz_id, host_token=created["host_token"])
    if hosting.get("type") != "hosting":
        raise RuntimeError(f"host_quiz failed: {hosting}")
    started = await host.request("start_quiz")
    if started.get("type") != "host_ack":
        raise RuntimeError(f"start_quiz failed: {started}")
    return host, QuizPlan(quiz_id, correct)


async def _drive_questions(hosts: Sequence[Host], plan: Plan, errors: Counter[str]) -> None:
    """Every answer_min_s: close each quiz's question and open the next."""
    started = time.monotonic()
    for question in itertools.count(1):
        await asyncio.sleep(max(0.0, started + question * plan.answer_min_s - time.monotonic()))
        if question >= plan.question_count:
            return

        async def advance(host: Host) -> None:
            for action in ("close_question", "next_question"):
                reply = await host.request(action)
                if reply.get("type") != "host_ack":
                    errors[f"host:{reply.get('code')}"] += 1

        await asyncio.gather(*(advance(host) for host in hosts))


class Aggregate:
    """The workers' ticks, merged per second of the run."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.seconds: dict[int, Tick] = {}
        self.connections: dict[int, int] = {}
        self.errors: Counter[str] = Counter()
        self.spread: dict[tuple[int, int], tuple[float, float]] = {}
        self.finished: set[int] = set()
        self.peak_connections = 0
        self.join_window: tuple[float, float] | None = None

    def add(self, tick: Tick) -> None:
        second = max(0, int(tick.time - self.started))
        into = self.seconds.setdefault(second, Tick(worker=-1, time=float(second)))
        into.joins += tick.joins
        into.answers_sent += tick.answers_sent
        into.answers_accepted += tick.answers_accepted
        into.leaderboard_messages += tick.leaderboard_messages
        into.ack_ms += tick.ack_ms
        into.leaderboard_ms += tick.leaderboard_ms
        into.join_ms += tick.join_ms
        if tick.join_window is not None:
            first, last = tick.join_window
            seen = self.join_window
            self.join_window = (first, last) if seen is None else (min(seen[0], first), max(seen[1], last))
        self.errors.update(tick.errors)
        self.connections[tick.worker] = tick.connections
        self.peak_connections = max(self.peak_connections, self.connections_now())
        for key, (first, last) in tick.spread.items():
            seen = self.spread.get(key)
            self.spread[key] = (first, last) if seen is None else (min(seen[0], first), max(seen[1], last))
        if tick.final:
            self.finished.add(tick.worker)

    def connections_now(self) -> int:
        return sum(self.connections.values())


def _progress_line(agg: Aggregate, second: int) -> str:
    tick = agg.seconds.get(second, Tick(worker=-1, time=0))
    ack, lb = percentiles(tick.ack_ms), percentiles(tick.leaderboard_ms)
    return (
        f"[{second:4d}s] conns {agg.connections_now():6d}  joins/s {tick.joins:5d}"
        f"  answers/s {tick.answers_accepted:5d}"
        f"  ack p99 {ack['p99'] or 0:7.1f} ms  lb p99 {lb['p99'] or 0:7.1f} ms"
        f"  lb msgs/s {tick.leaderboard_messages:7d}  errors {sum(agg.errors.values())}"
    )


async def run(plan: Plan, *, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Runs the plan and returns the report (see the module docstring for what is measured)."""
    plan.validate()
    opened = [await _open_quiz(plan.url, plan, n) for n in range(plan.quizzes)]
    hosts = [host for host, _ in opened]
    quizzes = tuple(quiz for _, quiz in opened)
    context = multiprocessing.get_context("spawn")
    reports = context.Queue()
    stop = context.Event()
    indexes = list(range(plan.players))
    workers = []
    for w in range(plan.workers):
        cpus = (plan.worker_cpus[w % len(plan.worker_cpus)],) if plan.worker_cpus else ()
        worker_plan = WorkerPlan(
            url=plan.player_urls[w % len(plan.player_urls)] if plan.player_urls else plan.url,
            quizzes=quizzes,
            player_indexes=tuple(indexes[w :: plan.workers]),
            join_rate=plan.join_rate / plan.workers,
            answer_min_s=plan.answer_min_s,
            answer_max_s=plan.answer_max_s,
            correct_ratio=plan.correct_ratio,
            choices=plan.choices,
            cpus=cpus,
            seed=w,
            max_pending_joins=plan.max_pending_joins,
        )
        workers.append(context.Process(target=_worker_entry, args=(w, worker_plan, reports, stop), daemon=True))
    for process in workers:
        process.start()
    started = time.monotonic()
    agg = Aggregate(started)
    driver = asyncio.create_task(_drive_questions(hosts, plan, agg.errors))
    shown = -1
    try:
        while time.monotonic() - started < plan.duration_s:
            _drain(reports, agg)
            if driver.done() and driver.exception() is not None:
                raise RuntimeError("driving the questions failed") from driver.exception()
            crashed = [p.exitcode for p in workers if p.exitcode not in (None, 0)]
            if crashed:
                raise RuntimeError(f"a player process exited with {crashed[0]}; its traceback is on stderr")
            second = int(time.monotonic() - started) - 1
            if progress is not None and second > shown:
                shown = second
                progress(_progress_line(agg, second))
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        driver.cancel()
        await asyncio.gather(driver, return_exceptions=True)
        deadline = time.monotonic() + _STOP_GRACE_S
        while len(agg.finished) < len(workers) and time.monotonic() < deadline:
            if not any(p.is_alive() for p in workers) and reports.empty():
                break
            _drain(reports, agg)
            await asyncio.sleep(0.1)
        for process in workers:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()  # this process's own child, by its handle
                process.join(timeout=5)
        for host in hosts:
            with contextlib.suppress(Exception):
                await host.request("end_quiz", timeout_s=10)
            host.close()
    return _report(plan, quizzes, agg, time.monotonic() - started, workers_finished=len(agg.finished))


def _drain(reports: Any, agg: Aggregate) -> None:
    while True:
        try:
            agg.add(reports.get_nowait())
        except queue.Empty:
            return


def _report(
    plan: Plan, quizzes: Sequence[QuizPlan], agg: Aggregate, elapsed_s: float, *, workers_finished: int
) -> dict[str, Any]:
    ticks = [agg.seconds[s] for s in sorted(agg.seconds)]
    joins = sum(t.joins for t in ticks)
    accepted = sum(t.answers_accepted for t in ticks)
    joined_by: int | None = None
    cumulative = 0
    for tick in ticks:
        cumulative += tick.joins
        if cumulative >= joins:
            joined_by = int(tick.time) + 1
            break
    steady = [t for t in ticks if joined_by is not None and joined_by <= t.time < plan.duration_s - 1]
    window = agg.join_window
    joining_s = window[1] - window[0] if window is not None else 0.0
    # A newcomer is sent the latest board when it joins, so only boards first seen after the last join
    # measure the fan-out.
    after_joins = window[1] if window is not None else 0.0
    spreads = [(last - first) * 1000 for first, last in agg.spread.values() if first > after_joins]
    return {
        "plan": {**asdict(plan), "worker_cpus": list(plan.worker_cpus), "player_urls": list(plan.player_urls)},
        "quiz_ids": [q.quiz_id for q in quizzes],
        "elapsed_s": round(elapsed_s, 2),
        "workers_finished": workers_finished,
        "connections_peak": agg.peak_connections,
        "connections_at_end": agg.connections_now(),
        "joins": joins,
        "joins_per_s": round(joins / joining_s, 1) if joining_s > 0 else None,
        "join_ms": percentiles([x for t in ticks for x in t.join_ms]),
        "all_joined_after_s": joined_by,
        "answers_sent": sum(t.answers_sent for t in ticks),
        "answers_accepted": accepted,
        "answers_per_s": round(accepted / plan.duration_s, 1),
        "answers_per_s_steady": round(sum(t.answers_accepted for t in steady) / len(steady), 1) if steady else None,
        "answer_to_ack_ms": percentiles([x for t in ticks for x in t.ack_ms]),
        "answer_to_leaderboard_ms": percentiles([x for t in ticks for x in t.leaderboard_ms]),
        "leaderboard_messages": sum(t.leaderboard_messages for t in ticks),
        "leaderboard_messages_per_s": round(sum(t.leaderboard_messages for t in ticks) / plan.duration_s, 1),
        "broadcast_spread_ms": percentiles(spreads),
        "errors": dict(agg.errors),
        "timeline": [
            {
                "second": int(t.time),
                "joins": t.joins,
                "answers_accepted": t.answers_accepted,
                "leaderboard_messages": t.leaderboard_messages,
                "ack_p99_ms": percentiles(t.ack_ms)["p99"],
                "leaderboard_p99_ms": percentiles(t.leaderboard_ms)["p99"],
            }
            for t in ticks
        ],
    }


def plot(report: dict[str, Any], path: str) -> None:
    """Throughput and latency over the run, as a PNG (needs matplotlib: `pip install quizmesh[bench]`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timeline = report["timeline"]
    seconds = [row["second"] for row in timeline]
    figure, (rates, latencies) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    rates.plot(seconds, [row["answers_accepted"] for row in timeline], label="answers accepted/s")
    rates.plot(seconds, [row["joins"] for row in timeline], label="joins/s")
    rates.plot(seconds, [row["leaderboard_messages"] / 10 for row in timeline], label="leaderboard msgs/s ÷ 10")
    rates.set_ylabel("per second")
    rates.legend()
    latencies.plot(seconds, [row["ack_p99_ms"] for row in timeline], label="answer→ack p99")
    latencies.plot(seconds, [row["leaderboard_p99_ms"] for row in timeline], label="answer→leaderboard p99")
    latencies.set_ylabel("ms")
    latencies.set_xlabel("second of the run")
    latencies.legend()
    plan = report["plan"]
    figure.suptitle(f"quizmesh loadtest: {plan['players']} players, {plan['quizzes']} quizzes")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _interval(raw: str) -> tuple[float, float]:
    low, _, high = raw.partition(":")
    try:
        return float(low), float(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not MIN:MAX seconds") from None


def _cpus(raw: str) -> tuple[int, ...]:
    try:
        return tuple(int(c) for c in raw.split(",") if c)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a comma-separated list of CPU numbers") from None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="quizmesh loadtest", description="Simulate players over real WebSockets and report latencies."
    )
    parser.add_argument("--url", default="ws://127.0.0.1:8080/ws", help="the edge's WebSocket URL")
    parser.add_argument("--players", type=int, default=100)
    parser.add_argument("--quizzes", type=int, default=1)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds, the ramp included")
    parser.add_argument("--join-rate", type=float, default=200.0, help="joins per second, all workers together")
    parser.add_argument("--answer-interval", type=_interval, default=(10.0, 20.0), help="MIN:MAX seconds")
    parser.add_argument("--correct", type=float, default=0.7, help="share of correct answers")
    parser.add_argument("--workers", type=int, default=1, help="player processes")
    parser.add_argument("--worker-cpus", type=_cpus, default=(), help="pin workers to these CPUs, e.g. 1")
    parser.add_argument("--json", help="write the report here (it is printed to stdout as well)")
    parser.add_argument("--plot", help="draw the run into this PNG (needs matplotlib)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    raise_fd_limit()
    plan = Plan(
        url=args.url,
        players=args.players,
        quizzes=args.quizzes,
        duration_s=args.duration,
        join_rate=args.join_rate,
        answer_min_s=args.answer_interval[0],
        answer_max_s=args.answer_interval[1],
        correct_ratio=args.correct,
        workers=args.workers,
        worker_cpus=args.worker_cpus,
    )
    try:
        plan.validate()
    except ValueError as exc:
        print(f"quizmesh loadtest: {exc}", file=sys.stderr)
        raise SystemExit(2) from None

    def show(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    report = _run_loop(run(plan, progress=None if args.quiet else show))
    text = orjson.dumps(report, option=orjson.OPT_INDENT_2).decode()
    if args.json:
        with open(args.json, "w") as out:
            out.write(text + "\n")
    if args.plot:
        plot(report, args.plot)
    print(text)
