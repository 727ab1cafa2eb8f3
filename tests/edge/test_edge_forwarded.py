"""The client address behind trusted proxies: Envoy's xff_num_trusted_hops with use_remote_address."""

from __future__ import annotations

import pytest

from edge.forwarded import client_address
from edge.settings import Settings
from quizmesh.settings import SettingsError

PEER = "10.0.0.9"


def test_without_trusted_hops_the_tcp_peer_is_the_client_whatever_the_header_says() -> None:
    assert client_address(PEER, ["203.0.113.128, 203.0.113.10"], 0) == PEER


def test_with_one_hop_the_client_is_what_the_proxy_appended_and_forged_entries_are_ignored() -> None:
    # The client sent "198.51.100.1" itself; the proxy appended the address it saw, 192.0.2.5.
    assert client_address(PEER, ["198.51.100.1, 192.0.2.5"], 1) == "192.0.2.5"


def test_with_two_hops_the_client_is_the_second_address_from_the_right() -> None:
    # Envoy's documented example: XFF "203.0.113.128, 203.0.113.10, 203.0.113.1" and N = 2.
    assert client_address(PEER, ["203.0.113.128, 203.0.113.10, 203.0.113.1"], 2) == "203.0.113.10"


def test_header_lines_are_joined_in_order() -> None:
    # HAProxy adds its own line after the client's instead of appending to it.
    assert client_address(PEER, ["198.51.100.1", "192.0.2.5"], 1) == "192.0.2.5"
    assert client_address(PEER, ["198.51.100.1", "192.0.2.5"], 2) == "198.51.100.1"


def test_fewer_addresses_than_trusted_hops_fall_back_to_the_tcp_peer() -> None:
    assert client_address(PEER, ["192.0.2.5"], 2) == PEER
    assert client_address(PEER, [], 1) == PEER


def test_an_entry_that_is_not_an_ip_address_falls_back_to_the_tcp_peer() -> None:
    assert client_address(PEER, ["192.0.2.5, unknown"], 1) == PEER
    assert client_address(PEER, ["192.0.2.5:4711"], 1) == PEER


def test_ipv6_entries_are_read_and_normalised() -> None:
    assert client_address(PEER, ["2001:DB8::1"], 1) == "2001:db8::1"


def test_trusted_hops_and_drain_come_from_the_environment() -> None:
    settings = Settings.from_env({"QUIZMESH_EDGE_TRUSTED_PROXY_HOPS": "1", "QUIZMESH_EDGE_DRAIN_MS": "2500"})
    assert (settings.trusted_proxy_hops, settings.drain_s) == (1, 2.5)
    assert (Settings.from_env({}).trusted_proxy_hops, Settings.from_env({}).drain_s) == (0, 0.0)
    with pytest.raises(SettingsError, match="QUIZMESH_EDGE_TRUSTED_PROXY_HOPS"):
        Settings.from_env({"QUIZMESH_EDGE_TRUSTED_PROXY_HOPS": "-1"})
