"""One embedded stack for all Socket.IO tests: starting one costs more than the tests that use it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.stack import Stack, embedded_stack


@pytest.fixture(scope="package")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with embedded_stack(tmp_path_factory.mktemp("socketio")) as running:
        yield running
