"""Offline checks of deploy/: strict schemas, the mesh authorization matrix, and the wiring
between manifests (selectors, service accounts, ports, retries, Kafka topics).

The schema tests need `.infra/schemas/`, which `scripts/validate_manifests.sh --fetch-only`
fills from PyPI, the Go module proxy and Maven Central on the first run. If that fetch fails
they are skipped with the reason, except under CI=true, where they fail.
"""

from __future__ import annotations

import copy
import itertools
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from . import istio_authz
from .istio_authz import Request, Workload
from .kubeschema import REPO, SchemaSet, load_documents, manifest_files

DEPLOY = REPO / "deploy"
SCRIPT = REPO / "scripts" / "validate_manifests.sh"
NS = "quizmesh"


def _docs(*parts: str) -> list[dict[str, Any]]:
    root = DEPLOY.joinpath(*parts)
    return [d for p in manifest_files([root]) for d in load_documents(p.read_text())]


def _by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


ALL = _docs()
BASE = _docs("istio", "base")
MESH = _docs("istio", "mesh")
DEPLOYMENTS = _by_kind(BASE, "Deployment")


# --------------------------------------------------------------------------- schemas


@pytest.fixture(scope="session")
def schemas() -> SchemaSet:
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--fetch-only"], capture_output=True, text=True, timeout=600, check=False
    )
    s = SchemaSet()
    missing = s.missing()
    if proc.returncode != 0 or missing:
        reason = f"schemas could not be fetched ({'; '.join(missing) or 'partial'}): {proc.stderr[-800:]}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return s.load()


def test_every_manifest_passes_strict_schema_validation(schemas: SchemaSet) -> None:
    count, findings = schemas.validate_paths([DEPLOY])
    assert count == len(ALL) > 40
    assert findings == [], "\n".join(map(str, findings))


def test_every_kind_in_deploy_has_a_real_schema(schemas: SchemaSet) -> None:
    kinds = {(d["apiVersion"], d["kind"]) for d in ALL}
    assert {k for k in kinds if schemas.schema_for(*k) is None} == set()
    assert {"networking.istio.io", "security.istio.io", "telemetry.istio.io", "kafka.strimzi.io"} <= set(
        schemas.crd_sources
    )


def _first(kind: str, name: str) -> dict[str, Any]:
    return copy.deepcopy(next(d for d in ALL if d["kind"] == kind and d["metadata"]["name"] == name))


def _mutations() -> list[tuple[str, dict[str, Any], str]]:
    cases = []
    d = _first("Deployment", "edge")
    d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {"path": "/readyz"}
    cases.append(("core unknown field", d, "'httpGett' was unexpected"))
    d = _first("Deployment", "quiz-svc")
    d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "30s"
    cases.append(("core wrong type", d, "is not of type 'integer'"))
    d = _first("Service", "edge")
    d["metadata"]["lables"] = {"app": "edge"}
    cases.append(("metadata unknown field", d, "'lables' was unexpected"))
    d = _first("VirtualService", "quiz-svc")
    d["spec"]["http"][1]["retries"]["attemps"] = 0
    cases.append(("istio unknown field", d, "'attemps' was unexpected"))
    d = _first("DestinationRule", "quiz-svc")
    d["spec"]["trafficPolicy"]["outlierDetection"]["consecutiveGatewayErrors"] = "five"
    cases.append(("istio wrong type", d, "is not of type 'integer'"))
    d = _first("AuthorizationPolicy", "quiz-svc")
    d["spec"]["rules"][0]["from"][0]["source"]["principal"] = ["x"]
    cases.append(("istio typo in authz", d, "'principal' was unexpected"))
    d = _first("VirtualService", "edge")
    d["spec"]["http"][0]["websocketUpgrade"] = True
    cases.append(("istio removed field", d, "'websocketUpgrade' was unexpected"))
    d = _first("KafkaTopic", "answer-submitted")
    d["spec"]["partition"] = 48
    cases.append(("strimzi unknown field", d, "'partition' was unexpected"))
    d = _first("KafkaTopic", "answer-submitted")
    d["spec"]["partitions"] = "48"
    cases.append(("strimzi wrong type", d, "is not of type 'integer'"))
    return cases


@pytest.mark.parametrize(("case", "doc", "expected"), _mutations(), ids=[c[0] for c in _mutations()])
def test_a_broken_manifest_is_rejected(schemas: SchemaSet, case: str, doc: dict[str, Any], expected: str) -> None:
    messages = [f.message for f in schemas.validate(doc, case)]
    assert any(expected in m for m in messages), messages


def test_fields_marked_preserve_unknown_stay_open(schemas: SchemaSet) -> None:
    kafka = _first("Kafka", "quizmesh")
    kafka["spec"]["kafka"]["config"]["log.segment.bytes"] = 1073741824
    assert schemas.validate(kafka) == []


def test_an_unknown_kind_is_an_error_not_a_pass(schemas: SchemaSet) -> None:
    doc = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualServise", "metadata": {"name": "x"}}
    assert "no schema" in schemas.validate(doc)[0].message


def test_duplicate_yaml_keys_are_rejected() -> None:
    with pytest.raises(yaml.YAMLError, match="duplicate key"):
        load_documents("kind: Service\nmetadata: {name: a}\nmetadata: {name: b}\n")


def test_the_script_exits_non_zero_on_a_bad_file(schemas: SchemaSet, tmp_path: Path) -> None:
    bad = _first("Deployment", "edge")
    bad["spec"]["replicas"] = "three"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    proc = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "spec.replicas" in proc.stdout


# --------------------------------------------------------------------------- authorization

PRINCIPALS = {
    "edge": f"cluster.local/ns/{NS}/sa/edge",
    "quiz-svc": f"cluster.local/ns/{NS}/sa/quiz-svc",
    "leaderboard-svc": f"cluster.local/ns/{NS}/sa/leaderboard-svc",
    "persistence-svc": f"cluster.local/ns/{NS}/sa/persistence-svc",
    "quizctl": f"cluster.local/ns/{NS}/sa/quizctl",
    "default": f"cluster.local/ns/{NS}/sa/default",
    "prometheus": "cluster.local/ns/monitoring/sa/prometheus",
    "other-ns-prometheus": "cluster.local/ns/default/sa/prometheus",
    "ingressgateway": "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account",
    "plaintext": None,
}
GRPC_PORT = {"quiz-svc": 50051, "leaderboard-svc": 50052, "persistence-svc": 50053}
SERVICE_OF = {
    "quiz-svc": "quizmesh.quiz.v1.QuizService",
    "leaderboard-svc": "quizmesh.leaderboard.v1.LeaderboardService",
    "persistence-svc": "quizmesh.persistence.v1.PersistenceService",
}
_KNOWN_RPCS = {
    "quiz-svc": [
        "CreateQuiz",
        "GetQuiz",
        "ListQuizzes",
        "JoinQuiz",
        "ResumeQuiz",
        "LeaveQuiz",
        "SubmitAnswer",
        "BatchSubmitAnswers",
        "StartQuiz",
        "NextQuestion",
        "CloseQuestion",
        "KickPlayer",
        "EndQuiz",
        "GetQuizState",
        "WatchQuiz",
        "SetLeaderboardVisibility",
    ],
    "leaderboard-svc": ["GetLeaderboard", "WatchLeaderboard"],
    "persistence-svc": ["ListAnswers", "ListParticipants"],
}
_PROTO = {
    "quiz-svc": "protos/quizmesh/quiz/v1/quiz_service.proto",
    "leaderboard-svc": "protos/quizmesh/leaderboard/v1/leaderboard_service.proto",
    "persistence-svc": "protos/quizmesh/persistence/v1/persistence_service.proto",
}


def _rpcs(target: str) -> list[str]:
    names = set(_KNOWN_RPCS[target])
    proto = REPO / _PROTO[target]
    if proto.is_file():
        names |= set(re.findall(r"^\s*rpc\s+(\w+)\s*\(", proto.read_text(), re.M))
    return sorted(names)


def _requests(target: str) -> list[tuple[str, Request]]:
    """Representative requests to `target`, each labelled with a short name."""
    out: list[tuple[str, Request]] = [("metrics", Request(None, 9464, "/metrics", "GET"))]
    if target == "edge":
        out += [("ws", Request(None, 8080, "/ws", "GET")), ("ws-root", Request(None, 8080, "/", "GET"))]
    else:
        port = GRPC_PORT[target]
        # Over the mesh nobody may call Health; kubelet probes bypass the sidecar (probe rewrite).
        out.append(("health-check", Request(None, port, "/grpc.health.v1.Health/Check")))
        out += [(m, Request(None, port, f"/{SERVICE_OF[target]}/{m}")) for m in _rpcs(target)]
        # An RPC that does not exist yet (a future write): must not be open to edge.
        out.append(("FutureWrite", Request(None, port, f"/{SERVICE_OF[target]}/DeleteEverything")))
        # Another service's method on this port, and this service's method on the metrics port.
        other = next(s for s in SERVICE_OF if s != target)
        out.append(("foreign-path", Request(None, port, f"/{SERVICE_OF[other]}/{_KNOWN_RPCS[other][0]}")))
        out.append(("rpc-on-metrics-port", Request(None, 9464, f"/{SERVICE_OF[target]}/{_rpcs(target)[0]}")))
    return out


def _intended(caller: str, target: str, label: str) -> bool:
    """The allow-set from the brief, written independently of the manifests."""
    if label == "metrics":
        return caller == "prometheus"
    if target == "edge":
        return caller == "ingressgateway" and label in ("ws", "ws-root")
    if label in ("health-check", "foreign-path", "rpc-on-metrics-port"):
        return False
    if caller == "quizctl":
        return True
    if caller == "quiz-svc" and target == "persistence-svc":
        return label in ("ListAnswers", "ListParticipants")  # rebuilding live state from the source of truth
    if caller != "edge":
        return False
    if target == "persistence-svc":
        return label in ("ListAnswers", "ListParticipants")
    return True  # edge: every QuizService / LeaderboardService method


def _matrix() -> list[tuple[str, str, str, Request]]:
    rows = []
    for target in ["edge", *GRPC_PORT]:
        for (label, req), caller in itertools.product(_requests(target), PRINCIPALS):
            rows.append((caller, target, label, Request(PRINCIPALS[caller], req.port, req.path, req.method)))
    return rows


def _workload(target: str) -> Workload:
    d = DEPLOYMENTS[target]
    return Workload(d["metadata"]["namespace"], d["spec"]["template"]["metadata"]["labels"])


def test_authorization_policies_allow_exactly_the_intended_calls() -> None:
    policies = [d for d in ALL if d["kind"] == "AuthorizationPolicy"]
    actual, intended = set(), set()
    rows = _matrix()
    for caller, target, label, req in rows:
        key = (caller, target, label)
        if istio_authz.is_allowed(policies, _workload(target), req):
            actual.add(key)
        if _intended(caller, target, label):
            intended.add(key)
    assert len(rows) > 300
    assert sorted(actual - intended) == [], "allowed but not intended"
    assert sorted(intended - actual) == [], "intended but denied"


def test_the_namespace_is_default_deny() -> None:
    policies = [d for d in MESH if d["kind"] == "AuthorizationPolicy"]
    deny_all = [p for p in policies if p["spec"] == {} and p["metadata"]["namespace"] == NS]
    assert deny_all, "expected an AuthorizationPolicy with an empty spec in the namespace"
    stranger = Workload(NS, {"app": "something-new"})
    assert not istio_authz.is_allowed(policies, stranger, Request(PRINCIPALS["quizctl"], 80, "/"))


def test_evaluator_semantics_deny_wins_and_no_allow_policy_means_allow() -> None:
    wl = Workload(NS, {"app": "x"})
    req = Request(PRINCIPALS["edge"], 50051, "/a.B/C")
    assert istio_authz.is_allowed([], wl, req)
    allow = {"metadata": {"namespace": NS}, "spec": {"rules": [{}]}}
    deny = {
        "metadata": {"namespace": NS},
        "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/a.B/*"]}}]}]},
    }
    assert istio_authz.is_allowed([allow], wl, req)
    assert not istio_authz.is_allowed([allow, deny], wl, req)
    other_ns = {"metadata": {"namespace": "elsewhere"}, "spec": {}}
    assert istio_authz.is_allowed([other_ns], wl, req)
    root = {"metadata": {"namespace": "istio-system"}, "spec": {}}
    assert not istio_authz.is_allowed([root], wl, req)


def test_mtls_is_strict_for_the_namespace() -> None:
    pas = [d for d in MESH if d["kind"] == "PeerAuthentication"]
    assert any(
        p["metadata"]["namespace"] == NS and "selector" not in p["spec"] and p["spec"]["mtls"]["mode"] == "STRICT"
        for p in pas
    )
    for dr in _by_kind(MESH, "DestinationRule").values():
        assert dr["spec"]["trafficPolicy"]["tls"]["mode"] == "ISTIO_MUTUAL"


# --------------------------------------------------------------------------- wiring


def test_every_namespaced_object_names_its_namespace() -> None:
    for d in ALL:
        if d["kind"] != "Namespace":
            assert d["metadata"].get("namespace"), f"{d['kind']}/{d['metadata']['name']}"


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_deployment_wiring(name: str) -> None:
    dep = DEPLOYMENTS[name]
    pod = dep["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pod["spec"]["serviceAccountName"] in _by_kind(BASE, "ServiceAccount")
    svc = _by_kind(BASE, "Service")[name]
    assert svc["spec"]["selector"].items() <= labels.items()
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "ghcr.io/quizmesh/quizmesh:0.1.0"
    assert container["command"] == ["quizmesh", "edge" if name == "edge" else name]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    svc_ports = {p["name"]: p["port"] for p in svc["spec"]["ports"]}
    expected = {"http-ws": 8080} if name == "edge" else {"grpc": GRPC_PORT[name]}
    assert ports == svc_ports == {**expected, "http-metrics": 9464}
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] and sc["runAsNonRoot"] and not sc["allowPrivilegeEscalation"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"]
    assert set(container["resources"]["requests"]) == set(container["resources"]["limits"]) == {"cpu", "memory"}
    assert pod["spec"]["terminationGracePeriodSeconds"] == 30
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    if name == "edge":
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    else:
        assert container["readinessProbe"]["grpc"] == {"port": GRPC_PORT[name]}
        assert container["livenessProbe"]["grpc"] == {"port": GRPC_PORT[name]}
    hpa = _by_kind(BASE, "HorizontalPodAutoscaler")[name]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    if name == "edge":
        pods = metrics["Pods"]["pods"]
        assert pods["metric"]["name"] == "quizmesh_edge_connections"
        assert pods["target"] == {"type": "AverageValue", "averageValue": "8000"}
    pdb = _by_kind(BASE, "PodDisruptionBudget")[name]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # AuthorizationPolicy selectors must select this pod, or the policy silently applies to nothing.
    ap = _by_kind(MESH, "AuthorizationPolicy")[name]
    assert ap["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_secrets_come_from_the_documented_secret() -> None:
    for dep in DEPLOYMENTS.values():
        for env in dep["spec"]["template"]["spec"]["containers"][0]["env"]:
            if env["name"] in ("QUIZMESH_POSTGRES_DSN", "QUIZMESH_SIGNING_KEY"):
                assert "value" not in env
                assert env["valueFrom"]["secretKeyRef"]["name"] == "quizmesh-secrets"


NON_IDEMPOTENT = [
    "SubmitAnswer",
    "BatchSubmitAnswers",
    "JoinQuiz",
    "CreateQuiz",
    "StartQuiz",
    "NextQuestion",
    "CloseQuestion",
    "KickPlayer",
    "EndQuiz",
    "LeaveQuiz",
]


def _route_for(vs: dict[str, Any], path: str) -> dict[str, Any]:
    route: dict[str, Any]
    for route in vs["spec"]["http"]:
        matches = route.get("match") or [{}]
        for m in matches:
            uri = m.get("uri")
            if uri is None or uri.get("exact") == path or ("prefix" in uri and path.startswith(uri["prefix"])):
                return route
    raise AssertionError(f"no route for {path}")


@pytest.mark.parametrize("method", [*NON_IDEMPOTENT, "WatchQuiz", "ResumeQuiz", "SetLeaderboardVisibility"])
def test_quiz_writes_are_never_retried_by_the_mesh(method: str) -> None:
    vs = _by_kind(MESH, "VirtualService")["quiz-svc"]
    route = _route_for(vs, f"/quizmesh.quiz.v1.QuizService/{method}")
    assert route["retries"] == {"attempts": 0}


@pytest.mark.parametrize("method", ["GetQuiz", "ListQuizzes", "GetQuizState"])
def test_quiz_reads_are_retried_on_unavailable_only(method: str) -> None:
    vs = _by_kind(MESH, "VirtualService")["quiz-svc"]
    route = _route_for(vs, f"/quizmesh.quiz.v1.QuizService/{method}")
    assert route["retries"]["attempts"] > 0 and route["retries"]["retryOn"] == "unavailable"


def test_every_http_route_states_its_retry_policy() -> None:
    for vs in _by_kind(MESH, "VirtualService").values():
        for route in vs["spec"]["http"]:
            assert "retries" in route, f"{vs['metadata']['name']}/{route.get('name')} inherits Istio's 2 retries"


def test_kafka_topics_match_the_plan() -> None:
    kafka = _docs("kafka")
    topics = {t["spec"]["topicName"]: t for t in _by_kind(kafka, "KafkaTopic").values()}
    assert set(topics) == {"user_joined_quiz", "answer_submitted", "leaderboard_updated", "user_left_quiz"}
    for t in topics.values():
        assert t["spec"]["partitions"] == 48 and t["spec"]["replicas"] == 3
        assert t["spec"]["config"]["min.insync.replicas"] == 2
        assert t["metadata"]["labels"]["strimzi.io/cluster"] in _by_kind(kafka, "Kafka")
    pools = _by_kind(kafka, "KafkaNodePool")
    assert {r for p in pools.values() for r in p["spec"]["roles"]} == {"controller", "broker"}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
