"""Structured logs: one JSON object per line (request logs, model loading, errors)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

access_logger = logging.getLogger("attnviz.access")
app_logger = logging.getLogger("attnviz.app")


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """Log ``{"event": event, **fields}`` as one JSON line (non-JSON values as strings)."""
    if logger.isEnabledFor(level):
        logger.log(level, json.dumps({"event": event, **fields}, default=str, ensure_ascii=False))


class JsonLineFormatter(logging.Formatter):
    """Wraps every record in a JSON object with time, level and logger; a message that is
    already a JSON object is merged into it."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        try:
            parsed = json.loads(message) if message.startswith("{") else None
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            out.update(parsed)
        else:
            out["message"] = message
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure_logging(level: int = logging.INFO) -> None:
    """Send the ``attnviz`` and ``uvicorn`` loggers to stderr as JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLineFormatter())
    for name in ("attnviz", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    # our access log replaces uvicorn's
    logging.getLogger("uvicorn.access").disabled = True
