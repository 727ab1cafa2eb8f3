"""Strict, offline schema validation of Kubernetes, Istio and Strimzi manifests.

Schemas come from `.infra/schemas/` (filled by `scripts/validate_manifests.sh --fetch-only`):

- core kinds: the `-local-strict` JSON schemas shipped in the PyPI wheel kubernetes-validate
  (every object already has additionalProperties: false);
- Istio kinds: `openAPIV3Schema` of each CRD version in istio.io/api's
  kubernetes/customresourcedefinitions.gen.yaml (Go module proxy);
- prometheus-operator kinds (ServiceMonitor, PodMonitor, PrometheusRule, Prometheus): the CRDs in
  github.com/prometheus-operator/prometheus-operator's example/prometheus-operator-crd/ (Go module proxy);
- Strimzi kinds: CRDs generated with Strimzi's own crd-generator from io.strimzi:api (Maven).

CRD schemas are made strict the way the API server's strict field validation behaves: any
object schema with `properties` and no `additionalProperties` rejects unknown fields, unless it
carries x-kubernetes-preserve-unknown-fields. `metadata` is checked against the core ObjectMeta
schema. CEL rules (x-kubernetes-validations) are not evaluated, except that a string field whose
rule parses it with duration() must look like a Go duration.

A directory holding a kustomization.yaml is rendered with kustomize first and its output validated;
kustomize's own files (kustomization.yaml, an overlay's patches) are never validated as objects.

Usage: python3 tests/deploy/kubeschema.py [--k8s-version 1.33.0] [--kustomize PATH] FILE_OR_DIR...
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / ".infra" / "schemas"
KUSTOMIZE = REPO / ".infra" / "tools" / "bin" / "kustomize"
_CRD_GROUPS = (".istio.io", ".strimzi.io", "monitoring.coreos.com")
DEFAULT_K8S_VERSION = "1.33.0"
_DEFS_ID = "https://kubernetes.io/api/_definitions.json"
_OBJECT_META_REF = "/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_GO_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$")
_COMBINATORS = ("oneOf", "anyOf", "allOf", "not")


class DuplicateKeyError(yaml.constructor.ConstructorError):
    pass


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise DuplicateKeyError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _CrdLoader(yaml.SafeLoader):
    """SafeLoader that reads a bare `=` (YAML 1.1's `value` type, an enum member in the
    prometheus-operator CRDs) as the string it is."""


def _construct_value(loader: _CrdLoader, node: yaml.ScalarNode) -> str:
    return str(loader.construct_scalar(node))


_CrdLoader.add_constructor("tag:yaml.org,2002:value", _construct_value)


def load_documents(text: str) -> list[dict[str, Any]]:
    """All non-empty YAML documents of a file, rejecting duplicate keys."""
    return [d for d in yaml.load_all(text, Loader=_StrictLoader) if d is not None]


@dataclass
class Finding:
    source: str
    doc: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.doc}: {self.message}"


def _strictify(schema: Any, in_combinator: bool = False) -> Any:
    if isinstance(schema, list):
        return [_strictify(s, in_combinator) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties"):
            out[key] = {k: _strictify(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict | list):
            out[key] = _strictify(value)
        elif key in _COMBINATORS:
            out[key] = _strictify(value, in_combinator=True)
        else:
            out[key] = value
    preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
    # Branches of oneOf/anyOf mostly carry only `required`; closing them would reject siblings.
    if "properties" in schema and "additionalProperties" not in schema and not preserve and not in_combinator:
        out["additionalProperties"] = False
    rules = " ".join(r.get("rule", "") for r in schema.get("x-kubernetes-validations", []))
    if "duration(self)" in rules and schema.get("type") == "string":
        out["format"] = "go-duration"
    return out


def strict_crd_schema(open_api_v3: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = _strictify(open_api_v3)
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {"type": "string"}
    props["kind"] = {"type": "string"}
    props["metadata"] = {"$ref": _OBJECT_META_REF}
    schema["additionalProperties"] = False
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


_FORMATS = jsonschema.FormatChecker(formats=())
_FORMATS.checks("go-duration")(lambda v: not isinstance(v, str) or bool(_GO_DURATION.match(v)))


@dataclass
class SchemaSet:
    k8s_version: str = DEFAULT_K8S_VERSION
    root: Path = SCHEMAS
    crds: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    crd_sources: dict[str, str] = field(default_factory=dict)  # group -> where its CRDs came from
    _registry: Registry | None = None

    @property
    def core_dir(self) -> Path:
        return self.root / "k8s" / f"v{self.k8s_version}-local-strict"

    def missing(self) -> list[str]:
        """Human-readable list of schema sources not present in the cache."""
        out = []
        if not (self.core_dir / "_definitions.json").is_file():
            out.append(f"core Kubernetes schemas ({self.core_dir})")
        if not (self.root / "istio" / "customresourcedefinitions.gen.yaml").is_file():
            out.append("Istio CRDs (.infra/schemas/istio/customresourcedefinitions.gen.yaml)")
        if not list((self.root / "strimzi" / "crd").glob("*.yaml")):
            out.append("Strimzi CRDs (.infra/schemas/strimzi/crd/*.yaml)")
        if not list((self.root / "prometheus-operator").glob("*.yaml")):
            out.append("prometheus-operator CRDs (.infra/schemas/prometheus-operator/*.yaml)")
        return out

    def load(self) -> SchemaSet:
        defs = json.loads((self.core_dir / "_definitions.json").read_text())
        self._registry = Registry().with_resource(_DEFS_ID, Resource.from_contents(defs))
        crd_files = [self.root / "istio" / "customresourcedefinitions.gen.yaml"]
        crd_files += sorted((self.root / "strimzi" / "crd").glob("*.yaml"))
        crd_files += sorted((self.root / "prometheus-operator").glob("*.yaml"))
        for path in crd_files:
            if not path.is_file():
                continue
            for crd in yaml.load_all(path.read_text(), Loader=_CrdLoader):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
                self.crd_sources[group] = str(path.relative_to(self.root))
                for version in crd["spec"]["versions"]:
                    raw = version.get("schema", {}).get("openAPIV3Schema")
                    if raw is None:
                        continue
                    schema = strict_crd_schema(raw)
                    schema["$id"] = f"https://kubernetes.io/crd/{group}/{version['name']}/{kind}"
                    self.crds[(group, version["name"], kind)] = schema
        return self

    def _core_schema(self, api_version: str, kind: str) -> dict[str, Any] | None:
        # Same file naming as kubernetes-validate: rbac.authorization.k8s.io/v1 -> rbac-v1.
        suffix = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
        path = self.core_dir / f"{kind.lower()}-{suffix}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def schema_for(self, api_version: str, kind: str) -> dict[str, Any] | None:
        group, _, version = api_version.rpartition("/")
        if (group, version, kind) in self.crds:
            return self.crds[(group, version, kind)]
        if group.endswith(_CRD_GROUPS):
            return None  # a CRD group: never fall back to a same-named core kind
        return self._core_schema(api_version, kind)

    def validate(self, doc: Any, source: str = "<doc>") -> list[Finding]:
        assert self._registry is not None, "call load() first"
        if not isinstance(doc, dict):
            return [Finding(source, "?", f"document is a {type(doc).__name__}, not a mapping")]
        api_version, kind = doc.get("apiVersion"), doc.get("kind")
        name = (doc.get("metadata") or {}).get("name", "?") if isinstance(doc.get("metadata"), dict) else "?"
        label = f"{kind}/{name}"
        if not isinstance(api_version, str) or not isinstance(kind, str):
            return [Finding(source, label, "apiVersion and kind must be strings")]
        schema = self.schema_for(api_version, kind)
        if schema is None:
            return [Finding(source, label, f"no schema for {api_version} {kind}: refusing to pass it unchecked")]
        validator = jsonschema.Draft202012Validator(schema, registry=self._registry, format_checker=_FORMATS)
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        return [Finding(source, label, f"{_path(e)}: {_short(e)}") for e in errors]

    def validate_paths(self, paths: Iterable[Path], kustomize: Path = KUSTOMIZE) -> tuple[int, list[Finding]]:
        count, findings = 0, []
        for path in paths:
            sources = (
                [(f"{_rel(path)} (kustomize build)", lambda p=path: render(p, kustomize))]
                if is_kustomization(path)
                else [(_rel(f), f.read_text) for f in manifest_files([path])]
            )
            for label, read in sources:
                try:
                    docs = load_documents(read())
                except (yaml.YAMLError, RenderError) as exc:
                    findings.append(Finding(label, "-", f"{type(exc).__name__}: {exc}"))
                    continue
                for doc in docs:
                    count += 1
                    findings.extend(self.validate(doc, label))
        return count, findings


def _path(err: jsonschema.ValidationError) -> str:
    return "." + ".".join(str(p) for p in err.absolute_path) if err.absolute_path else "(root)"


def _short(err: jsonschema.ValidationError) -> str:
    # The best match inside oneOf/anyOf explains more than "is not valid under any".
    if err.context:
        best = jsonschema.exceptions.best_match(err.context)
        return f"{err.message[:120]} ({_path(best)}: {best.message[:200]})"
    return err.message[:300]


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


class RenderError(Exception):
    pass


def is_kustomization(path: Path) -> bool:
    return path.is_dir() and (path / "kustomization.yaml").is_file()


def render(path: Path, kustomize: Path = KUSTOMIZE) -> str:
    """`kustomize build` of one kustomization directory."""
    done = subprocess.run(
        [str(kustomize), "build", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise RenderError(done.stderr.strip()[-2000:])
    return done.stdout


# kustomize's inputs: a kustomization file, and an overlay's patches
# (partial objects, complete only once applied).
_KUSTOMIZE_INPUTS = frozenset({"overlays"})


def manifest_files(paths: Iterable[Path]) -> Iterator[Path]:
    """The Kubernetes objects written as files under `paths` (kustomize's own files excluded)."""
    for p in paths:
        if p.is_dir():
            yield from sorted(
                x
                for x in p.rglob("*")
                if x.suffix in (".yaml", ".yml")
                and x.is_file()
                and x.name != "kustomization.yaml"
                and not _KUSTOMIZE_INPUTS & set(x.relative_to(p).parts)
            )
        else:
            yield p


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--k8s-version", default=DEFAULT_K8S_VERSION)
    ap.add_argument("--schemas", type=Path, default=SCHEMAS)
    ap.add_argument("--kustomize", type=Path, default=KUSTOMIZE)
    ap.add_argument("paths", nargs="+", type=Path)
    args = ap.parse_args(argv)
    schemas = SchemaSet(k8s_version=args.k8s_version, root=args.schemas)
    missing = schemas.missing()
    if missing:
        print("missing schemas: " + "; ".join(missing), file=sys.stderr)
        return 2
    schemas.load()
    count, findings = schemas.validate_paths(args.paths, args.kustomize)
    for f in findings:
        print(f"INVALID {f}")
    print(
        f"{count} documents checked, {len(findings)} problems "
        f"(Kubernetes {args.k8s_version} strict schemas; CRDs: {', '.join(sorted(schemas.crd_sources))})"
    )
    return 1 if findings or count == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
