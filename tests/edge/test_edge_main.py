"""The composition root: binds, reports its port, serves, and stops on request."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson

from edge.main import run
from quizmesh.runtime import Runtime
from quizmesh.settings import Engines
from tests.edge.conftest import edge_settings
from tests.edge.edge_fakes import FakeServices


async def test_run_reports_its_port_serves_and_closes_sockets_with_1012_on_stop(services: FakeServices) -> None:
    stop = asyncio.Event()
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(
        run(Runtime(Engines.embedded(":memory:")), edge_settings(services.address), stop, bound.set_result)
    )
    port = await asyncio.wait_for(bound, 5)
    assert port > 0
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/readyz") as ready:
            assert ready.status == 200
        async with http.ws_connect(f"http://127.0.0.1:{port}/ws") as ws:
            await ws.send_str('{"type": "ping", "id": 1}')
            assert orjson.loads((await ws.receive(timeout=3)).data)["type"] == "pong"
            stop.set()
            closing = await ws.receive(timeout=5)
            assert closing.type == aiohttp.WSMsgType.CLOSE
            assert closing.data == aiohttp.WSCloseCode.SERVICE_RESTART
    await asyncio.wait_for(server, 10)


async def test_a_draining_edge_reports_unready_keeps_its_sockets_then_closes_them_with_1012(
    services: FakeServices,
) -> None:
    stop = asyncio.Event()
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(
        run(Runtime(Engines.embedded(":memory:")), edge_settings(services.address, drain_s=1.0), stop, bound.set_result)
    )
    port = await asyncio.wait_for(bound, 5)
    async with aiohttp.ClientSession() as http, http.ws_connect(f"http://127.0.0.1:{port}/ws") as ws:
        stop.set()
        # A load balancer's health check sees the edge leave rotation while its players still play.
        async with asyncio.timeout(5):
            while True:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as ready:
                    if ready.status == 503:
                        break
                await asyncio.sleep(0.02)
        await ws.send_str('{"type": "ping", "id": 2}')
        assert orjson.loads((await ws.receive(timeout=3)).data)["type"] == "pong"
        closing = await ws.receive(timeout=5)
        assert closing.type == aiohttp.WSMsgType.CLOSE
        assert closing.data == aiohttp.WSCloseCode.SERVICE_RESTART
    await asyncio.wait_for(server, 10)
