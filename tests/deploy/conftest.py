"""deploy/ as kustomize renders it, for the offline checks.

`scripts/validate_manifests.sh --fetch-only` builds kustomize and fills `.infra/schemas/` from PyPI,
the Go module proxy and Maven Central on the first run. If that fails the tests that need them are
skipped with the reason, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .kubeschema import REPO, SchemaSet, is_kustomization, load_documents, render

DEPLOY = REPO / "deploy"
SCRIPT = REPO / "scripts" / "validate_manifests.sh"
OVERLAYS = sorted(p.name for p in (DEPLOY / "overlays").iterdir() if is_kustomization(p))
# Every kustomization an operator applies, and the plain files outside any (the example Secret).
ROOTS = [
    *(DEPLOY / "overlays" / o for o in OVERLAYS),
    *(DEPLOY / "overlays" / o / "migrate" for o in OVERLAYS),
    DEPLOY / "kafka",
    DEPLOY / "observability" / "prometheus",
]
PLAIN = [DEPLOY / "examples"]


@dataclass(frozen=True)
class Rendered:
    """The objects one kustomization renders."""

    name: str
    docs: list[dict[str, Any]]

    def by_kind(self, kind: str) -> dict[str, dict[str, Any]]:
        return {d["metadata"]["name"]: d for d in self.docs if d["kind"] == kind}

    def one(self, kind: str, name: str) -> dict[str, Any]:
        return self.by_kind(kind)[name]

    @property
    def namespace(self) -> str:
        (name,) = self.by_kind("Namespace")
        return name


@pytest.fixture(scope="session")
def tools() -> SchemaSet:
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--fetch-only"], capture_output=True, text=True, timeout=900, check=False
    )
    s = SchemaSet()
    missing = s.missing()
    if proc.returncode != 0 or missing:
        reason = f"tools or schemas could not be fetched ({'; '.join(missing) or 'partial'}): {proc.stderr[-800:]}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return s.load()


_RENDERED: dict[Path, Rendered] = {}


def rendered(root: Path) -> Rendered:
    if root not in _RENDERED:
        _RENDERED[root] = Rendered(str(root.relative_to(DEPLOY)), load_documents(render(root)))
    return _RENDERED[root]


@pytest.fixture(scope="session", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest, tools: SchemaSet) -> Rendered:
    return rendered(DEPLOY / "overlays" / request.param)


@pytest.fixture(scope="session")
def prod(tools: SchemaSet) -> Rendered:
    return rendered(DEPLOY / "overlays" / "prod")


@pytest.fixture(scope="session")
def every_root(tools: SchemaSet) -> list[Rendered]:
    return [rendered(root) for root in ROOTS]
