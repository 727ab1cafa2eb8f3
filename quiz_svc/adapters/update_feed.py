"""Quiz state changes over pub/sub channels, one channel per quiz, encoded once by the publisher."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from quiz_svc import messages
from quiz_svc.domain import QuizDefinition
from quiz_svc.ports import Clock, QuizUpdate
from quizmesh.pubsub import Channels
from quizmesh.quiz.v1 import quiz_service_pb2 as pb


def _channel(quiz_id: str) -> str:
    return f"qz:{{{quiz_id}}}:updates"


class ChannelUpdateFeed:
    def __init__(self, channels: Channels, clock: Clock) -> None:
        self._channels = channels
        self._clock = clock

    async def publish(self, quiz: QuizDefinition, update: QuizUpdate) -> None:
        payload = messages.update_to_pb(quiz, update, self._clock.now_ms()).SerializeToString()
        await self._channels.publish(_channel(quiz.quiz_id), payload)

    @contextlib.asynccontextmanager
    async def watch(self, quiz_id: str) -> AsyncIterator[AsyncIterator[pb.WatchQuizResponse]]:
        async with self._channels.subscribe(_channel(quiz_id)) as payloads:

            async def updates() -> AsyncIterator[pb.WatchQuizResponse]:
                async for payload in payloads:
                    yield pb.WatchQuizResponse.FromString(payload)

            yield updates()
