"""Structured logs: one JSON object per line (request logs, model loading, errors)."""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import queue
import time
from typing import IO, Any

access_logger = logging.getLogger("attnviz.access")
app_logger = logging.getLogger("attnviz.app")


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """Log ``{"event": event, **fields}`` as one JSON line (non-JSON values as strings)."""
    if logger.isEnabledFor(level):
        payload = {"event": event, **fields}
        message = json.dumps(payload, default=str, ensure_ascii=False)
        logger.log(level, message, extra={"json_fields": payload})


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
        parsed = getattr(record, "json_fields", None)  # log_event's, without parsing
        if parsed is None and message.startswith("{"):
            try:
                parsed = json.loads(message)
            except ValueError:
                parsed = None
        if isinstance(parsed, dict):
            out.update(parsed)
        else:
            out["message"] = message
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class _HandOff(logging.handlers.QueueHandler):
    """Puts records on a queue as they are: formatting and writing happen in the
    listener's thread, not in the caller's (the event loop, for the request logs)."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record  # same process: nothing to make picklable


_listener: logging.handlers.QueueListener | None = None


@atexit.register
def stop_logging() -> None:
    """Write out the records still queued and stop the logging thread (at exit)."""
    global _listener
    if _listener is not None:
        _listener.stop()
        _listener = None


def configure_logging(level: int = logging.INFO, stream: IO[str] | None = None) -> None:
    """Send the ``attnviz`` and ``uvicorn`` loggers to ``stream`` (stderr by default) as
    JSON lines, formatted and written by a background thread (a request log costs the
    event loop about a tenth of its time under load when written in place); records still
    queued are written out at exit."""
    global _listener
    stop_logging()
    writer = logging.StreamHandler(stream)
    writer.setFormatter(JsonLineFormatter())
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    _listener = logging.handlers.QueueListener(records, writer)
    _listener.start()
    handler = _HandOff(records)
    for name in ("attnviz", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    # our access log replaces uvicorn's
    logging.getLogger("uvicorn.access").disabled = True
