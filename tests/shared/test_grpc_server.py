"""What quizmesh's gRPC server and the edge do with a port another process holds."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from bench.procs import free_port
from quizmesh.grpc_server import GrpcServer
from quizmesh.process import CannotStart
from tests.support.stack import SIGNING_KEY, run_quizmesh


async def test_a_port_another_server_listens_on_stops_the_second_instead_of_being_shared() -> None:
    # gRPC's default, SO_REUSEPORT, would let both bind it and split its connections between them.
    address = f"127.0.0.1:{free_port()}"
    first = GrpcServer(address, [])
    await first.start()
    try:
        with pytest.raises(CannotStart, match=f"cannot listen on {address}: another process holds the port"):
            GrpcServer(address, [])
    finally:
        await first.stop(0)


async def test_an_edge_whose_port_is_taken_refuses_to_start_and_says_which_setting_moves_it(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", free_port()))
        holder.listen()
        port = holder.getsockname()[1]
        env = {
            **os.environ,
            "QUIZMESH_EDGE_PORT": str(port),
            "QUIZMESH_SIGNING_KEY": SIGNING_KEY,
            "QUIZMESH_LOG_FORMAT": "plain",
        }
        refused = await asyncio.to_thread(run_quizmesh, "edge", env=env, cwd=tmp_path)
    assert refused.returncode == 3, refused.stderr[-2000:]
    assert f"quizmesh edge: cannot start: cannot listen on 127.0.0.1:{port}: " in refused.stderr
    assert "set QUIZMESH_EDGE_PORT (or QUIZMESH_EDGE_HOST)" in refused.stderr
