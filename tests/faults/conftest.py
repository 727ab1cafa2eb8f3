"""A private Kafka, Redis and PostgreSQL for the fault scenarios.

The scenarios stop and kill infrastructure; doing that to the shared instances would break every
other test running at the time. So this session starts its own set with scripts/infra.sh, in a
directory of its own on free ports, and removes it at the end (tests/support/private_infra.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.private_infra import PrivateInfra, private_infra_set


@pytest.fixture(scope="session")
def private_infra() -> Iterator[PrivateInfra]:
    with private_infra_set("faults") as infra:
        yield infra
