"""What quizmesh's gRPC server does with the port it is given."""

from __future__ import annotations

import pytest

from bench.procs import free_port
from quizmesh.grpc_server import GrpcServer


async def test_a_port_another_server_listens_on_stops_the_second_instead_of_being_shared() -> None:
    address = f"127.0.0.1:{free_port()}"
    first = GrpcServer(address, [])
    await first.start()
    try:
        with pytest.raises((OSError, RuntimeError)):
            GrpcServer(address, [])
    finally:
        await first.stop(0)
