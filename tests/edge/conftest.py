"""Fixtures for the edge's tests: fake services on a real grpc.aio server, and edges started against them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import grpc
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from grpc_health.v1 import health, health_pb2_grpc

from edge.app import create_app
from edge.main import upstream_of
from edge.settings import Settings
from quizmesh.leaderboard.v1 import leaderboard_service_pb2_grpc as leaderboard_grpc
from quizmesh.persistence.v1 import persistence_service_pb2_grpc as persistence_grpc
from quizmesh.quiz.v1 import quiz_service_pb2_grpc as quiz_grpc
from tests.edge.edge_fakes import FakeLeaderboardService, FakePersistenceService, FakeQuizService, FakeServices


@pytest.fixture
async def services() -> AsyncIterator[FakeServices]:
    server = grpc.aio.server()
    fakes = FakeServices(FakeQuizService(), FakeLeaderboardService(), health.aio.HealthServicer(), "")
    quiz_grpc.add_QuizServiceServicer_to_server(fakes.quiz, server)
    leaderboard_grpc.add_LeaderboardServiceServicer_to_server(fakes.leaderboard, server)
    persistence_grpc.add_PersistenceServiceServicer_to_server(FakePersistenceService(), server)
    health_pb2_grpc.add_HealthServicer_to_server(fakes.health, server)
    port = server.add_insecure_port("127.0.0.1:0")
    fakes.address = f"127.0.0.1:{port}"
    await server.start()
    await fakes.set_serving(True)
    yield fakes
    await server.stop(0)


def edge_settings(address: str, **overrides: Any) -> Settings:
    base = Settings(
        host="127.0.0.1",
        port=0,
        quiz_addr=address,
        leaderboard_addr=address,
        persistence_addr=address,
        allowed_origins=frozenset(),
    )
    return replace(base, **overrides)


EdgeFactory = Callable[..., Any]


@pytest.fixture
async def edge(services: FakeServices) -> AsyncIterator[EdgeFactory]:
    """Starts an edge app against the fakes; `await edge(**settings_overrides)` returns its test client."""
    clients: list[TestClient[web.Request, web.Application]] = []

    async def start(**overrides: Any) -> TestClient[web.Request, web.Application]:
        settings = edge_settings(services.address, **overrides)
        upstream = upstream_of(settings)
        client = TestClient(TestServer(create_app(settings, upstream)))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()
