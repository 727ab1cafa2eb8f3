"""One retry layer per hop: the gRPC clients' retry policy (quizmesh/grpc_retry.py) and the mesh's
VirtualService retries (deploy/istio/mesh/grpc-services.yaml, as each overlay renders it) never both
retry one RPC, so a read is tried at most 3 times, not 3 x 3, and a write exactly once."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from quizmesh.grpc_retry import CHANNEL_OPTIONS, SERVICE_CONFIG

from .conftest import Rendered
from .kubeschema import REPO

PROTOS = {
    "quiz-svc": REPO / "protos/quizmesh/quiz/v1/quiz_service.proto",
    "leaderboard-svc": REPO / "protos/quizmesh/leaderboard/v1/leaderboard_service.proto",
    "persistence-svc": REPO / "protos/quizmesh/persistence/v1/persistence_service.proto",
}
# Not idempotent: a second attempt could apply twice or answer differently.
WRITES = {
    "SubmitAnswer",
    "BatchSubmitAnswers",
    "StreamAnswers",
    "JoinQuiz",
    "ResumeQuiz",
    "CreateQuiz",
    "StartQuiz",
    "NextQuestion",
    "CloseQuestion",
    "KickPlayer",
    "EndQuiz",
    "LeaveQuiz",
    "SetLeaderboardVisibility",
}


def _rpcs() -> list[tuple[str, str, str]]:
    """(Kubernetes service, full gRPC service name, method) for every RPC in the contracts."""
    out = []
    for target, proto in PROTOS.items():
        text = proto.read_text()
        package = re.search(r"^package\s+([\w.]+);", text, re.M)
        assert package is not None
        for service, body in re.findall(r"^service\s+(\w+)\s*\{(.*?)^\}", text, re.M | re.S):
            for method in re.findall(r"^\s*rpc\s+(\w+)\s*\(", body, re.M):
                out.append((target, f"{package.group(1)}.{service}", method))
    return out


RPCS = _rpcs()


def _client_attempts(service: str, method: str) -> int:
    config = json.loads(SERVICE_CONFIG)
    for entry in config["methodConfig"]:
        for name in entry["name"]:
            if name["service"] == service and name.get("method") in (method, None):
                return int(entry["retryPolicy"]["maxAttempts"])
    return 1


def _route_for(vs: dict[str, Any], path: str) -> dict[str, Any]:
    route: dict[str, Any]
    for route in vs["spec"]["http"]:
        for m in route.get("match") or [{}]:
            uri = m.get("uri")
            if uri is None or uri.get("exact") == path or ("prefix" in uri and path.startswith(uri["prefix"])):
                return route
    raise AssertionError(f"no route for {path}")


def _mesh_attempts(overlay: Rendered, target: str, path: str) -> int:
    route = _route_for(overlay.one("VirtualService", target), path)
    return 1 + int(route["retries"]["attempts"])


def test_the_contracts_were_read() -> None:
    methods = {m for _, _, m in RPCS}
    assert {"GetQuiz", "SubmitAnswer", "GetLeaderboard", "WatchLeaderboard", "ListAnswers"} <= methods
    assert dict(CHANNEL_OPTIONS)["grpc.enable_retries"] == 1


@pytest.mark.parametrize(("target", "service", "method"), RPCS, ids=[m for _, _, m in RPCS])
def test_one_retry_layer_per_rpc(overlay: Rendered, target: str, service: str, method: str) -> None:
    client = _client_attempts(service, method)
    mesh = _mesh_attempts(overlay, target, f"/{service}/{method}")
    assert not (client > 1 and mesh > 1), f"{method}: client {client} x mesh {mesh} attempts"
    assert client * mesh <= 3
    if method in WRITES:
        assert client == mesh == 1, f"{method} is not idempotent and must never be retried"


def test_every_idempotent_read_is_retried_by_one_layer(overlay: Rendered) -> None:
    retried = {
        method
        for target, service, method in RPCS
        if _client_attempts(service, method) * _mesh_attempts(overlay, target, f"/{service}/{method}") > 1
    }
    assert retried == {"GetQuiz", "ListQuizzes", "GetQuizState", "GetLeaderboard", "ListParticipants", "ListAnswers"}


def test_every_http_route_states_its_retry_policy(overlay: Rendered) -> None:
    for vs in overlay.by_kind("VirtualService").values():
        for route in vs["spec"]["http"]:
            assert "retries" in route, f"{vs['metadata']['name']}/{route.get('name')} inherits Istio's 2 retries"
