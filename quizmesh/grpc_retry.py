"""How every quizmesh gRPC client reaches a service: the retry policy, the spreading of calls over the
service's replicas, and how fast a channel reconnects.

Retries: reads are retried, nothing else is. A retried write could be applied twice (a join) or answer
differently the second time, so only calls that read are retried, and only on UNAVAILABLE, which means
the server did not process the call. This is the only retry layer on a hop between quizmesh
processes: the mesh's VirtualServices set `attempts: 0` (deploy/istio/mesh/grpc-services.yaml), or 3
attempts here would become 9. Writes that are safe to repeat say so in their contract (an
answer, a host action naming its question) and are repeated by their callers, who know when.

Replicas: a client names a service by one target. With several replicas, the target lists them all,
`ipv4:10.0.0.5:50051,10.0.0.6:50051` (`target()` builds it), or is a DNS name that resolves to all
of them; the channel's `round_robin` policy keeps a connection to each and spreads calls over those
that are up, so a replica going down costs only the calls in flight on it. Behind a proxy that balances
itself (a Kubernetes Service VIP, an Istio sidecar) the target is one address and round_robin is moot.

Reconnecting: gRPC backs off up to 120 s between attempts to reach a server that refused a connection;
capped at half a second here, a channel serves again within that of its server coming back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final

IDEMPOTENT_METHODS: Final[dict[str, tuple[str, ...]]] = {
    "quizmesh.quiz.v1.QuizService": ("GetQuiz", "ListQuizzes", "GetQuizState"),
    "quizmesh.leaderboard.v1.LeaderboardService": ("GetLeaderboard",),
    "quizmesh.persistence.v1.PersistenceService": ("ListParticipants", "ListAnswers"),
}

SERVICE_CONFIG: Final = json.dumps(
    {
        # A target listing several processes (ipv4:127.0.0.1:a,127.0.0.1:b) spreads calls over them.
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [
                    {"service": service, "method": method}
                    for service, methods in IDEMPOTENT_METHODS.items()
                    for method in methods
                ],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
)

RECONNECT_OPTIONS: Final = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 500)]

CHANNEL_OPTIONS: Final = [("grpc.enable_retries", 1), ("grpc.service_config", SERVICE_CONFIG), *RECONNECT_OPTIONS]


def target(addresses: Sequence[str]) -> str:
    """One gRPC target for every replica of a service, given their `host:port` addresses.

    One address is returned as it is. Several must be IP literals (`127.0.0.1:50051`, `[::1]:50051`):
    they become `ipv4:a,b` or `ipv6:a,b`, which gRPC resolves to the list itself; replicas known by name
    are reached through one DNS name resolving to all of them instead."""
    if not addresses:
        raise ValueError("a gRPC target needs at least one address")
    if len(addresses) == 1:
        return addresses[0]
    scheme = "ipv6" if all(a.startswith("[") for a in addresses) else "ipv4"
    if scheme == "ipv4" and not all(_is_ipv4_address(a) for a in addresses):
        raise ValueError(f"several replicas need IP addresses (or one DNS name for all): {list(addresses)}")
    return f"{scheme}:{','.join(addresses)}"


def _is_ipv4_address(address: str) -> bool:
    host, _, port = address.rpartition(":")
    parts = host.split(".")
    return port.isdigit() and len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts)
