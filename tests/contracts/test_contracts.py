"""The protobuf contracts: buf lint and format, no breaking change against the released image,
and generated stubs that match the protos byte for byte.

buf comes from the pinned npm package (package.json); `npm ci` installs it.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUF = ROOT / "node_modules" / ".bin" / "buf"
RELEASED_IMAGE = ROOT / "protos" / "released" / "quizmesh-v1.binpb"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")
TIMEOUT_SECONDS = 120


def _buf(*args: str, cwd: pathlib.Path = ROOT) -> subprocess.CompletedProcess[str]:
    if not BUF.exists():
        pytest.fail(f"{BUF.relative_to(ROOT)} is missing: run `npm ci` in {ROOT}", pytrace=False)
    return subprocess.run(
        [str(BUF), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )


def _explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"`{' '.join(map(str, result.args))}` exited {result.returncode}\n{result.stdout}{result.stderr}"


def _files(folder: pathlib.Path) -> set[pathlib.Path]:
    return {
        p.relative_to(folder)
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def test_protos_pass_buf_lint() -> None:
    result = _buf("lint")
    assert result.returncode == 0, _explain(result)


def test_protos_are_buf_formatted() -> None:
    result = _buf("format", "--diff", "--exit-code")
    assert result.returncode == 0, _explain(result) + "\nfix with: npx buf format -w"


def test_protos_do_not_break_the_released_contracts() -> None:
    assert RELEASED_IMAGE.is_file(), f"{RELEASED_IMAGE} is missing: run scripts/release_contracts.sh"
    result = _buf("breaking", "--against", str(RELEASED_IMAGE))
    assert result.returncode == 0, _explain(result)


def test_deleting_a_released_field_is_reported_as_breaking(tmp_path: pathlib.Path) -> None:
    # Proves the check above can fail: the same module with JoinQuizRequest.nickname deleted.
    shutil.copy2(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    shutil.copytree(ROOT / "protos" / "quizmesh", tmp_path / "protos" / "quizmesh")
    proto = tmp_path / "protos" / "quizmesh" / "quiz" / "v1" / "quiz_service.proto"
    source = proto.read_text()
    edited, count = re.subn(
        r"(message JoinQuizRequest \{[^}]*?)\n[^\n]*string nickname = \d+;",
        r"\1",
        source,
    )
    assert count == 1, "JoinQuizRequest.nickname not found; pick another released field for this test"
    proto.write_text(edited)

    result = _buf("breaking", "--against", str(RELEASED_IMAGE), "--error-format=json", cwd=tmp_path)

    assert result.returncode != 0, _explain(result)
    violations = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    deletions = [v["message"] for v in violations if v["type"] == "FIELD_NO_DELETE"]
    assert any('"JoinQuizRequest"' in m for m in deletions), _explain(result)


def test_generated_code_matches_the_protos(tmp_path: pathlib.Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert result.returncode == 0, _explain(result)
    generated = _files(tmp_path)
    assert generated, "scripts/gen_protos.py generated nothing"

    fix = "regenerate with: python scripts/gen_protos.py"
    missing = sorted(str(p) for p in generated if not (ROOT / p).is_file())
    assert not missing, f"generated files not committed: {missing}; {fix}"
    stale = sorted(str(p) for p in generated if (ROOT / p).read_bytes() != (tmp_path / p).read_bytes())
    assert not stale, f"generated files differ from the protos: {stale}; {fix}"

    # Each package's generated folder (quizmesh/<pkg>/) holds nothing but generated files, and no
    # stubs exist anywhere else under quizmesh/ (e.g. left over from a deleted or moved proto).
    package_dirs = {pathlib.Path(*p.parts[:2]) for p in generated if len(p.parts) > 2}
    committed = {d / p for d in package_dirs for p in _files(ROOT / d)}
    committed |= {
        p.relative_to(ROOT)
        for p in (ROOT / "quizmesh").rglob("*")
        if p.is_file() and p.name.endswith(GENERATED_SUFFIXES)
    }
    extra = sorted(str(p) for p in committed - generated)
    assert not extra, f"files in generated folders that the protos do not produce: {extra}; delete them"
