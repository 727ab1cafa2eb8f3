"""The process's log lines: ECS JSON with `trace.id`/`span.id` for Filebeat, or plain text in
`quizmesh dev`; both redact anything shaped like a JWT. `configure_logging` is called once, by the
entry point that owns the process."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, Literal

import ecs_logging
from opentelemetry import trace

# header.payload.signature, base64url: how every credential quizmesh issues looks.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
REDACTED = "[REDACTED]"


def redact(text: str) -> str:
    return _JWT.sub(REDACTED, text)


class RedactingFormatter(logging.Formatter):
    """Redacts JWT-shaped strings from the whole formatted line, so a credential is caught wherever it
    hides: message, arguments, exception text or extra fields (a filter sees only msg and args)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self._inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact(self._inner.format(record))


class TraceIdsForEcs(logging.Filter):
    """ecs-logging maps only Elastic APM's record attributes to `trace.id`/`span.id`; this fills
    them from the current OpenTelemetry span."""

    def filter(self, record: logging.LogRecord) -> bool:
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            record.elasticapm_trace_id = f"{span_context.trace_id:032x}"
            record.elasticapm_span_id = f"{span_context.span_id:016x}"
        return True


LogFormat = Literal["ecs", "plain"]


def log_handler(log_format: LogFormat, stream: Any = None, *, service_name: str = "quizmesh") -> logging.Handler:
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    if log_format == "ecs":
        handler.addFilter(TraceIdsForEcs())
        inner: logging.Formatter = ecs_logging.StdlibFormatter(
            extra={"service.name": service_name}, exclude_fields=("process", "log.original")
        )
    else:
        inner = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    handler.setFormatter(RedactingFormatter(inner))
    return handler


def configure_logging(level: str, log_format: LogFormat, *, service_name: str) -> None:
    """The process's root logging, set once by the entry point that owns the process."""
    root = logging.getLogger()
    root.handlers[:] = [log_handler(log_format, service_name=service_name)]
    root.setLevel(level.upper())
