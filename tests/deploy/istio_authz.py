"""A small model of Istio's AuthorizationPolicy evaluation, for checking our policies offline.

Implements the documented semantics for sidecar workloads (security.istio.io/v1):
  1. policies apply to a workload if they sit in the root namespace (istio-system) or in the
     workload's namespace, and their `selector.matchLabels` (if any) is a subset of its labels;
  2. CUSTOM is out of scope (raises); any applicable DENY policy with a matching rule denies;
  3. if no ALLOW policy applies, the request is allowed;
  4. otherwise it is allowed only if some rule of some applicable ALLOW policy matches.
A rule matches when its `from` (any source), `to` (any operation) and `when` all match; a
missing `from` or `to` matches everything; a policy without rules matches nothing. Within a
source or operation every listed field must match, and `notX` fields must not. String values
match exactly, or as prefix (`abc*`), suffix (`*abc`) or anything (`*`). AUDIT is ignored.
Fields this model does not know (when, ipBlocks, requestPrincipals, targetRefs, ...) raise
instead of being silently treated as matching.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

ROOT_NAMESPACE = "istio-system"
_SOURCE_FIELDS = {"principals", "notPrincipals", "namespaces", "notNamespaces"}
_OPERATION_FIELDS = {"ports", "notPorts", "paths", "notPaths", "methods", "notMethods", "hosts", "notHosts"}


@dataclass(frozen=True)
class Workload:
    namespace: str
    labels: dict[str, str]


@dataclass(frozen=True)
class Request:
    principal: str | None  # cluster.local/ns/<ns>/sa/<sa>; None for plaintext
    port: int
    path: str
    method: str = "POST"
    host: str = ""


def _str_match(pattern: str, value: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    return pattern == value


def _any(patterns: Iterable[str], value: str | None) -> bool:
    return value is not None and any(_str_match(p, value) for p in patterns)


def _field(spec: dict[str, Any], name: str, value: str | None) -> bool:
    """True when field `name` (and its `notName`) admits value; absent fields admit all."""
    neg = "not" + name[0].upper() + name[1:]
    if name in spec and not _any(spec[name], value):
        return False
    return not (neg in spec and _any(spec[neg], value))


def _source_matches(source: dict[str, Any], req: Request) -> bool:
    unknown = set(source) - _SOURCE_FIELDS
    if unknown:
        raise NotImplementedError(f"source fields not modelled: {sorted(unknown)}")
    ns = None
    if req.principal and "/ns/" in req.principal:
        ns = req.principal.split("/ns/", 1)[1].split("/", 1)[0]
    return _field(source, "principals", req.principal) and _field(source, "namespaces", ns)


def _operation_matches(op: dict[str, Any], req: Request) -> bool:
    unknown = set(op) - _OPERATION_FIELDS
    if unknown:
        raise NotImplementedError(f"operation fields not modelled: {sorted(unknown)}")
    return (
        _field(op, "ports", str(req.port))
        and _field(op, "paths", req.path)
        and _field(op, "methods", req.method)
        and _field(op, "hosts", req.host)
    )


def _rule_matches(rule: dict[str, Any], req: Request) -> bool:
    unknown = set(rule) - {"from", "to"}
    if unknown:
        raise NotImplementedError(f"rule fields not modelled: {sorted(unknown)}")
    if "from" in rule and not any(_source_matches(f.get("source", {}), req) for f in rule["from"]):
        return False
    return "to" not in rule or any(_operation_matches(t.get("operation", {}), req) for t in rule["to"])


def _applies(policy: dict[str, Any], workload: Workload) -> bool:
    ns = policy["metadata"].get("namespace", "default")
    if ns not in (ROOT_NAMESPACE, workload.namespace):
        return False
    spec = policy.get("spec") or {}
    if "targetRef" in spec or "targetRefs" in spec:
        raise NotImplementedError("targetRef(s) (waypoint/gateway policies) not modelled")
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    return all(workload.labels.get(k) == v for k, v in selector.items())


def is_allowed(policies: list[dict[str, Any]], workload: Workload, req: Request) -> bool:
    applicable = [p for p in policies if _applies(p, workload)]
    by_action: dict[str, list[dict[str, Any]]] = {"ALLOW": [], "DENY": [], "AUDIT": []}
    for p in applicable:
        action = (p.get("spec") or {}).get("action", "ALLOW")
        if action == "CUSTOM":
            raise NotImplementedError("CUSTOM policies not modelled")
        by_action[action].append(p)
    for p in by_action["DENY"]:
        if any(_rule_matches(r, req) for r in (p.get("spec") or {}).get("rules") or []):
            return False
    if not by_action["ALLOW"]:
        return True
    return any(_rule_matches(r, req) for p in by_action["ALLOW"] for r in (p.get("spec") or {}).get("rules") or [])
