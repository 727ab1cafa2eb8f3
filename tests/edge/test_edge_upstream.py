"""The upstream clients' readiness, without and with services."""

from __future__ import annotations

import socket

from edge.upstream import Upstream
from tests.edge.edge_fakes import FakeServices


def _unused_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


async def test_not_ready_before_open_or_when_a_service_is_unreachable(services: FakeServices) -> None:
    upstream = Upstream(services.address, _unused_address(), readiness_deadline_s=0.3)
    assert not await upstream.ready()
    await upstream.open()
    try:
        assert not await upstream.ready()
    finally:
        await upstream.close(0)


async def test_ready_when_both_services_are_serving(services: FakeServices) -> None:
    upstream = Upstream(services.address, services.address)
    await upstream.open()
    try:
        assert await upstream.ready()
        await services.set_serving(False)
        assert not await upstream.ready()
    finally:
        await upstream.close(0)
