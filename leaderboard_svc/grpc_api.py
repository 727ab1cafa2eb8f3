"""The gRPC face of the service: validates requests, reads the store, streams relayed updates."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from leaderboard_svc.domain import RankedEntry, RankingSnapshot
from leaderboard_svc.ports import LeaderboardStore, StoreUnavailable
from leaderboard_svc.rebuild import Rebuilder
from leaderboard_svc.relay import Relay
from quizmesh.eventcodec import now_ms, timestamp_ms
from quizmesh.events.v1 import events_pb2
from quizmesh.leaderboard.v1 import leaderboard_service_pb2 as pb
from quizmesh.leaderboard.v1 import leaderboard_service_pb2_grpc as pb_grpc

DEFAULT_TOP_N = 10
MAX_TOP_N = 1000


def _entry(entry: RankedEntry) -> pb.LeaderboardEntry:
    return pb.LeaderboardEntry(player_id=entry.player_id, nickname=entry.nickname, score=entry.score, rank=entry.rank)


def _leaderboard(
    quiz_id: str,
    version: int,
    entries: Iterable[pb.LeaderboardEntry],
    update_time: Timestamp,
    last_answer_ms: int,
) -> pb.WatchLeaderboardResponse:
    leaderboard = pb.Leaderboard(quiz_id=quiz_id, version=version, entries=entries, update_time=update_time)
    if last_answer_ms:
        leaderboard.last_answer_time.CopyFrom(timestamp_ms(last_answer_ms))
    return pb.WatchLeaderboardResponse(leaderboard=leaderboard)


def _from_snapshot(snapshot: RankingSnapshot) -> pb.WatchLeaderboardResponse:
    return _leaderboard(
        snapshot.quiz_id,
        snapshot.version,
        map(_entry, snapshot.entries),
        timestamp_ms(now_ms()),
        snapshot.last_answer_ms,
    )


def _from_update(update: events_pb2.LeaderboardUpdated) -> pb.WatchLeaderboardResponse:
    entries = (
        pb.LeaderboardEntry(player_id=e.player_id, nickname=e.nickname, score=e.score, rank=position)
        for position, e in enumerate(update.entries, start=1)
    )
    last_answer_ms = update.last_answer_time.ToMilliseconds() if update.HasField("last_answer_time") else 0
    response = _leaderboard(update.quiz_id, update.version, entries, update.event_time, last_answer_ms)
    response.leaderboard.trace_context.update(update.trace_context)
    return response


async def _abort_unavailable(context: grpc.aio.ServicerContext[object, object], exc: StoreUnavailable) -> None:
    await context.abort(grpc.StatusCode.UNAVAILABLE, f"the ranking store is unreachable ({exc}); retry with backoff")


class LeaderboardServicer(pb_grpc.LeaderboardServiceServicer):
    def __init__(self, store: LeaderboardStore, relay: Relay, rebuilder: Rebuilder | None = None) -> None:
        self._store = store
        self._relay = relay
        self._rebuilder = rebuilder

    async def _rebuild_if_lost(self, quiz_id: str) -> None:
        """A read of a ranking that was lost (no events may ever come again for an ended quiz) queues its
        rebuild; this read still answers from what Redis holds now."""
        if self._rebuilder is not None and quiz_id not in self._rebuilder.pending:
            self._rebuilder.request(await self._store.unbuilt([quiz_id]))

    async def GetLeaderboard(
        self, request: pb.GetLeaderboardRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.GetLeaderboardResponse:
        if not request.quiz_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "quiz_id is required: name the quiz to rank")
        if request.top_n < 0:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"top_n must be between 1 and {MAX_TOP_N} (0 means {DEFAULT_TOP_N}); got {request.top_n}",
            )
        # As AIP-158 does for page sizes, a too-large top_n is coerced down rather than refused.
        top_n = min(request.top_n or DEFAULT_TOP_N, MAX_TOP_N)
        try:
            await self._rebuild_if_lost(request.quiz_id)
            page = await self._store.top(request.quiz_id, top_n, request.player_id)
        except StoreUnavailable as exc:
            await _abort_unavailable(context, exc)
            raise  # unreachable: abort raises
        response = pb.GetLeaderboardResponse(
            top_entries=map(_entry, page.top), player_count=page.player_count, version=page.version
        )
        if page.player is not None:
            response.player_entry.CopyFrom(_entry(page.player))
        return response

    async def WatchLeaderboard(
        self, request: pb.WatchLeaderboardRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> AsyncIterator[pb.WatchLeaderboardResponse]:
        if not request.quiz_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "quiz_id is required: name the quiz to watch")
        # Subscribed before the snapshot is read, so no update published in between is missed;
        # updates the snapshot already reflects are skipped by version.
        async with self._relay.watch(request.quiz_id) as watcher:
            try:
                await self._rebuild_if_lost(request.quiz_id)
                snapshot = await self._store.ranking(request.quiz_id)
            except StoreUnavailable as exc:
                await _abort_unavailable(context, exc)
                raise  # unreachable: abort raises
            watcher.skip_through(snapshot.version)
            yield _from_snapshot(snapshot)
            while (update := await watcher.next()) is not None:
                yield _from_update(update)
        # The relay ended the watch: this process is shutting down.
        await context.abort(
            grpc.StatusCode.UNAVAILABLE,
            "leaderboard_svc is shutting down; watch again to reach another replica",
        )
