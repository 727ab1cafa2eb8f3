"""The retry policy every quizmesh gRPC client uses: reads are retried, nothing else is.

A retried write could be applied twice (a join, a host's "next question") or answer differently the
second time (a retried answer that was in fact accepted comes back `already_answered`), so only calls
that read are retried, and only on UNAVAILABLE, which means the server did not process the call.
This is the only retry layer on a hop between quizmesh processes: the mesh's VirtualServices set
`attempts: 0` (deploy/istio/mesh/grpc-services.yaml), or 3 attempts here would become 9.
"""

from __future__ import annotations

import json
from typing import Final

IDEMPOTENT_METHODS: Final[dict[str, tuple[str, ...]]] = {
    "quizmesh.quiz.v1.QuizService": ("GetQuiz", "ListQuizzes", "GetQuizState"),
    "quizmesh.leaderboard.v1.LeaderboardService": ("GetLeaderboard",),
    "quizmesh.persistence.v1.PersistenceService": ("ListParticipants", "ListAnswers"),
}

SERVICE_CONFIG: Final = json.dumps(
    {
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
        ]
    }
)

CHANNEL_OPTIONS: Final = [("grpc.enable_retries", 1), ("grpc.service_config", SERVICE_CONFIG)]
