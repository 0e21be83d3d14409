"""Structured logs: one event per line, as `key=value` text or as JSON.

Operators grep and ship these, so every delivery event carries the edition,
the recipient and the server's reply as fields, never buried in prose.
Call `event(logger, "delivery", edition=..., recipient=..., reply=...)`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

from newsletter.config import LogFormat, LogLevel

_FIELDS = "_fields"


def event(logger: logging.Logger, name: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event with its fields (rendered by the configured formatter)."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={_FIELDS: fields})


class _Base(logging.Formatter):
    def record_fields(self, record: logging.LogRecord) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields.update(getattr(record, _FIELDS, {}))
        if record.exc_info:
            fields["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return fields


class TextFormatter(_Base):
    """logfmt: `time=… level=info event=delivery edition=2026-11-25 recipient=… reply="250 …"`."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_logfmt(v)}" for k, v in self.record_fields(record).items())


class JsonFormatter(_Base):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(self.record_fields(record), ensure_ascii=False, default=str)


def _logfmt(value: Any) -> str:
    text = "" if value is None else str(value)
    text = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    if not text or any(c in text for c in ' "=\t'):
        return '"' + text.replace('"', '\\"') + '"'
    return text


def configure_logging(level: LogLevel, fmt: LogFormat) -> None:
    """Send the newsletter's events to stderr in the chosen format (called once by the CLI)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == LogFormat.JSON else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("newsletter").setLevel(level.value)
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.getLevelName(level)))
