"""Structured JSON-line log events (SPEC section 8).

Each line is one JSON object with ``ts`` (UTC ISO-8601), ``level``, ``component``,
``event`` and the event's own fields. Values that look like secrets are redacted
before they are written.
"""

from __future__ import annotations

import datetime as dt
import re
import sys
import threading
from typing import Any, TextIO

import orjson

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
_SECRET_FIELD = re.compile(r"(password|secret|token_secret|api_key|apikey)", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)([^@\s]+)(@)")


def redact(value: Any) -> Any:
    """Hide passwords embedded in URLs (``redis://:pw@host`` -> ``redis://:***@host``)."""
    if isinstance(value, str):
        return _URL_PASSWORD.sub(r"\1***\3", value)
    if isinstance(value, dict):
        return {k: ("***" if _SECRET_FIELD.search(str(k)) and v else redact(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


class EventLog:
    """Writes JSON log events for one component at or above a minimum level."""

    def __init__(self, component: str, level: str = "info", stream: TextIO | None = None) -> None:
        self.component = component
        self.min_level = LEVELS[level]
        self._stream = stream
        self._lock = threading.Lock()
        self.static_fields: dict[str, Any] = {}

    def _emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        if LEVELS[level] < self.min_level:
            return
        record = {
            "ts": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "level": level,
            "component": self.component,
            "event": event,
            **self.static_fields,
            **redact(fields),
        }
        line = orjson.dumps(record, default=str).decode() + "\n"
        stream = self._stream or sys.stdout
        with self._lock:
            stream.write(line)
            stream.flush()

    def debug(self, event: str, **fields: Any) -> None:
        self._emit("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", event, fields)
