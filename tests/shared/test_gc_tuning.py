"""Every quizmesh process raises the garbage collector's youngest threshold (quizmesh/garbage_collector.py)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from quizmesh.garbage_collector import tune_garbage_collector
from quizmesh.process import ProcessSettings
from quizmesh.settings import SettingsError


@pytest.fixture(autouse=True)
def restored_thresholds() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    yield before
    gc.set_threshold(*before)


def test_the_youngest_generation_waits_for_50000_objects_and_the_older_ones_keep_their_thresholds(
    restored_thresholds: tuple[int, int, int],
) -> None:
    tune_garbage_collector()
    assert gc.get_threshold() == (50_000, *restored_thresholds[1:])


def test_the_threshold_can_be_set_from_the_environment(restored_thresholds: tuple[int, int, int]) -> None:
    tune_garbage_collector(ProcessSettings.from_env({"QUIZMESH_GC_GEN0_THRESHOLD": "700"}).gc_gen0_threshold)
    assert gc.get_threshold() == (700, *restored_thresholds[1:])


@pytest.mark.parametrize("value", ["many", "0"])
def test_a_bad_threshold_is_a_configuration_error_naming_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="QUIZMESH_GC_GEN0_THRESHOLD"):
        ProcessSettings.from_env({"QUIZMESH_GC_GEN0_THRESHOLD": value})


def test_a_service_with_a_bad_threshold_exits_with_the_configuration_error() -> None:
    env = {**os.environ, "QUIZMESH_GC_GEN0_THRESHOLD": "many"}
    finished = subprocess.run(
        [sys.executable, "-m", "apps", "persistence-svc"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 2
    assert "configuration error: QUIZMESH_GC_GEN0_THRESHOLD" in finished.stderr
