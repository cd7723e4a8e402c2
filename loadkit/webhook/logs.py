"""Structured logs of `loadkit serve`: one line per hook answer, run start/end and analysis change.

`--log-format json` writes one JSON object per line on stderr (what `kubectl logs` and log
shippers read); `text` writes the same fields as `key=value`. Nothing is configured at import.

    {"ts": "2026-12-01T08:00:00.123Z", "level": "info", "event": "hook", "kind": "rollout",
     "namespace": "bruno", "name": "bruno-site", "status": 202, "run": "3f2a...", "message": "..."}
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

EVENTS = logging.getLogger("loadkit.events")
_FIELDS = "loadkit_fields"


def log_event(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event with its fields (None values are left out)."""
    clean = {k: v for k, v in fields.items() if v is not None}
    EVENTS.log(level, event, extra={_FIELDS: {"event": event, **clean}})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        data: dict[str, Any] = {"ts": stamp, "level": record.levelname.lower()}
        fields = getattr(record, _FIELDS, None)
        if fields is not None:
            data.update(fields)
        else:
            data.update(event="log", logger=record.name, message=record.getMessage())
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = dict(getattr(record, _FIELDS, None) or {})
        if not fields:
            return f"loadkit: {record.levelname.lower()}: {super().format(record)}"
        event = fields.pop("event")
        message = fields.pop("message", None) or fields.pop("reason", None)
        pairs = " ".join(f"{k}={v}" for k, v in fields.items())
        return f"loadkit: {event} {pairs}" + (f": {message}" if message else "")


def configure(log_format: str) -> None:
    """Send loadkit's logs to stderr in `log_format` (text or json); uvicorn's own stay at warning."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger("loadkit")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = [handler]
