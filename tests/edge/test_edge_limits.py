"""The edge's rate limits on a fake clock."""

from __future__ import annotations

import pytest

from edge import limits
from edge.limits import Limiter, RateLimits
from edge.protocol import ClientError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def admitted(connection: limits.ConnectionLimits, message_type: str, count: int) -> int:
    passed = 0
    for _ in range(count):
        try:
            connection.admit(message_type)
            passed += 1
        except ClientError as refusal:
            assert refusal.code == "rate_limited" and refusal.retryable
    return passed


def test_a_connection_gets_its_burst_then_its_rate() -> None:
    clock = Clock()
    connection = Limiter(RateLimits(messages_per_s=20, messages_burst=40), clock).connection("10.0.0.1")
    assert admitted(connection, "ping", 100) == 40
    clock.now += 0.5
    assert admitted(connection, "ping", 100) == 10


def test_joins_are_counted_per_address_across_connections() -> None:
    clock = Clock()
    limiter = Limiter(RateLimits(joins_per_min=10), clock)
    assert sum(admitted(limiter.connection("10.0.0.1"), "join_quiz", 1) for _ in range(12)) == 10
    assert admitted(limiter.connection("10.0.0.1"), "resume", 1) == 0
    assert admitted(limiter.connection("10.0.0.2"), "join_quiz", 1) == 1  # another address
    clock.now += 6
    assert admitted(limiter.connection("10.0.0.1"), "join_quiz", 2) == 1  # one join per 6 s


def test_the_addresses_remembered_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_TRACKED_ADDRESSES", 100)
    clock = Clock()
    limiter = Limiter(RateLimits(joins_per_min=10), clock)
    for n in range(1000):
        limiter.connection(f"10.0.{n // 256}.{n % 256}").admit("join_quiz")
        clock.now += 0.001
    assert limiter.tracked_addresses <= 100
