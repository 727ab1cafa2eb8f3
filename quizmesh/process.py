"""How every quizmesh process starts, whichever entry point owns it: its log lines and its garbage
collector, from settings read once. Telemetry follows, from `quizmesh.telemetry.setup_telemetry`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from quizmesh.garbage_collector import GC_GEN0, tune_garbage_collector
from quizmesh.logs import LogFormat, configure_logging
from quizmesh.settings import Choice, Text, Variables


class CannotStart(Exception):
    """The process must not start, and waiting will not change that: its message says what is wrong and
    what to do (a schema older than the code, credentials the server refuses). The `quizmesh` command
    prints it and exits with code 3."""


LOG_LEVEL = Text(
    "QUIZMESH_LOG_LEVEL",
    "The root logger's level: DEBUG, INFO, WARNING or ERROR (`quizmesh --log-level` overrides it).",
    default="INFO",
)
LOG_FORMAT: Choice[LogFormat] = Choice(
    "QUIZMESH_LOG_FORMAT",
    "How log lines are written: ECS JSON with trace IDs (for Filebeat), or plain text.",
    default="ecs",
    choices=("ecs", "plain"),
    unset="`ecs` for the services, `plain` for `quizmesh dev` and the other commands",
)


@dataclass(frozen=True)
class ProcessSettings:
    VARIABLES: ClassVar[Variables] = (LOG_LEVEL, LOG_FORMAT, GC_GEN0)

    log_level: str
    log_format: LogFormat | None  # None: the entry point's own default
    gc_gen0_threshold: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ProcessSettings:
        return cls(
            log_level=LOG_LEVEL.read(env),
            log_format=LOG_FORMAT.read_if_set(env),
            gc_gen0_threshold=GC_GEN0.read(env),
        )


def start_process(settings: ProcessSettings, *, service_name: str, default_log_format: LogFormat) -> None:
    """Sets up the process's logging and garbage collector; call once, from its entry point."""
    configure_logging(settings.log_level, settings.log_format or default_log_format, service_name=service_name)
    tune_garbage_collector(settings.gc_gen0_threshold)
