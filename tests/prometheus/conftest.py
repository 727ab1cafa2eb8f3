"""promtool and prometheus from Debian's `prometheus` package, installed by scripts/prometheus.sh
when missing (under CI=true a failed install fails the tests; elsewhere it skips them)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from scripts.prometheus_config import REPO

# The private Kafka, Redis and PostgreSQL of the fault tests (a fixture): the alert tests stop Kafka too.
from tests.faults.conftest import private_infra  # noqa: F401

PROMETHEUS_SH = REPO / "scripts" / "prometheus.sh"


def _ensure_installed() -> None:
    if shutil.which("promtool") and shutil.which("prometheus"):
        return
    done = subprocess.run(
        ["bash", str(PROMETHEUS_SH), "install"], capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0 or not shutil.which("promtool"):
        reason = f"Debian's prometheus package could not be installed: {done.stderr[-800:]}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    _ensure_installed()
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120, check=False)
