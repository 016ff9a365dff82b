"""Structured logs: one JSON object per line (request logs, model loading, errors)."""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import logging.handlers
import queue
import time
from typing import IO, Any

access_logger = logging.getLogger("attnviz.access")
app_logger = logging.getLogger("attnviz.app")


class Event:
    """A log_event message: ``{"event": ..., **fields}``, turned into JSON only when the
    record is written (``str``), in the writer's thread."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields

    def __str__(self) -> str:
        return json.dumps(self.fields, default=str, ensure_ascii=False)


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """Log ``{"event": event, **fields}`` as one JSON line (non-JSON values as strings).
    Pass values that will not change afterwards: the line may be written later."""
    if logger.isEnabledFor(level):
        logger.log(level, Event({"event": event, **fields}))


class JsonLineFormatter(logging.Formatter):
    """Wraps every record in a JSON object with time, level and logger; a log_event, or
    a message that is already a JSON object, is merged into it."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if isinstance(record.msg, Event):
            out.update(record.msg.fields)
        else:
            message = record.getMessage()
            parsed: object = None
            if message.startswith("{"):
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
    listener's thread, not in the caller's (the event loop, for the request logs). Once
    ``redirect`` is set, records go to that handler instead."""

    def __init__(self, records: queue.SimpleQueue[logging.LogRecord | None]) -> None:
        super().__init__(records)
        self.redirect: logging.Handler | None = None

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record  # same process: nothing to make picklable

    def emit(self, record: logging.LogRecord) -> None:
        if self.redirect is not None:  # read under this handler's lock (Handler.handle)
            self.redirect.handle(record)
        else:
            super().emit(record)


_LOGGERS = ("attnviz", "uvicorn", "uvicorn.error")


class _Writer:
    """The thread that formats and writes records, its queue, the handler that feeds the
    queue (``handoff``) and the one that writes (``handler``)."""

    def __init__(self, stream: IO[str] | None) -> None:
        self.handler = logging.StreamHandler(stream)
        self.handler.setFormatter(JsonLineFormatter())
        records: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
        self.handoff = _HandOff(records)
        self.listener = logging.handlers.QueueListener(records, self.handler)
        self.listener.start()

    def finish(self, successor: logging.Handler) -> None:
        """Send records to ``successor`` from now on, write what is queued, stop. A thread
        that still holds the hand-off (it was logging while the loggers were switched)
        is redirected too: the switch happens under the hand-off's lock, so every record
        is either queued before it, and written here, or redirected after it."""
        with self.handoff.lock or contextlib.nullcontext():
            self.handoff.redirect = successor
        self.listener.stop()


_writer: _Writer | None = None


def _attach(handler: logging.Handler, level: int | None = None) -> None:
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        if level is not None:
            logger.setLevel(level)
        logger.propagate = False


@atexit.register
def stop_logging() -> None:
    """Stop the logging thread after it has written every queued record (at exit);
    records logged afterwards are written at once, in the caller's thread."""
    global _writer
    if _writer is not None:
        _attach(_writer.handler)  # new records bypass the queue from now on
        _writer.finish(_writer.handler)
        _writer = None


def configure_logging(level: int = logging.INFO, stream: IO[str] | None = None) -> None:
    """Send the ``attnviz`` and ``uvicorn`` loggers to ``stream`` (stderr by default) as
    JSON lines, formatted and written by a background thread (a request log costs the
    event loop about a tenth of its time under load when written in place); records still
    queued are written out at exit. Calling it again switches every logger to the new
    writer and then lets the old one finish its queue: no record is dropped."""
    global _writer
    old, _writer = _writer, _Writer(stream)
    _attach(_writer.handoff, level)
    if old is not None:
        old.finish(_writer.handoff)
    # our access log replaces uvicorn's
    logging.getLogger("uvicorn.access").disabled = True
