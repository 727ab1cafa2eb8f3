"""A private Kafka, Redis and PostgreSQL (with its PgBouncer), started with scripts/infra.sh in a
directory of its own on free ports and removed afterwards: for tests that stop or kill infrastructure,
which would break every other test using the shared set, and for the secure profile (`up --secure`)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.procs import free_port
from tests.support.infra import require_real_stack

REPO = Path(__file__).resolve().parents[2]
INFRA_SH = REPO / "scripts" / "infra.sh"
_EXPORT = re.compile(r"^export (QUIZMESH_[A-Z0-9_]+)=(.*)$")


@dataclass(frozen=True)
class PrivateInfra:
    directory: Path
    script_env: dict[str, str]
    # What `scripts/infra.sh env` prints for this set: what a process_stack needs to run on it instead of
    # the shared one (credentials and certificates too, in the secure profile).
    service_env: dict[str, str]

    @property
    def kafka_bootstrap(self) -> str:
        return self.service_env["QUIZMESH_KAFKA_BOOTSTRAP"]

    @property
    def redis_url(self) -> str:
        return self.service_env["QUIZMESH_REDIS_URL"]

    @property
    def postgres_dsn(self) -> str:
        return self.service_env["QUIZMESH_POSTGRES_DSN"]

    def infra(self, *args: str) -> float:
        """Runs scripts/infra.sh on the private set; returns the seconds it took."""
        return _infra(self.script_env, *args)[1]


def _infra(script_env: dict[str, str], *args: str) -> tuple[str, float]:
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(INFRA_SH), *args], check=False, env=script_env, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise RuntimeError(f"infra.sh {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout, round(time.monotonic() - started, 2)


@contextlib.contextmanager
def private_infra_set(name: str, *up_options: str) -> Iterator[PrivateInfra]:
    """`scripts/infra.sh up [up_options]` in .infra/<name>-<random>/, brought down and removed afterwards."""
    require_real_stack()  # process_stack also checks the shared set; CI starts it
    directory = REPO / ".infra" / f"{name}-{uuid.uuid4().hex[:8]}"
    ports = {kind: free_port() for kind in ("KAFKA", "KAFKA_CONTROLLER", "REDIS", "PG", "PGBOUNCER")}
    script_env = {
        **os.environ,
        "QUIZMESH_INFRA_DIR": str(directory),
        **{f"QUIZMESH_INFRA_{kind}_PORT": str(port) for kind, port in ports.items()},
    }
    try:
        _infra(script_env, "up", *up_options)
        exported, _ = _infra(script_env, "env")
        service_env = {m[1]: m[2] for line in exported.splitlines() if (m := _EXPORT.match(line))}
        yield PrivateInfra(directory, script_env, service_env)
    finally:
        # Only the private set: `down` reads the PID files under its own directory.
        subprocess.run(["bash", str(INFRA_SH), "down"], check=False, env=script_env, capture_output=True, timeout=300)
        shutil.rmtree(directory, ignore_errors=True)
