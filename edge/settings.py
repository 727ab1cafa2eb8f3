"""The edge's configuration, read from the environment once at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from quizmesh.settings import SettingsError, env_int, env_str


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    quiz_addr: str
    leaderboard_addr: str
    # Origins allowed to open a WebSocket; empty allows same-host pages and clients that send no Origin.
    allowed_origins: frozenset[str]
    # Read only by the results export (GET /quizzes/{quiz_id}/results.csv); not needed to play.
    persistence_addr: str = "127.0.0.1:50053"
    leaderboard_top_n: int = 10
    answer_batch_size: int = 256
    answer_batch_linger_ms: int = 2
    # Beyond this many answer calls in flight, answers wait for one to return (edge/upstream.py AnswerBatcher).
    answer_batches_in_flight: int = 2
    answer_deadline_s: float = 5.0
    call_deadline_s: float = 5.0
    readiness_deadline_s: float = 1.0
    max_msg_size: int = 64 * 1024
    heartbeat_s: float = 20.0
    # A socket whose unsent output exceeds this is skipped for leaderboards and cut off for quiz states.
    max_buffered_bytes: int = 1024 * 1024
    shutdown_grace_s: float = 5.0
    # On SIGTERM the edge reports unready (/readyz 503) but keeps serving this long before it closes its
    # sockets with 1012, so that a load balancer's health checks take it out of rotation first and
    # reconnecting clients land on another edge.
    drain_s: float = 0.0
    # Proxies in front of the edge that append to X-Forwarded-For (edge/forwarded.py); 0 trusts none.
    trusted_proxy_hops: int = 0
    # Rate limits (edge/limits.py): messages per connection, joins (join_quiz, resume) per client address.
    messages_per_s: int = 20
    messages_burst: int = 40
    joins_per_min: int = 10

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        port = env_int(env, "QUIZMESH_EDGE_PORT", 8080)
        if port > 65535:
            raise SettingsError(f"QUIZMESH_EDGE_PORT={port} must be at most 65535")
        top_n = env_int(env, "QUIZMESH_EDGE_LEADERBOARD_TOP_N", 10, minimum=1)
        if top_n > 1000:
            raise SettingsError(f"QUIZMESH_EDGE_LEADERBOARD_TOP_N={top_n} must be at most 1000")
        return cls(
            host=env_str(env, "QUIZMESH_EDGE_HOST", "127.0.0.1"),
            port=port,
            quiz_addr=env_str(env, "QUIZMESH_QUIZ_ADDR", "127.0.0.1:50051"),
            leaderboard_addr=env_str(env, "QUIZMESH_LEADERBOARD_ADDR", "127.0.0.1:50052"),
            persistence_addr=env_str(env, "QUIZMESH_PERSISTENCE_ADDR", "127.0.0.1:50053"),
            allowed_origins=parse_origins(env_str(env, "QUIZMESH_EDGE_ALLOWED_ORIGINS", "")),
            leaderboard_top_n=top_n,
            answer_batch_size=env_int(env, "QUIZMESH_EDGE_ANSWER_BATCH_SIZE", 256, minimum=1),
            answer_batch_linger_ms=env_int(env, "QUIZMESH_EDGE_ANSWER_BATCH_LINGER_MS", 2),
            answer_batches_in_flight=env_int(env, "QUIZMESH_EDGE_ANSWER_BATCHES_IN_FLIGHT", 2, minimum=1),
            messages_per_s=env_int(env, "QUIZMESH_EDGE_MESSAGES_PER_S", 20, minimum=1),
            messages_burst=env_int(env, "QUIZMESH_EDGE_MESSAGES_BURST", 40, minimum=1),
            joins_per_min=env_int(env, "QUIZMESH_EDGE_JOINS_PER_MIN", 10, minimum=1),
            drain_s=env_int(env, "QUIZMESH_EDGE_DRAIN_MS", 0) / 1000,
            trusted_proxy_hops=env_int(env, "QUIZMESH_EDGE_TRUSTED_PROXY_HOPS", 0),
        )


def parse_origins(raw: str) -> frozenset[str]:
    """`https://a.example, https://b.example/` → normalized origins (lower case, no trailing slash)."""
    origins = set()
    for item in raw.split(","):
        origin = item.strip().rstrip("/").lower()
        if not origin:
            continue
        if "://" not in origin:
            raise SettingsError(f"QUIZMESH_EDGE_ALLOWED_ORIGINS entry {item.strip()!r} must be scheme://host[:port]")
        origins.add(origin)
    return frozenset(origins)
