"""A small model of Kubernetes NetworkPolicy evaluation (networking.k8s.io/v1), for checking our
policies offline.

A connection from pod A to pod B on a port is allowed when A's egress and B's ingress both allow it.
For each direction: if no policy in the pod's namespace selects the pod for that direction (its
`policyTypes`, by default Ingress, plus Egress when the policy has `egress` rules), everything is
allowed; otherwise some rule of some selecting policy must match, i.e. its peers (`from`/`to`; none
means any peer) and its ports (none means every port). A peer with only `podSelector` means pods of
the policy's own namespace; with `namespaceSelector` (and maybe `podSelector`), pods of the
namespaces whose labels match. Selectors support matchLabels and matchExpressions (In, NotIn,
Exists, DoesNotExist). What the model does not know (ipBlock, named ports) raises instead of
guessing. Pods of namespaces whose policies are not given (another team's) allow by default.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: Mapping[str, str]


@dataclass(frozen=True)
class Connection:
    source: Pod
    target: Pod
    port: int
    protocol: str = "TCP"


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    unknown = set(selector) - {"matchLabels", "matchExpressions"}
    if unknown:
        raise NotImplementedError(f"selector fields {sorted(unknown)}")
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise NotImplementedError(f"operator {operator}")
    return True


def _namespace_labels(namespace: str) -> dict[str, str]:
    # Every namespace carries this label (Kubernetes 1.22+); it is all the policies select on.
    return {"kubernetes.io/metadata.name": namespace}


def _peer_matches(peer: Mapping[str, Any], policy_namespace: str, pod: Pod) -> bool:
    if "ipBlock" in peer or set(peer) - {"podSelector", "namespaceSelector"}:
        raise NotImplementedError(f"peer fields {sorted(peer)}")
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], _namespace_labels(pod.namespace)):
            return False
    elif pod.namespace != policy_namespace:
        return False
    return selects(peer.get("podSelector") or {}, pod.labels)


def _port_matches(ports: Iterable[Mapping[str, Any]] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    for entry in ports:
        if not isinstance(entry.get("port", 0), int):
            raise NotImplementedError(f"named port {entry['port']!r}")
        low = entry.get("port")
        high = entry.get("endPort", low)
        if entry.get("protocol", "TCP") == protocol and (low is None or low <= port <= high):
            return True
    return False


def _types(policy: Mapping[str, Any]) -> list[str]:
    spec = policy["spec"]
    return list(spec.get("policyTypes") or (["Ingress", "Egress"] if "egress" in spec else ["Ingress"]))


def _direction_allows(
    policies: Iterable[Mapping[str, Any]], pod: Pod, direction: str, other: Pod, port: int, protocol: str
) -> bool:
    field, peers_field = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    applicable = [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and selects(p["spec"]["podSelector"], pod.labels)
        and direction in _types(p)
    ]
    if not applicable:
        return True
    for policy in applicable:
        for rule in policy["spec"].get(field) or []:
            peers = rule.get(peers_field) or []
            if (not peers or any(_peer_matches(peer, policy["metadata"]["namespace"], other) for peer in peers)) and (
                _port_matches(rule.get("ports"), port, protocol)
            ):
                return True
    return False


def is_allowed(policies: Iterable[Mapping[str, Any]], connection: Connection) -> bool:
    policies = list(policies)
    c = connection
    return _direction_allows(policies, c.source, "Egress", c.target, c.port, c.protocol) and _direction_allows(
        policies, c.target, "Ingress", c.source, c.port, c.protocol
    )
