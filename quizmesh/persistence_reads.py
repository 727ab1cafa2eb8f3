"""A quiz's whole stored record, read from PersistenceService page by page.

persistence_svc owns the participants and answers tables; every other service reads them through
its gRPC API (which decides whether its replica may serve the read), never from the tables.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from quizmesh.persistence.v1 import persistence_service_pb2 as pb
from quizmesh.persistence.v1 import persistence_service_pb2_grpc as pb_grpc

T = TypeVar("T")

PAGE_SIZE = 10_000


async def _every_page(fetch: Callable[[str], Awaitable[tuple[Sequence[T], str]]]) -> list[T]:
    items: list[T] = []
    token = ""
    while True:
        page, token = await fetch(token)
        items.extend(page)
        if not token:
            return items


async def all_participants(
    stub: pb_grpc.PersistenceServiceStub, quiz_id: str, *, timeout_s: float
) -> list[pb.Participant]:
    """Every player who joined the quiz, in join order; each call has the deadline `timeout_s`."""

    async def fetch(token: str) -> tuple[Sequence[pb.Participant], str]:
        request = pb.ListParticipantsRequest(quiz_id=quiz_id, page_size=PAGE_SIZE, page_token=token)
        page = await stub.ListParticipants(request, timeout=timeout_s)
        return page.participants, page.next_page_token

    return await _every_page(fetch)


async def all_answers(stub: pb_grpc.PersistenceServiceStub, quiz_id: str, *, timeout_s: float) -> list[pb.StoredAnswer]:
    """Every accepted answer of the quiz, by question then answer time; each call has the deadline `timeout_s`."""

    async def fetch(token: str) -> tuple[Sequence[pb.StoredAnswer], str]:
        request = pb.ListAnswersRequest(quiz_id=quiz_id, page_size=PAGE_SIZE, page_token=token)
        page = await stub.ListAnswers(request, timeout=timeout_s)
        return page.answers, page.next_page_token

    return await _every_page(fetch)
