"""The ports the test stacks and benchmarks start their servers on."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

from bench.procs import free_port, free_ports


def _ephemeral_range() -> range:
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    return range(low, high + 1)


def _bind_all(ports: range) -> None:
    with contextlib.ExitStack() as held:
        for port in ports:
            held.enter_context(socket.socket()).bind(("127.0.0.1", port))


def test_ports_are_never_handed_out_twice_nor_from_the_range_outgoing_connections_take() -> None:
    # 12 ports a stack, 300 stacks: the kernel's own choice repeats a port in about 1 stack in 200.
    ports = [free_port() for _ in range(3600)]
    assert len(set(ports)) == len(ports)
    ephemeral = _ephemeral_range()
    if 65536 - ephemeral.stop >= 1000 or ephemeral.start - 27000 >= 1000:
        assert not [p for p in ports if p in ephemeral]
    _bind_all(range(ports[-1], ports[-1] + 1))


def test_a_run_of_ports_is_free_together_and_shares_no_port_with_single_ones() -> None:
    single = free_port()
    first = free_ports(3)
    run = range(first, first + 3)
    assert single not in run
    _bind_all(run)
