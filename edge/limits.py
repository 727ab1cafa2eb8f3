"""Rate limits: messages per connection, joins per client address (token buckets).

A message over its connection's limit, or a join over its address's limit, is refused with a
retryable `rate_limited` error frame; the connection stays open and the client slows down. Joins
(`join_quiz`, `resume`) are counted per address because a flood of them is how bots inflate a quiz
(kahoot-hack and the like) and each costs a Kafka write. The address is the client's as
edge/forwarded.py finds it: the TCP peer's, or behind QUIZMESH_EDGE_TRUSTED_PROXY_HOPS proxies the one
they forwarded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from edge.protocol import ClientError

JOIN_TYPES = frozenset({"join_quiz", "resume"})
# Addresses remembered at most; beyond, those whose bucket has refilled (idle ones) are forgotten.
MAX_TRACKED_ADDRESSES = 10_000


@dataclass
class TokenBucket:
    """`rate` tokens per second, holding at most `burst`; full at first."""

    rate: float
    burst: float
    tokens: float = field(init=False)
    updated: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def _refill(self, now: float) -> None:
        if self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def take(self, now: float) -> bool:
        self._refill(now)
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def is_full(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.burst


@dataclass(frozen=True)
class RateLimits:
    messages_per_s: float = 20
    messages_burst: int = 40
    joins_per_min: float = 10


class Limiter:
    """One per edge: hands out per-connection limits that share the per-address join buckets."""

    def __init__(self, limits: RateLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = limits
        self._clock = clock
        self._joins: dict[str, TokenBucket] = {}

    def connection(self, address: str | None) -> ConnectionLimits:
        return ConnectionLimits(self, address or "unknown")

    def _take_join(self, address: str, now: float) -> bool:
        bucket = self._joins.get(address)
        if bucket is None:
            if len(self._joins) >= MAX_TRACKED_ADDRESSES:
                self._forget_idle(now)
            rate = self._limits.joins_per_min / 60
            bucket = self._joins[address] = TokenBucket(rate, max(self._limits.joins_per_min, 1))
        return bucket.take(now)

    def _forget_idle(self, now: float) -> None:
        for address in [a for a, b in self._joins.items() if b.is_full(now)]:
            del self._joins[address]
        if len(self._joins) >= MAX_TRACKED_ADDRESSES:
            # Every tracked address is mid-flood: forget the oldest half rather than grow without bound.
            for address in list(self._joins)[: MAX_TRACKED_ADDRESSES // 2]:
                del self._joins[address]

    @property
    def tracked_addresses(self) -> int:
        return len(self._joins)


class ConnectionLimits:
    def __init__(self, limiter: Limiter, address: str) -> None:
        self._limiter = limiter
        self._address = address
        limits = limiter._limits
        self._messages = TokenBucket(limits.messages_per_s, limits.messages_burst)

    def admit(self, message_type: str) -> None:
        """Raises a retryable `rate_limited` ClientError when the message is over a limit."""
        now = self._limiter._clock()
        if not self._messages.take(now):
            raise ClientError(
                "rate_limited", "too many messages on this connection; slow down and retry", retryable=True
            )
        if message_type in JOIN_TYPES and not self._limiter._take_join(self._address, now):
            raise ClientError(
                "rate_limited", "too many joins from this address; wait a minute and retry", retryable=True
            )
