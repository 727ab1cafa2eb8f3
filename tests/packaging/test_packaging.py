"""What the image installs: dependency floors that are true, the lock file, and the CLI from a wheel.

The slow tests build throwaway environments with uv from PyPI:
- at the floors: every direct dependency at the lowest version pyproject.toml allows
  (`--resolution lowest-direct`), every module imported and the behaviour tests run against it;
- from the lock: requirements.lock with --require-hashes, as deploy/Containerfile does, plus the
  project's wheel, whose commands must work (`--help` of each, and `quizmesh dev` serving).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from bench.procs import free_port, free_ports

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
LOCK = REPO / "requirements.lock"
# The top-level packages the wheel carries, as pyproject.toml finds them.
PACKAGES = [p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]]
# The behaviour tests run again at the floors (in-memory engines and the real servers alike).
FLOOR_TESTS = [
    "tests/quiz_svc",
    "tests/leaderboard_svc",
    "tests/persistence_svc",
    "tests/edge",
    "tests/e2e",
    "tests/observability/test_telemetry.py",
]
# Imports every module of the packages; a module that needs an optional extra's distribution
# (say picows for the load generator) must say so by failing on exactly that import.
IMPORT_ALL = """
import importlib, pkgutil, sys
optional, failed, count = set(sys.argv[2:]), [], 0
for top in sys.argv[1].split(","):
    for module in pkgutil.walk_packages(importlib.import_module(top).__path__, top + "."):
        if module.name.endswith("__main__"):
            continue
        count += 1
        try:
            importlib.import_module(module.name)
        except ModuleNotFoundError as exc:
            if exc.name not in optional:
                failed.append(f"{module.name}: {exc!r}")
        except Exception as exc:
            failed.append(f"{module.name}: {exc!r}")
print(count, "modules imported")
sys.exit("\\n".join(failed) or None)
"""


def _requirement(name: str) -> Requirement:
    (spec,) = [Requirement(r) for r in PYPROJECT["project"]["dependencies"] if Requirement(r).name == name]
    return spec


def _floor(spec: Requirement) -> str:
    (floor,) = [s.version for s in spec.specifier if s.operator in (">=", "==")]
    return floor


def _versions(pattern: str, glob: str) -> set[str]:
    return {m for path in (REPO / "quizmesh").glob(glob) for m in re.findall(pattern, path.read_text(), re.M)}


def test_floors_match_what_the_generated_code_checks_at_import() -> None:
    (protobuf,) = _versions(r"^# Protobuf Python Version: ([\d.]+)$", "*/v1/*_pb2.py") or {"missing"}
    (grpc,) = _versions(r"^GRPC_GENERATED_VERSION = '([\d.]+)'$", "*/v1/*_pb2_grpc.py") or {"missing"}
    assert _floor(_requirement("protobuf")) == protobuf
    for name in ("grpcio", "grpcio-health-checking", "grpcio-reflection"):
        assert _floor(_requirement(name)) == grpc, name
    (tools,) = [
        Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["dev"] if r.startswith("grpcio-tools")
    ]
    assert _floor(tools) == grpc


def test_every_runtime_dependency_has_a_floor() -> None:
    for spec in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(spec)
        assert any(s.operator in (">=", "==") for s in requirement.specifier), spec


def test_the_lock_pins_every_distribution_with_hashes() -> None:
    text = LOCK.read_text()
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==([^ ;\\]+)", text, re.M)
    assert len(pins) > 30
    for block in re.split(r"\n(?=[A-Za-z0-9_.-]+==)", text.split("\n", 2)[2]):
        assert "--hash=sha256:" in block, block.split("\n", 1)[0]
    locked = {name.lower().replace("_", "-"): version for name, version in pins}
    for spec in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(spec)
        assert requirement.specifier.contains(locked[requirement.name.lower()]), spec


def _run(
    args: Sequence[str], *, timeout: float, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(args), capture_output=True, text=True, check=False, timeout=timeout, cwd=cwd, env=env)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _uv(*args: str) -> subprocess.CompletedProcess[str]:
    return _run([sys.executable, "-m", "uv", *args], timeout=600)


def _wheel(tmp_path: Path) -> Path:
    """The project's wheel, built from a copy of its sources (setuptools writes build/ in the tree it builds)."""
    source = tmp_path / "source"
    for name in ("pyproject.toml", "README.md"):
        source.mkdir(exist_ok=True)
        shutil.copy(REPO / name, source / name)
    for package in PACKAGES:
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    _uv("build", "--quiet", "--wheel", "--out-dir", str(tmp_path / "dist"), str(source))
    (wheel,) = (tmp_path / "dist").glob("quizmesh-*.whl")
    return wheel


def _venv(path: Path) -> Path:
    _uv("venv", "--quiet", "--python", sys.executable, str(path))
    return path / "bin" / "python"


@pytest.mark.slow
def test_the_lock_is_current(tmp_path: Path) -> None:
    out = tmp_path / "requirements.lock"
    shutil.copy(LOCK, out)
    _run(
        ["bash", str(REPO / "scripts" / "lock.sh"), str(out)], timeout=600, env={**os.environ, "PYTHON": sys.executable}
    )
    assert out.read_text() == LOCK.read_text(), "pyproject.toml changed: run `make lock`"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_everything_works_at_the_dependency_floors(tmp_path: Path) -> None:
    floors = tmp_path / "floors.txt"
    _uv("pip", "compile", "--quiet", str(REPO / "pyproject.toml"), "--resolution", "lowest-direct",
        "--python-version", "3.11", "-o", str(floors))  # fmt: skip
    resolved = {
        canonicalize_name(name): Version(version)
        for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", floors.read_text(), re.M)
    }
    for spec in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(spec)
        if requirement.marker is None or requirement.marker.evaluate():
            assert resolved[canonicalize_name(requirement.name)] == Version(_floor(requirement)), spec
    python = _venv(tmp_path / "venv")
    _uv("pip", "install", "--quiet", "--python", str(python), "-r", str(floors))
    # The test tools at any version, the runtime held at its floors.
    tools = ["pytest", "pytest-asyncio", "pytest-timeout", "hypothesis", "pyyaml", "jsonschema", "referencing"]
    _uv("pip", "install", "--quiet", "--python", str(python), "-c", str(floors), *tools)
    _uv("pip", "install", "--quiet", "--python", str(python), "--no-deps", str(_wheel(tmp_path)))
    optional = ["picows", "socketio", "matplotlib"]
    imported = _run([str(python), "-c", IMPORT_ALL, ",".join(PACKAGES), *optional], cwd=tmp_path, timeout=300)
    assert int(imported.stdout.split()[0]) > 50
    done = subprocess.run(
        [str(python), "-m", "pytest", *FLOOR_TESTS, "-m", "not slow", "-q", "-p", "no:cacheprovider"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=800,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_wheel_installed_from_the_lock_offers_working_commands(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path)
    python = _venv(tmp_path / "venv")
    _uv("pip", "install", "--quiet", "--python", str(python), "--require-hashes", "-r", str(LOCK))
    _uv("pip", "install", "--quiet", "--python", str(python), "--no-deps", str(wheel))
    _uv("pip", "check", "--python", str(python))
    bin_dir = python.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUIZMESH_")}
    # Outside the checkout, so only the wheel's files can be imported.
    help_text = _run([str(bin_dir / "quizmesh"), "--help"], cwd=tmp_path, env=env, timeout=60).stdout
    _run([str(bin_dir / "quizctl"), "--help"], cwd=tmp_path, env=env, timeout=60)
    (choices,) = re.findall(r"\{([a-z,-]+)\}", help_text)[:1]
    for command in choices.split(","):
        done = subprocess.run(
            [str(bin_dir / "quizmesh"), command, "--help"], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
        if command == "loadtest":
            # The load generator needs the bench extra, which the image does not carry: it says so.
            assert done.returncode != 0 and "quizmesh[bench]" in done.stderr, done.stderr
        else:
            assert done.returncode == 0 and "usage:" in done.stdout, done.stderr
    port = free_port()
    dev = subprocess.Popen(
        [str(bin_dir / "quizmesh"), "dev", "--port", str(port), "--grpc-base-port", str(free_ports(3)),
         "--sqlite", str(tmp_path / "dev.sqlite3")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as reply:
                    assert reply.status == 200
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as reply:
                    assert b"<html" in reply.read().lower()  # the player page ships in the wheel
                break
            except OSError:
                assert dev.poll() is None, dev.communicate()[0]
                assert time.monotonic() < deadline, "quizmesh dev from the wheel did not become ready"
                time.sleep(0.5)
    finally:
        dev.terminate()
        dev.wait(30)
