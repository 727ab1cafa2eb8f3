"""A private Kafka, Redis and PostgreSQL for the fault scenarios.

The scenarios stop and kill infrastructure; doing that to the shared instances would break every
other test running at the time. So this session starts its own set with scripts/infra.sh, in a
directory of its own on free ports, and removes it at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.infra import require_real_stack
from tests.support.stack import free_port

REPO = Path(__file__).resolve().parents[2]
INFRA_SH = REPO / "scripts" / "infra.sh"


@dataclass(frozen=True)
class PrivateInfra:
    directory: Path
    script_env: dict[str, str]
    kafka_bootstrap: str
    redis_url: str
    postgres_dsn: str
    postgres_migration_dsn: str

    @property
    def service_env(self) -> dict[str, str]:
        """What a process_stack needs to run on this infrastructure instead of the shared one."""
        return {
            "QUIZMESH_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "QUIZMESH_REDIS_URL": self.redis_url,
            "QUIZMESH_POSTGRES_DSN": self.postgres_dsn,
            "QUIZMESH_POSTGRES_MIGRATION_DSN": self.postgres_migration_dsn,
        }

    def infra(self, *args: str) -> float:
        """Runs scripts/infra.sh on the private set; returns the seconds it took."""
        started = time.monotonic()
        done = subprocess.run(
            ["bash", str(INFRA_SH), *args],
            check=False,
            env=self.script_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise RuntimeError(f"infra.sh {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return round(time.monotonic() - started, 2)


@pytest.fixture(scope="session")
def private_infra() -> Iterator[PrivateInfra]:
    require_real_stack()  # process_stack also checks the shared set; CI starts it
    directory = REPO / ".infra" / f"faults-{uuid.uuid4().hex[:8]}"
    ports = {name: free_port() for name in ("KAFKA", "KAFKA_CONTROLLER", "REDIS", "PG", "PGBOUNCER")}
    script_env = {
        **os.environ,
        "QUIZMESH_INFRA_DIR": str(directory),
        **{f"QUIZMESH_INFRA_{name}_PORT": str(port) for name, port in ports.items()},
    }
    infra = PrivateInfra(
        directory,
        script_env,
        kafka_bootstrap=f"127.0.0.1:{ports['KAFKA']}",
        redis_url=f"redis://127.0.0.1:{ports['REDIS']}/0",
        postgres_dsn=f"postgresql://quizmesh@127.0.0.1:{ports['PG']}/quizmesh",
        postgres_migration_dsn=f"postgresql://quizmesh_migrator@127.0.0.1:{ports['PG']}/quizmesh",
    )
    try:
        infra.infra("up")
        yield infra
    finally:
        # Only the private set: `down` reads the PID files under its own directory.
        subprocess.run(["bash", str(INFRA_SH), "down"], check=False, env=script_env, capture_output=True, timeout=300)
        shutil.rmtree(directory, ignore_errors=True)
