"""The house's import rules (docs/architecture.md, "The house"), read from the AST of every module.

- the runtime (quizmesh) imports no service, no edge, no application and nothing of bench;
- no service (edge included) imports another service, an application or bench;
- a domain (`<service>/domain.py`, and quiz_svc's `kinds.py`, `media.py` and `events.py`) imports no
  driver, no generated code and no adapter;
- a service layer (`<service>/service.py` and `<service>/ports.py`: the use cases and the ports they
  need) imports no driver, no generated code, not the runtime's protobuf event codec and not its
  service's codec: it speaks in domain values, and the codec turns them into protobuf at the edge;
- the top-level packages import each other without cycles.

Every import counts, wherever it stands: inside a function, under TYPE_CHECKING, relative or not.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNTIME = "quizmesh"
SERVICES = frozenset({"edge", "quiz_svc", "leaderboard_svc", "persistence_svc"})
APPLICATIONS = frozenset({"apps"})
APART = frozenset({"bench"})
PACKAGES = frozenset({RUNTIME}) | SERVICES | APPLICATIONS | APART
DRIVERS = frozenset({"redis", "asyncpg", "aiokafka", "aiosqlite", "grpc", "aiohttp"})
# Domain modules beside a service's domain.py: the question kinds, the media rules and the events of quiz_svc.
MORE_DOMAIN_MODULES = frozenset({"quiz_svc.kinds", "quiz_svc.media", "quiz_svc.events"})
# A service's use cases and the ports they need.
SERVICE_LAYER_MODULES = frozenset({"service", "ports"})
# The runtime's module that builds and reads protobuf events (it imports the generated code).
EVENT_CODEC = "quizmesh.eventcodec"
# Each service's codec: where its domain values become protobuf and back, at the service's edge.
CODECS = frozenset({"quiz_svc.messages", "leaderboard_svc.codec", "persistence_svc.event_rows"})


@dataclass(frozen=True)
class Import:
    importer: str  # the importing module, dotted
    imported: str  # the imported module (or module.name), dotted
    line: int

    @property
    def importer_package(self) -> str:
        return self.importer.split(".")[0]

    @property
    def imported_package(self) -> str:
        return self.imported.split(".")[0]

    def __str__(self) -> str:
        return f"{self.importer}:{self.line} imports {self.imported}"


def module_name(path: Path, root: Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_in(source: str, module: str, *, is_package: bool = False) -> list[Import]:
    """Every import a module's source makes, relative ones resolved against its package."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from package import module` imports the module; `from module import name`, the module.
            found += [Import(module, f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return found


def _is_generated(imported: str) -> bool:
    parts = imported.split(".")
    return len(parts) >= 3 and parts[0] == RUNTIME and parts[2][:1] == "v" and parts[2][1:].isdigit()


def _within(imported: str, module: str) -> bool:
    return imported == module or imported.startswith(f"{module}.")


def violations(found: Iterable[Import]) -> list[str]:
    """The import rules each import breaks, as messages naming the import."""
    broken = []
    for imp in found:
        source, target = imp.importer_package, imp.imported_package
        if source == RUNTIME and target in SERVICES | APPLICATIONS | APART:
            broken.append(f"the runtime imports a service, the edge or an application: {imp}")
        if source in SERVICES and target in (SERVICES - {source}) | APPLICATIONS | APART:
            broken.append(f"a service imports another service or an application: {imp}")
        if imp.importer.split(".")[1:] == ["domain"] or imp.importer in MORE_DOMAIN_MODULES:
            if target in DRIVERS:
                broken.append(f"a domain imports a driver: {imp}")
            if _is_generated(imp.imported):
                broken.append(f"a domain imports generated code: {imp}")
            if "adapters" in imp.imported.split(".")[1:]:
                broken.append(f"a domain imports an adapter: {imp}")
        if source in SERVICES and imp.importer.split(".")[1:] in ([name] for name in SERVICE_LAYER_MODULES):
            if target in DRIVERS:
                broken.append(f"a service layer imports a driver: {imp}")
            if _is_generated(imp.imported) or _within(imp.imported, EVENT_CODEC):
                broken.append(f"a service layer imports generated code: {imp}")
            if any(_within(imp.imported, codec) for codec in CODECS):
                broken.append(f"a service layer imports the codec: {imp}")
    return broken


def package_cycles(found: Iterable[Import]) -> list[list[str]]:
    """Cycles among the top-level packages, each as the packages around it."""
    edges: dict[str, set[str]] = {}
    for imp in found:
        if imp.importer_package != imp.imported_package and imp.imported_package in PACKAGES:
            edges.setdefault(imp.importer_package, set()).add(imp.imported_package)
    return _cycles(edges)


def _cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    for start in sorted(edges):
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for after in sorted(edges.get(node, ())):
                if after == start:
                    cycles.append(path)
                elif after not in path and after > start:  # each cycle once, from its smallest package
                    stack.append((after, [*path, after]))
    return cycles


def house_imports() -> list[Import]:
    found = []
    for package in sorted(PACKAGES):
        for path in sorted((REPO / package).rglob("*.py")):
            found += imports_in(path.read_text(), module_name(path), is_package=path.name == "__init__.py")
    return found


def test_the_house_keeps_its_import_rules() -> None:
    found = house_imports()
    assert len({imp.importer_package for imp in found}) == len(PACKAGES), "a package was not read"
    assert violations(found) == []


def test_the_top_level_packages_import_each_other_without_cycles() -> None:
    assert package_cycles(house_imports()) == []


@pytest.mark.parametrize(
    ("module", "source", "rule"),
    [
        ("quizmesh.services", "from edge.app import create_app", "the runtime imports"),
        ("quizmesh.results", "def export():\n    from apps import quizctl\n", "the runtime imports"),
        ("quizmesh.loadtest", "import bench.fanout", "the runtime imports"),
        ("quiz_svc.service", "import leaderboard_svc.domain", "a service imports another"),
        ("edge.routes", "from quiz_svc import domain", "a service imports another"),
        ("edge.main", "from apps.launcher import SERVICES", "a service imports another service or an application"),
        ("leaderboard_svc.domain", "import redis.asyncio", "a domain imports a driver"),
        ("quiz_svc.domain", "if TYPE_CHECKING:\n    import grpc\n", "a domain imports a driver"),
        ("persistence_svc.domain", "from quizmesh.events.v1 import events_pb2", "a domain imports generated code"),
        ("quiz_svc.domain", "from .adapters.redis_game import RedisGameStore", "a domain imports an adapter"),
        ("quiz_svc.kinds", "from quizmesh.quiz.v1 import answer_value_pb2", "a domain imports generated code"),
        ("quiz_svc.events", "from quizmesh.events.v1 import events_pb2", "a domain imports generated code"),
        ("quiz_svc.service", "from quizmesh.events.v1 import events_pb2", "a service layer imports generated code"),
        ("quiz_svc.service", "from quizmesh.eventcodec import to_record", "a service layer imports generated code"),
        ("quiz_svc.ports", "from quizmesh.quiz.v1 import quiz_service_pb2 as pb", "a service layer imports generated"),
        ("leaderboard_svc.ports", "import redis.asyncio", "a service layer imports a driver"),
        ("quiz_svc.service", "from quiz_svc.messages import value_to_pb", "a service layer imports the codec"),
    ],
)
def test_each_rule_catches_a_breach(module: str, source: str, rule: str) -> None:
    broken = violations(imports_in(source, module))
    assert len(broken) == 1 and broken[0].startswith(rule), broken


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("edge.routes", "from quizmesh.quiz.v1 import quiz_service_pb2"),
        ("apps.launcher", "from quiz_svc import main\nfrom edge import main as edge_main"),
        ("quiz_svc.service", "from quiz_svc.domain import judge\nfrom quizmesh.backoff import Backoff"),
        (
            "quiz_svc.service",
            "from quiz_svc.events import AnswerJudged\nfrom quizmesh.eventbus import EventBusUnavailable",
        ),
        ("quiz_svc.adapters.game_events", "from quiz_svc.messages import event_to_pb"),
        ("quiz_svc.domain", "import dataclasses\nfrom typing import Any"),
        ("bench.pipeline", "from persistence_svc.consumer import SINK_TOPICS"),
    ],
)
def test_what_the_rules_allow_passes(module: str, source: str) -> None:
    assert violations(imports_in(source, module)) == []


def test_a_cycle_between_packages_is_found() -> None:
    found = [
        Import("quizmesh.runtime", "edge.app", 1),
        Import("edge.app", "quiz_svc.domain", 1),
        Import("quiz_svc.main", "quizmesh.runtime", 1),
        Import("apps.cli", "quizmesh.settings", 1),
    ]
    assert package_cycles(found) == [["edge", "quiz_svc", "quizmesh"]]
    assert package_cycles(found[1:]) == []


def test_relative_imports_resolve_against_their_package() -> None:
    assert [i.imported for i in imports_in("from .adapters import memory", "quiz_svc.main")] == [
        "quiz_svc.adapters.memory"
    ]
    assert [i.imported for i in imports_in("from . import ports", "quiz_svc", is_package=True)] == ["quiz_svc.ports"]
