"""The NetworkPolicies of every overlay, evaluated (tests/deploy/netpol.py) over every pair of pods and a
set of ports, against the intended matrix written here independently of the manifests; and the
migration Job each environment runs before its services."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import yaml

from . import netpol
from .conftest import DEPLOY, Rendered, rendered
from .netpol import Connection, Pod

WORKLOADS = ["edge", "quiz-svc", "leaderboard-svc", "persistence-svc"]
SERVICE_PORT = {"edge": 8080, "quiz-svc": 50051, "leaderboard-svc": 50052, "persistence-svc": 50053}
PORTS = [22, 53, 443, 4317, 5432, 6379, 8080, 9092, 9093, 9464, 15010, 15012, 15017, 50051, 50052, 50053]
DATA = "quizmesh-data"


def _outside() -> dict[str, Pod]:
    """Pods outside the application namespace, labelled as their installs label them."""
    return {
        "ingressgateway": Pod("istio-system", {"istio": "ingressgateway", "app": "istio-ingressgateway"}),
        "istiod": Pod("istio-system", {"app": "istiod", "istio": "pilot"}),
        "kube-dns": Pod("kube-system", {"k8s-app": "kube-dns"}),
        "prometheus": Pod("monitoring", {"app.kubernetes.io/name": "prometheus", "prometheus": "quizmesh"}),
        "otel-collector": Pod("monitoring", {"app.kubernetes.io/name": "opentelemetry-collector"}),
        "grafana": Pod("monitoring", {"app.kubernetes.io/name": "grafana"}),
        "kafka-broker": Pod(DATA, {"strimzi.io/cluster": "quizmesh", "strimzi.io/broker-role": "true"}),
        "kafka-controller": Pod(DATA, {"strimzi.io/cluster": "quizmesh", "strimzi.io/controller-role": "true"}),
        "redis": Pod(DATA, {"app.kubernetes.io/name": "redis-cluster"}),
        "postgres": Pod(DATA, {"cnpg.io/cluster": "quizmesh-pg"}),
        # The same workload in another environment's namespace is a stranger.
        "other-env-edge": Pod("elsewhere", {"app": "edge"}),
        # The application's backend (the documented placeholder: namespace app, app: app-backend), and
        # another pod of its namespace.
        "app-backend": Pod("app", {"app": "app-backend"}),
        "app-web": Pod("app", {"app": "web"}),
        # An identity provider running in the cluster (its JWKS on 443).
        "identity-provider": Pod("keycloak", {"app.kubernetes.io/name": "keycloak"}),
    }


def _migration(overlay: Rendered) -> Rendered:
    """The environment's migration Job, as deploy/overlays/<env>/migrate renders it."""
    return rendered(DEPLOY / overlay.name / "migrate")


def _inside(overlay: Rendered) -> dict[str, Pod]:
    """The application namespace's pods, labelled as the rendered manifests label them."""
    ns = overlay.namespace
    pods = {
        name: Pod(ns, overlay.one("Deployment", name)["spec"]["template"]["metadata"]["labels"]) for name in WORKLOADS
    }
    pods["quizctl"] = Pod(ns, {"app": "quizctl"})  # an operator Job under the quizctl ServiceAccount
    job = _migration(overlay).one("Job", "quizmesh-migrate")
    assert job["metadata"]["namespace"] == ns
    pods["quizmesh-migrate"] = Pod(ns, job["spec"]["template"]["metadata"]["labels"])
    pods["stranger"] = Pod(ns, {"app": "something-new"})
    return pods


_FLOWS = {
    ("ingressgateway", "edge", 8080),
    ("edge", "quiz-svc", 50051),
    ("edge", "leaderboard-svc", 50052),
    ("edge", "persistence-svc", 50053),
    ("quiz-svc", "persistence-svc", 50053),
    ("leaderboard-svc", "persistence-svc", 50053),
    ("persistence-svc", "quiz-svc", 50051),
    ("persistence-svc", "leaderboard-svc", 50052),
    ("quizctl", "quiz-svc", 50051),
    ("quizctl", "leaderboard-svc", 50052),
    ("quizctl", "persistence-svc", 50053),
    ("app-backend", "persistence-svc", 50053),
    *((service, "kafka-broker", 9093) for service in ("quiz-svc", "leaderboard-svc", "persistence-svc")),
    *(("prometheus", workload, 9464) for workload in WORKLOADS),
    *((workload, "otel-collector", 4317) for workload in WORKLOADS),
}
# Redis and PostgreSQL are not declared in deploy/: they are reached by namespace and port.
_DATA_PORTS = {
    "quiz-svc": {6379, 5432},
    "leaderboard-svc": {6379},
    "persistence-svc": {5432},
    "quizmesh-migrate": {5432},
}
_MESHED = {*WORKLOADS, "quizctl"}
_VERIFY_IDENTITY_TOKENS = {"quiz-svc", "persistence-svc"}


def _intended(source: str, target: str, pods: dict[str, Pod], port: int, protocol: str, app_ns: str) -> bool:
    """The allow-set of the brief, written independently of the manifests."""
    if (port, protocol) == (443, "TCP") and source in _VERIFY_IDENTITY_TOKENS:
        # The identity provider's JWKS URL, wherever it runs; not the application's own pods.
        return pods[target].namespace != app_ns
    if target == "kube-dns":
        return pods[source].namespace == app_ns and port == 53
    if protocol != "TCP":
        return False
    if target == "istiod":
        return source in _MESHED and port == 15012
    if pods[target].namespace == DATA and port in _DATA_PORTS.get(source, set()):
        return True
    return (source, target, port) in _FLOWS


def test_network_policies_allow_exactly_the_intended_connections(overlay: Rendered) -> None:
    policies = list(overlay.by_kind("NetworkPolicy").values())
    pods = {**_inside(overlay), **_outside()}
    actual, intended = set(), set()
    checked = 0
    for (source, target), port in itertools.product(itertools.permutations(pods, 2), PORTS):
        for protocol in ("TCP", "UDP") if port == 53 else ("TCP",):
            # Only connections that leave or enter the application namespace are its policies' business.
            if overlay.namespace not in (pods[source].namespace, pods[target].namespace):
                continue
            checked += 1
            key = (source, target, port, protocol)
            if netpol.is_allowed(policies, Connection(pods[source], pods[target], port, protocol)):
                actual.add(key)
            if _intended(source, target, pods, port, protocol, overlay.namespace):
                intended.add(key)
    assert checked > 3000
    assert sorted(actual - intended) == [], "allowed but not intended"
    assert sorted(intended - actual) == [], "intended but denied"


def test_the_namespace_denies_by_default_both_ways(overlay: Rendered) -> None:
    (deny,) = [p for p in overlay.by_kind("NetworkPolicy").values() if p["metadata"]["name"] == "default-deny"]
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    every_policy = list(overlay.by_kind("NetworkPolicy").values())
    newcomer = Pod(overlay.namespace, {"app": "something-new"})
    edge = Pod(overlay.namespace, {"app": "edge"})
    assert not netpol.is_allowed(every_policy, Connection(newcomer, edge, 8080))
    assert not netpol.is_allowed(every_policy, Connection(edge, Pod("default", {"app": "web"}), 443))


def test_the_policies_select_the_pods_they_name(overlay: Rendered) -> None:
    """A policy whose selector matched no pod would leave that workload with the default deny alone."""
    labels = [d["spec"]["template"]["metadata"]["labels"] for d in overlay.by_kind("Deployment").values()]
    for policy in overlay.by_kind("NetworkPolicy").values():
        name = policy["metadata"]["name"]
        if name in WORKLOADS:
            assert any(netpol.selects(policy["spec"]["podSelector"], pod) for pod in labels), name


def test_the_model_follows_the_documented_semantics() -> None:
    a, b = Pod("ns", {"app": "a"}), Pod("ns", {"app": "b"})
    assert netpol.is_allowed([], Connection(a, b, 80))
    deny_ingress: dict[str, Any] = {"metadata": {"namespace": "ns"}, "spec": {"podSelector": {}}}
    assert not netpol.is_allowed([deny_ingress], Connection(a, b, 80))
    allow_from_a = {
        "metadata": {"namespace": "ns"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "b"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}], "ports": [{"port": 80}]}],
        },
    }
    assert netpol.is_allowed([deny_ingress, allow_from_a], Connection(a, b, 80))
    assert not netpol.is_allowed([deny_ingress, allow_from_a], Connection(a, b, 81))
    assert not netpol.is_allowed([deny_ingress, allow_from_a], Connection(a, b, 80, "UDP"))
    # A podSelector alone means the policy's own namespace.
    assert not netpol.is_allowed([deny_ingress, allow_from_a], Connection(Pod("other", {"app": "a"}), b, 80))
    # Egress is restricted only by a policy that lists it.
    assert netpol.is_allowed([deny_ingress, allow_from_a], Connection(b, Pod("x", {}), 443))
    with pytest.raises(NotImplementedError):
        netpol.is_allowed(
            [{"metadata": {"namespace": "ns"}, "spec": {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {}}]}]}}],
            Connection(a, b, 80),
        )


def test_the_migration_job_runs_the_environments_image_as_the_migration_role(overlay: Rendered) -> None:
    migration = _migration(overlay)
    job = migration.one("Job", "quizmesh-migrate")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (service,) = overlay.one("Deployment", "quiz-svc")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == service["image"], "the Job migrates to the schema of the release it precedes"
    assert container["command"] == ["quizmesh", "migrate"]
    env = {e["name"]: e["value"] for e in container["env"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    (mount,) = [m for m in container["volumeMounts"] if "secret" in volumes[m["name"]]]
    (item,) = volumes[mount["name"]]["secret"]["items"]
    assert volumes[mount["name"]]["secret"]["secretName"] == "quizmesh-migration"
    assert env["QUIZMESH_POSTGRES_MIGRATION_DSN_FILE"] == f"{mount['mountPath']}/{item['path']}"
    # No service mounts the migration role's Secret.
    for deployment in overlay.by_kind("Deployment").values():
        for volume in deployment["spec"]["template"]["spec"]["volumes"]:
            assert volume.get("secret", {}).get("secretName") != "quizmesh-migration"
    assert pod["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] >= 1
    # No sidecar, which would keep the Job from completing; nothing else to reach in the mesh.
    assert job["spec"]["template"]["metadata"]["labels"]["sidecar.istio.io/inject"] == "false"
    assert pod["serviceAccountName"] in migration.by_kind("ServiceAccount")
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] and sc["runAsNonRoot"] and not sc["allowPrivilegeEscalation"]


def test_each_migration_overlay_sits_in_its_environments_namespace() -> None:
    for migrate in sorted(DEPLOY.glob("overlays/*/migrate/kustomization.yaml")):
        environment = yaml.safe_load((migrate.parent.parent / "kustomization.yaml").read_text())
        assert yaml.safe_load(migrate.read_text())["namespace"] == environment["namespace"], migrate
