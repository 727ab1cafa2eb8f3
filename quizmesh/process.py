"""How every quizmesh process starts, whichever entry point owns it: its log lines and its garbage
collector, from settings read once. Telemetry follows, from `quizmesh.telemetry.setup_telemetry`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from quizmesh.garbage_collector import GC_GEN0, tune_garbage_collector
from quizmesh.logs import LogFormat, configure_logging
from quizmesh.settings import Choice, FromEnvironment, Text, optional_setting, setting


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
    choices=get_args(LogFormat),
    unset="`ecs` for the services, `plain` for `quizmesh dev` and the other commands",
)


@dataclass(frozen=True)
class ProcessSettings(FromEnvironment):
    log_level: str = setting(LOG_LEVEL)
    log_format: LogFormat | None = optional_setting(LOG_FORMAT)  # None: the entry point's own default
    gc_gen0_threshold: int = setting(GC_GEN0)


def start_process(settings: ProcessSettings, *, service_name: str, default_log_format: LogFormat) -> None:
    """Sets up the process's logging and garbage collector; call once, from its entry point."""
    configure_logging(settings.log_level, settings.log_format or default_log_format, service_name=service_name)
    tune_garbage_collector(settings.gc_gen0_threshold)
