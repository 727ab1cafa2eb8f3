"""docs/configuration.md holds every variable quizmesh reads, with its default and meaning, and stays so."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from apps.configuration import READERS, documented_names, render
from edge.settings import Settings as EdgeSettings
from leaderboard_svc.settings import Settings as LeaderboardSettings
from persistence_svc.settings import Settings as PersistenceSettings
from quiz_svc.settings import Settings as QuizSettings
from quizmesh.process import ProcessSettings
from quizmesh.settings import Engines, FromEnvironment, Variables
from quizmesh.telemetry import TelemetrySettings

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "docs" / "configuration.md"
# A whole variable name: a name followed by more name or by a template's brace is only a prefix of one.
VARIABLE_NAME = re.compile(r"\bQUIZMESH_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_{])")
SKIPPED_DIRS = frozenset({".git", ".venv", "node_modules", ".infra", ".mypy_cache", ".ruff_cache", "build"})


class RecordingEnv(dict[str, str]):
    """An environment that remembers every variable read from it."""

    def __init__(self, values: Mapping[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.read.add(key)
        return super().__contains__(key)


# quiz_svc refuses to start without a signing key, so its settings are read with one.
SETTINGS: list[tuple[Callable[[Mapping[str, str]], object], Variables, dict[str, str]]] = [
    (ProcessSettings.from_env, ProcessSettings.VARIABLES, {}),
    (TelemetrySettings.from_env, TelemetrySettings.VARIABLES, {}),
    (Engines.from_env, Engines.VARIABLES, {}),
    (QuizSettings.from_env, QuizSettings.VARIABLES, {"QUIZMESH_SIGNING_KEY": "k" * 32}),
    (LeaderboardSettings.from_env, LeaderboardSettings.VARIABLES, {}),
    (PersistenceSettings.from_env, PersistenceSettings.VARIABLES, {}),
    (EdgeSettings.from_env, EdgeSettings.VARIABLES, {}),
]


def test_the_reference_is_the_rendering_of_the_declared_variables() -> None:
    assert REFERENCE.read_text() == render(), "run: python -m apps.configuration > docs/configuration.md"


def test_the_reference_is_written_by_python_m_apps_configuration() -> None:
    written = subprocess.run(
        [sys.executable, "-m", "apps.configuration"], cwd=REPO, check=True, capture_output=True, text=True
    )
    assert written.stdout == render()


@pytest.mark.parametrize(("read", "declared", "env"), SETTINGS, ids=[read.__module__ for read, _, _ in SETTINGS])
def test_each_settings_class_reads_exactly_the_variables_it_declares(
    read: Callable[[Mapping[str, str]], object], declared: Variables, env: dict[str, str]
) -> None:
    recording = RecordingEnv(env)
    read(recording)
    # A secret's NAME_FILE is read only when NAME is not set.
    assert recording.read <= {name for variable in declared for name in variable.names}
    assert {variable.name for variable in declared} <= recording.read


@pytest.mark.parametrize(
    "settings_class",
    [ProcessSettings, TelemetrySettings, Engines, LeaderboardSettings, PersistenceSettings, EdgeSettings],
)
def test_a_settings_class_built_without_arguments_is_the_one_read_from_an_empty_environment(
    settings_class: type[FromEnvironment],
) -> None:
    assert settings_class() == settings_class.from_env({})


def test_quiz_svc_settings_need_only_a_signing_key_beside_the_declared_defaults() -> None:
    key = "k" * 32
    assert QuizSettings(signing_key=key.encode()) == QuizSettings.from_env({"QUIZMESH_SIGNING_KEY": key})


def test_every_reader_of_the_reference_has_a_default_and_a_meaning_for_each_variable() -> None:
    for reader in READERS:
        for variable in reader.variables:
            assert variable.default_text and variable.meaning.endswith("."), (reader.name, variable.name)


def _named_variables(texts: Iterable[str]) -> set[str]:
    return {match.group() for text in texts for match in VARIABLE_NAME.finditer(text)}


def _sources() -> list[Path]:
    """The code and scripts of the checkout: what could read a variable."""
    found = []
    for path in REPO.rglob("*"):
        if SKIPPED_DIRS.intersection(path.relative_to(REPO).parts) or not path.is_file():
            continue
        if path == Path(__file__).resolve():  # its synthetic names below are undocumented on purpose
            continue
        if path.suffix in (".py", ".sh") or path.name in ("Makefile", "Containerfile"):
            found.append(path)
    return found


def test_every_variable_the_code_and_scripts_name_is_in_the_reference() -> None:
    named = _named_variables(path.read_text(errors="replace") for path in _sources())
    assert named, "the scan found no variable at all"
    assert named - documented_names() == set()


@pytest.mark.parametrize(
    ("source", "named"),
    [
        ('port = os.environ.get("QUIZMESH_SOMETHING_NEW", "1")', {"QUIZMESH_SOMETHING_NEW"}),
        ('DIR="${QUIZMESH_INFRA_ELSEWHERE:-/tmp}"', {"QUIZMESH_INFRA_ELSEWHERE"}),
        ('variable = f"QUIZMESH_{service}_ADDR"', set()),
        ('{f"QUIZMESH_INFRA_{name}_PORT": port}', set()),
    ],
)
def test_the_scan_finds_whole_variable_names_and_skips_templates(source: str, named: set[str]) -> None:
    assert _named_variables([source]) == named
    assert not named & documented_names()  # so the test above would fail on each of them
