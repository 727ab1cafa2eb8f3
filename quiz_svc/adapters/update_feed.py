"""Quiz state changes over pub/sub channels, one channel per quiz, encoded once by the publisher."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

from quiz_svc import messages
from quiz_svc.domain import QuizDefinition
from quiz_svc.ports import Clock, QuizUpdate
from quizmesh.pubsub import Channels


def _channel(quiz_id: str) -> str:
    return f"qz:{{{quiz_id}}}:updates"


class ChannelUpdateFeed:
    def __init__(self, channels: Channels, clock: Clock) -> None:
        self._channels = channels
        self._clock = clock

    async def publish(self, quiz: QuizDefinition, update: QuizUpdate) -> None:
        payload = messages.update_to_pb(quiz, update, self._clock.now_ms()).SerializeToString()
        await self._channels.publish(_channel(quiz.quiz_id), payload)

    def watch(self, quiz_id: str) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        return self._channels.subscribe(_channel(quiz_id))
