"""leaderboard_svc's codec: its domain values to and from protobuf, the events contract (what the
projector consumes and the publisher produces) and the LeaderboardService API; the relay passes
`LeaderboardUpdated` through as it came."""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.timestamp_pb2 import Timestamp

from leaderboard_svc.domain import AnswerScored, PlayerJoined, PlayerLeft, RankedEntry, RankingEvent, RankingSnapshot
from quizmesh.eventcodec import Event, new_event_id, now_ms, timestamp_ms
from quizmesh.events.v1 import events_pb2
from quizmesh.leaderboard.v1 import leaderboard_service_pb2 as pb


def ranking_event(event: Event) -> RankingEvent | None:
    """The domain's view of a bus event; None for events that do not move a ranking."""
    if isinstance(event, events_pb2.UserJoinedQuiz):
        return PlayerJoined(event.quiz_id, event.player_id, event.nickname, event.quiz_elapsed_ms)
    if isinstance(event, events_pb2.AnswerSubmitted):
        return AnswerScored(
            event.quiz_id,
            event.player_id,
            event.question_index,
            event.total_score,
            event.quiz_elapsed_ms,
            event.answer_time.ToMilliseconds(),
        )
    if isinstance(event, events_pb2.UserLeftQuiz):
        return PlayerLeft(event.quiz_id, event.player_id)
    return None


def leaderboard_updated(snapshot: RankingSnapshot) -> events_pb2.LeaderboardUpdated:
    event = events_pb2.LeaderboardUpdated(
        event_id=new_event_id(),
        event_time=timestamp_ms(now_ms()),
        quiz_id=snapshot.quiz_id,
        version=snapshot.version,
        entries=[
            events_pb2.LeaderboardEntry(player_id=e.player_id, nickname=e.nickname, score=e.score)
            for e in snapshot.entries
        ],
    )
    if snapshot.last_answer_ms:
        event.last_answer_time.CopyFrom(timestamp_ms(snapshot.last_answer_ms))
    return event


def entry_to_pb(entry: RankedEntry) -> pb.LeaderboardEntry:
    return pb.LeaderboardEntry(player_id=entry.player_id, nickname=entry.nickname, score=entry.score, rank=entry.rank)


def _watch_response(
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


def watch_response_from_snapshot(snapshot: RankingSnapshot) -> pb.WatchLeaderboardResponse:
    return _watch_response(
        snapshot.quiz_id,
        snapshot.version,
        map(entry_to_pb, snapshot.entries),
        timestamp_ms(now_ms()),
        snapshot.last_answer_ms,
    )


def watch_response_from_update(update: events_pb2.LeaderboardUpdated) -> pb.WatchLeaderboardResponse:
    entries = (
        pb.LeaderboardEntry(player_id=e.player_id, nickname=e.nickname, score=e.score, rank=position)
        for position, e in enumerate(update.entries, start=1)
    )
    last_answer_ms = update.last_answer_time.ToMilliseconds() if update.HasField("last_answer_time") else 0
    response = _watch_response(update.quiz_id, update.version, entries, update.event_time, last_answer_ms)
    response.leaderboard.trace_context.update(update.trace_context)
    return response
