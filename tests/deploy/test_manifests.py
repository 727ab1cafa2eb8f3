"""Offline checks of deploy/ as kustomize renders it: strict schemas, the mesh authorization matrix,
and the wiring between manifests (selectors, service accounts, ports, environments, monitors,
Kafka topics). Every overlay is checked on its own.
"""

from __future__ import annotations

import copy
import itertools
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from quizmesh import identity
from quizmesh.leaderboard.v1 import leaderboard_service_pb2
from quizmesh.persistence.v1 import persistence_service_pb2
from quizmesh.quiz.v1 import quiz_service_pb2

from . import istio_authz
from .conftest import DEPLOY, OVERLAYS, PLAIN, ROOTS, SCRIPT, Rendered
from .istio_authz import Request, Workload
from .kubeschema import SchemaSet, load_documents, manifest_files

IMAGE = "ghcr.io/quizmesh/quizmesh"
SERVICES = ["edge", "quiz-svc", "leaderboard-svc", "persistence-svc"]


# --------------------------------------------------------------------------- schemas


def test_every_rendered_manifest_passes_strict_schema_validation(tools: SchemaSet) -> None:
    count, findings = tools.validate_paths([*ROOTS, *PLAIN])
    assert count > 80
    assert findings == [], "\n".join(map(str, findings))


def test_every_kind_has_a_real_schema(tools: SchemaSet, every_root: list[Rendered]) -> None:
    kinds = {(d["apiVersion"], d["kind"]) for r in every_root for d in r.docs}
    assert {k for k in kinds if tools.schema_for(*k) is None} == set()
    assert {
        "networking.istio.io",
        "security.istio.io",
        "telemetry.istio.io",
        "kafka.strimzi.io",
        "monitoring.coreos.com",
    } <= set(tools.crd_sources)


def test_every_manifest_file_is_part_of_a_kustomization(every_root: list[Rendered]) -> None:
    """A file no kustomization lists would never be applied (nor validated as rendered)."""
    rendered_objects = {(d["kind"], d["metadata"]["name"]) for r in every_root for d in r.docs}
    examples = DEPLOY / "examples"
    for path in manifest_files([DEPLOY]):
        if examples in path.parents:
            continue
        for doc in load_documents(path.read_text()):
            assert (doc["kind"], doc["metadata"]["name"]) in rendered_objects, f"{path} is in no kustomization"


def _mutations(prod: Rendered, kafka: Rendered) -> list[tuple[str, dict[str, Any], str]]:
    def first(source: Rendered, kind: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(source.one(kind, name))

    cases = []
    d = first(prod, "Deployment", "edge")
    d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {"path": "/readyz"}
    cases.append(("core unknown field", d, "'httpGett' was unexpected"))
    d = first(prod, "Deployment", "quiz-svc")
    d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "30s"
    cases.append(("core wrong type", d, "is not of type 'integer'"))
    d = first(prod, "Service", "edge")
    d["metadata"]["lables"] = {"app": "edge"}
    cases.append(("metadata unknown field", d, "'lables' was unexpected"))
    d = first(prod, "VirtualService", "quiz-svc")
    d["spec"]["http"][1]["retries"]["attemps"] = 0
    cases.append(("istio unknown field", d, "'attemps' was unexpected"))
    d = first(prod, "DestinationRule", "quiz-svc")
    d["spec"]["trafficPolicy"]["outlierDetection"]["consecutiveGatewayErrors"] = "five"
    cases.append(("istio wrong type", d, "is not of type 'integer'"))
    d = first(prod, "AuthorizationPolicy", "quiz-svc")
    d["spec"]["rules"][0]["from"][0]["source"]["principal"] = ["x"]
    cases.append(("istio typo in authz", d, "'principal' was unexpected"))
    d = first(prod, "VirtualService", "edge")
    d["spec"]["http"][0]["websocketUpgrade"] = True
    cases.append(("istio removed field", d, "'websocketUpgrade' was unexpected"))
    d = first(kafka, "KafkaTopic", "answer-submitted")
    d["spec"]["partition"] = 48
    cases.append(("strimzi unknown field", d, "'partition' was unexpected"))
    d = first(kafka, "KafkaTopic", "answer-submitted")
    d["spec"]["partitions"] = "48"
    cases.append(("strimzi wrong type", d, "is not of type 'integer'"))
    d = first(prod, "ServiceMonitor", "quizmesh")
    d["spec"]["endpoints"][0]["tlsConfig"]["certfile"] = "/etc/prom-certs/cert-chain.pem"
    cases.append(("prometheus-operator unknown field", d, "'certfile' was unexpected"))
    d = first(prod, "PrometheusRule", "quizmesh")
    d["spec"]["groups"][0]["rules"][0]["for"] = 300
    cases.append(("prometheus-operator wrong type", d, "is not of type 'string'"))
    d = first(prod, "ConfigMap", "quizmesh-dashboard")
    d["data"]["grafana-dashboard.json"] = {"title": "not a string"}
    cases.append(("generated ConfigMap wrong type", d, "is not of type 'string'"))
    return cases


_MUTATION_IDS = [
    "core unknown field",
    "core wrong type",
    "metadata unknown field",
    "istio unknown field",
    "istio wrong type",
    "istio typo in authz",
    "istio removed field",
    "strimzi unknown field",
    "strimzi wrong type",
    "prometheus-operator unknown field",
    "prometheus-operator wrong type",
    "generated ConfigMap wrong type",
]


@pytest.mark.parametrize("case", _MUTATION_IDS)
def test_a_broken_manifest_is_rejected(tools: SchemaSet, prod: Rendered, every_root: list[Rendered], case: str) -> None:
    kafka = next(r for r in every_root if r.name == "kafka")
    cases = {name: (doc, expected) for name, doc, expected in _mutations(prod, kafka)}
    assert set(cases) == set(_MUTATION_IDS)
    doc, expected = cases[case]
    messages = [f.message for f in tools.validate(doc, case)]
    assert any(expected in m for m in messages), messages


def test_fields_marked_preserve_unknown_stay_open(tools: SchemaSet, every_root: list[Rendered]) -> None:
    kafka = copy.deepcopy(next(r for r in every_root if r.name == "kafka").one("Kafka", "quizmesh"))
    kafka["spec"]["kafka"]["config"]["log.segment.bytes"] = 1073741824
    assert tools.validate(kafka) == []


def test_an_unknown_kind_is_an_error_not_a_pass(tools: SchemaSet) -> None:
    for api_version, kind in [
        ("networking.istio.io/v1", "VirtualServise"),
        ("monitoring.coreos.com/v1", "PodMonitors"),
    ]:
        doc = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}}
        assert "no schema" in tools.validate(doc)[0].message


def test_duplicate_yaml_keys_are_rejected() -> None:
    with pytest.raises(yaml.YAMLError, match="duplicate key"):
        load_documents("kind: Service\nmetadata: {name: a}\nmetadata: {name: b}\n")


def test_the_script_exits_non_zero_on_a_bad_file(tools: SchemaSet, prod: Rendered, tmp_path: Path) -> None:
    bad = copy.deepcopy(prod.one("Deployment", "edge"))
    bad["spec"]["replicas"] = "three"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    proc = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "spec.replicas" in proc.stdout


def test_the_script_fails_on_a_kustomization_that_does_not_build(tools: SchemaSet, tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    proc = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "RenderError" in proc.stdout


# --------------------------------------------------------------------------- authorization


APP_BACKEND = "cluster.local/ns/app/sa/app-backend"


def _principals(ns: str) -> dict[str, str | None]:
    return {
        "edge": f"cluster.local/ns/{ns}/sa/edge",
        "quiz-svc": f"cluster.local/ns/{ns}/sa/quiz-svc",
        "leaderboard-svc": f"cluster.local/ns/{ns}/sa/leaderboard-svc",
        "persistence-svc": f"cluster.local/ns/{ns}/sa/persistence-svc",
        "quizctl": f"cluster.local/ns/{ns}/sa/quizctl",
        "default": f"cluster.local/ns/{ns}/sa/default",
        "prometheus": "cluster.local/ns/monitoring/sa/prometheus",
        "other-ns-prometheus": "cluster.local/ns/default/sa/prometheus",
        # The same service account name in another namespace (another environment) is a stranger.
        "other-ns-edge": "cluster.local/ns/elsewhere/sa/edge",
        "ingressgateway": "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account",
        # The application's backend (the documented placeholder app/app-backend), and strangers that
        # share its namespace or its service account's name.
        "app-backend": APP_BACKEND,
        "app-default": "cluster.local/ns/app/sa/default",
        "other-ns-app-backend": "cluster.local/ns/elsewhere/sa/app-backend",
        "plaintext": None,
    }


GRPC_PORT = {"quiz-svc": 50051, "leaderboard-svc": 50052, "persistence-svc": 50053}
_SERVICES = {
    "quiz-svc": quiz_service_pb2.DESCRIPTOR.services_by_name["QuizService"],
    "leaderboard-svc": leaderboard_service_pb2.DESCRIPTOR.services_by_name["LeaderboardService"],
    "persistence-svc": persistence_service_pb2.DESCRIPTOR.services_by_name["PersistenceService"],
}
SERVICE_OF = {target: service.full_name for target, service in _SERVICES.items()}


def _rpcs(target: str) -> list[str]:
    """Every method of the target's contract, as generated from protos/: a new RPC is checked here too."""
    return sorted(method.name for method in _SERVICES[target].methods)


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
        out.append(("foreign-path", Request(None, port, f"/{SERVICE_OF[other]}/{_rpcs(other)[0]}")))
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
    if label == "ErasePlayers":
        # Renaming a deleted user's players: persistence-svc's DeleteUserData alone, not even quizctl.
        return caller == "persistence-svc"
    if caller == "quizctl":
        return True
    if caller == "app-backend":
        # A learner's history and the deletion of their data, by user ID with the service credential.
        return target == "persistence-svc" and label in ("ListUserResults", "DeleteUserData")
    if caller in ("quiz-svc", "leaderboard-svc") and target == "persistence-svc":
        # Rebuilding live state or a ranking from the source of truth.
        return label in ("ListAnswers", "ListParticipants")
    if caller != "edge":
        return False
    if target == "persistence-svc":
        # The results export, and a learner's history read with their own identity token.
        return label in ("ListAnswers", "ListParticipants", "ListUserResults")
    return True  # edge: every QuizService / LeaderboardService method


def _matrix(ns: str) -> list[tuple[str, str, str, Request]]:
    principals = _principals(ns)
    rows = []
    for target in ["edge", *GRPC_PORT]:
        for (label, req), caller in itertools.product(_requests(target), principals):
            rows.append((caller, target, label, Request(principals[caller], req.port, req.path, req.method)))
    return rows


def _workload(overlay: Rendered, target: str) -> Workload:
    d = overlay.one("Deployment", target)
    return Workload(d["metadata"]["namespace"], d["spec"]["template"]["metadata"]["labels"])


def test_authorization_policies_allow_exactly_the_intended_calls(overlay: Rendered) -> None:
    policies = list(overlay.by_kind("AuthorizationPolicy").values())
    actual, intended = set(), set()
    rows = _matrix(overlay.namespace)
    for caller, target, label, req in rows:
        key = (caller, target, label)
        if istio_authz.is_allowed(policies, _workload(overlay, target), req):
            actual.add(key)
        if _intended(caller, target, label):
            intended.add(key)
    assert len(rows) > 300
    assert sorted(actual - intended) == [], "allowed but not intended"
    assert sorted(intended - actual) == [], "intended but denied"


def test_the_application_backend_may_call_two_methods_of_persistence_svc_and_nothing_else(overlay: Rendered) -> None:
    """Every path the backend could try, methods not in the contract and other services' included: only
    ListUserResults and DeleteUserData on persistence-svc's gRPC port pass."""
    policies = list(overlay.by_kind("AuthorizationPolicy").values())
    methods = {*(m for t in GRPC_PORT for m in _rpcs(t)), "DeleteEverything", "ListUserResultsV2", "DeleteUserDataNow"}
    paths = [f"/{service}/{method}" for service in SERVICE_OF.values() for method in sorted(methods)]
    paths += ["/", "/ws", "/grpc.health.v1.Health/Check", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"]
    allowed = set()
    for target, port in [*GRPC_PORT.items(), ("edge", 8080)]:
        for path, method, at in itertools.product(paths, ("POST", "GET"), (port, 9464)):
            if istio_authz.is_allowed(policies, _workload(overlay, target), Request(APP_BACKEND, at, path, method)):
                allowed.add((target, at, path, method))
    persistence = "/quizmesh.persistence.v1.PersistenceService"
    assert allowed == {
        ("persistence-svc", 50053, f"{persistence}/ListUserResults", "POST"),
        ("persistence-svc", 50053, f"{persistence}/DeleteUserData", "POST"),
    }


def test_the_namespace_is_default_deny(overlay: Rendered) -> None:
    ns = overlay.namespace
    policies = list(overlay.by_kind("AuthorizationPolicy").values())
    deny_all = [p for p in policies if p["spec"] == {} and p["metadata"]["namespace"] == ns]
    assert deny_all, "expected an AuthorizationPolicy with an empty spec in the namespace"
    stranger = Workload(ns, {"app": "something-new"})
    assert not istio_authz.is_allowed(policies, stranger, Request(_principals(ns)["quizctl"], 80, "/"))


def test_evaluator_semantics_deny_wins_and_no_allow_policy_means_allow() -> None:
    ns = "quizmesh"
    wl = Workload(ns, {"app": "x"})
    req = Request(_principals(ns)["edge"], 50051, "/a.B/C")
    assert istio_authz.is_allowed([], wl, req)
    allow = {"metadata": {"namespace": ns}, "spec": {"rules": [{}]}}
    deny = {
        "metadata": {"namespace": ns},
        "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/a.B/*"]}}]}]},
    }
    assert istio_authz.is_allowed([allow], wl, req)
    assert not istio_authz.is_allowed([allow, deny], wl, req)
    other_ns = {"metadata": {"namespace": "elsewhere"}, "spec": {}}
    assert istio_authz.is_allowed([other_ns], wl, req)
    root = {"metadata": {"namespace": "istio-system"}, "spec": {}}
    assert not istio_authz.is_allowed([root], wl, req)


def test_mtls_is_strict_for_the_namespace(overlay: Rendered) -> None:
    assert any(
        p["metadata"]["namespace"] == overlay.namespace
        and "selector" not in p["spec"]
        and p["spec"]["mtls"]["mode"] == "STRICT"
        for p in overlay.by_kind("PeerAuthentication").values()
    )
    for dr in overlay.by_kind("DestinationRule").values():
        assert dr["spec"]["trafficPolicy"]["tls"]["mode"] == "ISTIO_MUTUAL"


# --------------------------------------------------------------------------- wiring


def test_every_namespaced_object_is_in_the_overlays_namespace(overlay: Rendered) -> None:
    kustomization = yaml.safe_load((DEPLOY / overlay.name / "kustomization.yaml").read_text())
    assert overlay.namespace == kustomization["namespace"]
    assert overlay.one("Namespace", overlay.namespace)["metadata"]["labels"]["istio-injection"] == "enabled"
    for d in overlay.docs:
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == overlay.namespace, f"{d['kind']}/{d['metadata']['name']}"


def test_no_overlay_reaches_into_another_namespace(overlay: Rendered) -> None:
    """Names are short (resolved in the pod's namespace), so an overlay never calls prod's services."""
    text = yaml.safe_dump_all(overlay.docs)
    assert re.findall(r"[a-z-]+\.quizmesh(?:-dev)?\.svc", text) == []


def _image(overlay_name: str) -> str:
    kustomization = yaml.safe_load((DEPLOY / overlay_name / "kustomization.yaml").read_text())
    (entry,) = [i for i in kustomization["images"] if i["name"] == IMAGE]
    return f"{IMAGE}:{entry['newTag']}"


@pytest.mark.parametrize("name", SERVICES)
def test_deployment_wiring(overlay: Rendered, name: str) -> None:
    dep = overlay.one("Deployment", name)
    pod = dep["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pod["spec"]["serviceAccountName"] in overlay.by_kind("ServiceAccount")
    svc = overlay.one("Service", name)
    assert svc["spec"]["selector"].items() <= labels.items()
    (container,) = pod["spec"]["containers"]
    assert container["image"] == _image(overlay.name)
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
    hpa = overlay.one("HorizontalPodAutoscaler", name)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert "replicas" not in dep["spec"], "the HPA owns the replica count"
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    if name == "edge":
        pods = metrics["Pods"]["pods"]
        assert pods["metric"]["name"] == "quizmesh_edge_connections"
        assert pods["target"] == {"type": "AverageValue", "averageValue": "8000"}
    pdb = overlay.one("PodDisruptionBudget", name)
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # AuthorizationPolicy selectors must select this pod, or the policy silently applies to nothing.
    ap = overlay.one("AuthorizationPolicy", name)
    assert ap["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_upstream_addresses_name_the_services_of_the_same_namespace(overlay: Rendered) -> None:
    ports = {name: overlay.one("Service", name)["spec"]["ports"][0]["port"] for name in SERVICES}
    for name in SERVICES:
        env = _env(overlay, name)
        for variable, service in [
            ("QUIZMESH_QUIZ_ADDR", "quiz-svc"),
            ("QUIZMESH_LEADERBOARD_ADDR", "leaderboard-svc"),
            ("QUIZMESH_PERSISTENCE_ADDR", "persistence-svc"),
        ]:
            if variable in env and name != service:
                assert env[variable] == f"{service}:{ports[service]}"
    assert {"QUIZMESH_QUIZ_ADDR", "QUIZMESH_LEADERBOARD_ADDR", "QUIZMESH_PERSISTENCE_ADDR"} <= set(
        _env(overlay, "edge")
    )


def _env(overlay: Rendered, name: str) -> dict[str, str]:
    (container,) = overlay.one("Deployment", name)["spec"]["template"]["spec"]["containers"]
    names = [e["name"] for e in container["env"]]
    assert len(names) == len(set(names)), f"{name}: a variable set twice: {names}"
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def test_the_edge_trusts_exactly_its_sidecar_and_limits_joins(overlay: Rendered) -> None:
    env = _env(overlay, "edge")
    # The gateway's numTrustedProxies (0: nothing appends X-Forwarded-For in front of it) + 1.
    assert env["QUIZMESH_EDGE_TRUSTED_PROXY_HOPS"] == "1"
    assert 10 <= int(env["QUIZMESH_EDGE_JOINS_PER_MIN"]) <= 1000


def test_overlays_differ_where_environments_do(every_root: list[Rendered]) -> None:
    overlays = {r.name: r for r in every_root if r.name.startswith("overlays/") and r.name.count("/") == 1}
    assert set(overlays) == {f"overlays/{o}" for o in OVERLAYS} >= {"overlays/dev", "overlays/prod"}
    dev, prod = overlays["overlays/dev"], overlays["overlays/prod"]
    assert dev.namespace != prod.namespace
    assert dev.one("VirtualService", "edge")["spec"]["hosts"] != prod.one("VirtualService", "edge")["spec"]["hosts"]
    assert _image("overlays/dev") != _image("overlays/prod")
    assert _env(dev, "edge")["QUIZMESH_EDGE_JOINS_PER_MIN"] != _env(prod, "edge")["QUIZMESH_EDGE_JOINS_PER_MIN"]
    for name in SERVICES:
        assert (
            dev.one("HorizontalPodAutoscaler", name)["spec"]["maxReplicas"]
            < prod.one("HorizontalPodAutoscaler", name)["spec"]["maxReplicas"]
        )


def test_the_gateway_and_the_edge_route_agree(overlay: Rendered) -> None:
    gateway = overlay.one("Gateway", "edge")
    vs = overlay.one("VirtualService", "edge")
    assert vs["spec"]["gateways"] == ["edge"]
    assert {h for s in gateway["spec"]["servers"] for h in s["hosts"]} == set(vs["spec"]["hosts"])
    for kind in ("VirtualService", "DestinationRule"):
        for d in overlay.by_kind(kind).values():
            hosts = d["spec"]["hosts"] if kind == "VirtualService" else [d["spec"]["host"]]
            internal = [h for h in hosts if "." not in h]
            assert set(internal) <= set(overlay.by_kind("Service")), f"{kind}/{d['metadata']['name']}: {hosts}"


# The secrets each service reads (files of Secret quizmesh-secrets) and nothing more.
_SECRETS = {
    "edge": set(),
    "quiz-svc": {"postgres-dsn", "signing-key", "kafka-password", "kafka-ca.crt", "redis-password", "redis-ca.crt"},
    "leaderboard-svc": {"kafka-password", "kafka-ca.crt", "redis-password", "redis-ca.crt"},
    "persistence-svc": {"postgres-dsn", "kafka-password", "kafka-ca.crt", "history-service-token"},
}


@pytest.mark.parametrize("name", SERVICES)
def test_every_secret_is_a_file_of_the_documented_secret(overlay: Rendered, name: str) -> None:
    pod = overlay.one("Deployment", name)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert [e["name"] for e in container["env"] if "valueFrom" in e] == []
    files = {e["value"] for e in container["env"] if e["name"].endswith("_FILE")}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounted: set[str] = set()
    for mount in container["volumeMounts"]:
        secret = volumes[mount["name"]].get("secret")
        if secret is not None:
            assert secret["secretName"] == "quizmesh-secrets" and mount["readOnly"]
            assert secret["defaultMode"] == 0o440
            mounted |= {f"{mount['mountPath']}/{item['path']}" for item in secret["items"]}
            assert {item["key"] for item in secret["items"]} == _SECRETS[name]
    assert files == mounted, "every *_FILE variable names a mounted key, and every mounted key is read"
    if name != "edge":
        env = _env(overlay, name)
        assert env["QUIZMESH_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["QUIZMESH_KAFKA_BOOTSTRAP"].endswith(":9093")
    if "redis-password" in _SECRETS[name]:
        assert env["QUIZMESH_REDIS_URL"].startswith("rediss://") and env["QUIZMESH_REDIS_USERNAME"] == "quizmesh"


# Who verifies identity tokens (quiz-svc: joins and owners; persistence-svc: histories and deletions);
# the edge and leaderboard-svc read none of the identity variables.
_IDENTITY_READERS = ("quiz-svc", "persistence-svc")


def test_the_services_that_verify_identity_tokens_trust_one_provider(overlay: Rendered) -> None:
    declared = {variable.name for variable in identity.IdentitySettings.VARIABLES}
    configured = {}
    for name in SERVICES:
        given = {k: v for k, v in _env(overlay, name).items() if k.startswith("QUIZMESH_IDENTITY_")}
        if name not in _IDENTITY_READERS:
            assert given == {}, f"{name} reads no identity variable"
            continue
        assert set(given) <= declared
        settings = identity.IdentitySettings.from_env(given)  # the services' own start-up check
        assert settings.mode != "anonymous" and settings.jwks.startswith("https://")
        assert settings.verifier() is not None
        configured[name] = given
    assert configured["quiz-svc"] == configured["persistence-svc"]
    assert {v.name for v in (identity.IDENTITY_ALGORITHM, identity.IDENTITY_NAME_CLAIM)} <= set(configured["quiz-svc"])


def test_the_service_monitor_scrapes_every_service_over_mesh_tls(overlay: Rendered) -> None:
    (monitor,) = overlay.by_kind("ServiceMonitor").values()
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = {n for n, s in overlay.by_kind("Service").items() if selector.items() <= s["metadata"]["labels"].items()}
    assert selected == set(SERVICES)
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http-metrics" and endpoint["scheme"] == "https"
    certs = _prometheus_cert_dir()
    assert {endpoint["tlsConfig"][k].rsplit("/", 1)[0] for k in ("caFile", "certFile", "keyFile")} == {certs}


def _prometheus_cert_dir() -> str:
    """Where the Prometheus of deploy/observability/prometheus mounts its Istio certificate."""
    docs = load_documents((DEPLOY / "observability" / "prometheus" / "prometheus.yaml").read_text())
    (prometheus,) = [d for d in docs if d["kind"] == "Prometheus"]
    (mount,) = prometheus["spec"]["volumeMounts"]
    return str(mount["mountPath"]).rstrip("/")


def test_prometheus_presents_the_principal_the_policies_allow(every_root: list[Rendered]) -> None:
    monitoring = next(r for r in every_root if r.name == "observability/prometheus")
    (prometheus,) = monitoring.by_kind("Prometheus").values()
    principal = f"cluster.local/ns/{prometheus['metadata']['namespace']}/sa/{prometheus['spec']['serviceAccountName']}"
    assert principal == _principals("quizmesh")["prometheus"]
    pod = prometheus["spec"]["podMetadata"]
    assert pod["labels"]["sidecar.istio.io/inject"] == "true"
    # The sidecar only writes certificates: Prometheus's own traffic must not go through it.
    assert pod["annotations"]["traffic.sidecar.istio.io/includeOutboundIPRanges"] == ""
    assert "OUTPUT_CERTS: /etc/istio-output-certs" in pod["annotations"]["proxy.istio.io/config"]
    for kind in ("serviceMonitorSelector", "podMonitorSelector", "ruleSelector"):
        assert prometheus["spec"][kind]["matchLabels"] == {"app.kubernetes.io/part-of": "quizmesh"}


def test_the_dashboard_config_map_carries_the_shipped_dashboard(overlay: Rendered) -> None:
    cm = overlay.one("ConfigMap", "quizmesh-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["data"]["grafana-dashboard.json"] == (DEPLOY / "observability" / "grafana-dashboard.json").read_text()


def test_kafka_topics_match_the_plan(every_root: list[Rendered]) -> None:
    kafka = next(r for r in every_root if r.name == "kafka")
    topics = {t["spec"]["topicName"]: t for t in kafka.by_kind("KafkaTopic").values()}
    assert set(topics) == {"user_joined_quiz", "answer_submitted", "leaderboard_updated", "user_left_quiz"}
    for t in topics.values():
        assert t["spec"]["partitions"] == 48 and t["spec"]["replicas"] == 3
        assert t["spec"]["config"]["min.insync.replicas"] == 2
        assert t["metadata"]["labels"]["strimzi.io/cluster"] in kafka.by_kind("Kafka")
    pools = kafka.by_kind("KafkaNodePool")
    assert {r for p in pools.values() for r in p["spec"]["roles"]} == {"controller", "broker"}
    exporter = kafka.one("Kafka", "quizmesh")["spec"]["kafkaExporter"]
    assert re.fullmatch(exporter["topicRegex"], "answer_submitted")
    assert all(re.fullmatch(exporter["groupRegex"], g) for g in ("leaderboard_svc", "persistence_svc"))
    (monitor,) = kafka.by_kind("PodMonitor").values()
    assert monitor["spec"]["selector"]["matchLabels"]["strimzi.io/name"] == "quizmesh-kafka-exporter"


def test_prod_reaches_postgresql_through_pgbouncer_without_asyncpgs_statement_cache(prod: Rendered) -> None:
    for name in ("quiz-svc", "persistence-svc"):
        assert _env(prod, name)["QUIZMESH_POSTGRES_STATEMENT_CACHE"] == "0"
    secrets = load_documents((DEPLOY / "examples" / "quizmesh-secrets.example.yaml").read_text())
    by_name = {d["metadata"]["name"]: d["stringData"] for d in secrets}
    assert "-pooler-" in by_name["quizmesh-secrets"]["postgres-dsn"]
    # Migrations go to the primary itself, as the migration role.
    assert by_name["quizmesh-migration"]["postgres-migration-dsn"].startswith("postgresql://quizmesh_migrator:")


def test_the_services_reach_kafka_over_tls_as_its_scram_user(every_root: list[Rendered], overlay: Rendered) -> None:
    kafka = next(r for r in every_root if r.name == "kafka")
    (listener,) = kafka.one("Kafka", "quizmesh")["spec"]["kafka"]["listeners"]
    assert listener["tls"] and listener["authentication"] == {"type": "scram-sha-512"}
    user = kafka.one("KafkaUser", "quizmesh")
    assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
    assert user["metadata"]["labels"]["strimzi.io/cluster"] in kafka.by_kind("Kafka")
    (peer,) = listener["networkPolicyPeers"]
    for name in ("quiz-svc", "leaderboard-svc", "persistence-svc"):
        env = _env(overlay, name)
        assert env["QUIZMESH_KAFKA_BOOTSTRAP"].endswith(f":{listener['port']}")
        assert env["QUIZMESH_KAFKA_USERNAME"] == user["metadata"]["name"]
        # SCRAM-SHA-512 is the clients' default mechanism (QUIZMESH_KAFKA_SASL_MECHANISM).
        assert env.get("QUIZMESH_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512") == "SCRAM-SHA-512"
        labels = overlay.one("Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert labels["app"] in peer["podSelector"]["matchExpressions"][0]["values"]
        namespace_labels = overlay.one("Namespace", overlay.namespace)["metadata"]["labels"]
        assert peer["namespaceSelector"]["matchLabels"].items() <= namespace_labels.items()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
