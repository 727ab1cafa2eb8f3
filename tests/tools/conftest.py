"""One embedded quizmesh shared by the tools tests that only read and create (health tests run their own)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.stack import Stack, embedded_stack


@pytest.fixture(scope="package")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with embedded_stack(tmp_path_factory.mktemp("tools-stack")) as running:
        yield running
