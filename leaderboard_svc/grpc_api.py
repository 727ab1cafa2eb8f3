"""The gRPC face of the service: validates requests, reads the store, streams relayed updates."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from leaderboard_svc.codec import entry_to_pb, watch_response_from_snapshot, watch_response_from_update
from leaderboard_svc.domain import Coalescer, PlayerErased
from leaderboard_svc.ports import LeaderboardStore, StoreUnavailable
from leaderboard_svc.rebuild import Rebuilder
from leaderboard_svc.relay import Relay
from quizmesh.leaderboard.v1 import leaderboard_service_pb2 as pb
from quizmesh.leaderboard.v1 import leaderboard_service_pb2_grpc as pb_grpc

DEFAULT_TOP_N = 10
MAX_TOP_N = 1000


async def _abort_unavailable(context: grpc.aio.ServicerContext[object, object], exc: StoreUnavailable) -> None:
    await context.abort(grpc.StatusCode.UNAVAILABLE, f"the ranking store is unreachable ({exc}); retry with backoff")


class LeaderboardServicer(pb_grpc.LeaderboardServiceServicer):
    def __init__(
        self,
        store: LeaderboardStore,
        relay: Relay,
        rebuilder: Rebuilder | None = None,
        coalescer: Coalescer | None = None,
    ) -> None:
        self._store = store
        self._relay = relay
        self._rebuilder = rebuilder
        self._coalescer = coalescer

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
            top_entries=map(entry_to_pb, page.top), player_count=page.player_count, version=page.version
        )
        if page.player is not None:
            response.player_entry.CopyFrom(entry_to_pb(page.player))
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
            yield watch_response_from_snapshot(snapshot)
            while (update := await watcher.next()) is not None:
                yield watch_response_from_update(update)
        # The relay ended the watch: this process is shutting down.
        await context.abort(
            grpc.StatusCode.UNAVAILABLE,
            "leaderboard_svc is shutting down; watch again to reach another replica",
        )

    async def ErasePlayers(
        self, request: pb.ErasePlayersRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ErasePlayersResponse:
        if not request.replacement_nickname:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "replacement_nickname is required: the name erased players get"
            )
        if any(not p.quiz_id or not p.player_id for p in request.players):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "every erased player needs its quiz_id and player_id")
        events = [PlayerErased(p.quiz_id, p.player_id, request.replacement_nickname) for p in request.players]
        try:
            # Applied like the projector's events: durably marked for publication first, so the next
            # leaderboard update of each changed ranking carries the new names even if this process stops.
            changed = await self._store.apply(events)
        except StoreUnavailable as exc:
            await _abort_unavailable(context, exc)
            raise  # unreachable: abort raises
        if self._coalescer is not None:
            self._coalescer.mark(changed)
        return pb.ErasePlayersResponse(quiz_ids=sorted(changed))
