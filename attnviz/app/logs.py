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
        parsed: object = None
        if isinstance(record.msg, Event):
            parsed = record.msg.fields
        else:
            message = record.getMessage()
            if message.startswith("{"):
                try:
                    parsed = json.loads(message)
                except ValueError:
                    parsed = None
        if isinstance(parsed, dict):
            out.update(parsed)
        else:
            out["message"] = record.getMessage()
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class _HandOff(logging.handlers.QueueHandler):
    """Puts records on a queue as they are: formatting and writing happen in the
    listener's thread, not in the caller's (the event loop, for the request logs)."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record  # same process: nothing to make picklable


_LOGGERS = ("attnviz", "uvicorn", "uvicorn.error")


class _Writer:
    """The thread that formats and writes records, its queue and its handler."""

    def __init__(self, stream: IO[str] | None) -> None:
        self.handler = logging.StreamHandler(stream)
        self.handler.setFormatter(JsonLineFormatter())
        self.records: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
        self.listener = logging.handlers.QueueListener(self.records, self.handler)
        self.listener.start()

    def finish(self) -> None:
        """Stop once the queue is written, then write any record that a thread still
        holding the old queue handler put there after the end marker."""
        self.listener.stop()
        while True:
            try:
                record = self.records.get_nowait()
            except queue.Empty:
                return
            if record is not None:  # not an end marker
                self.handler.handle(record)


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
        _writer.finish()
        _writer = None


def configure_logging(level: int = logging.INFO, stream: IO[str] | None = None) -> None:
    """Send the ``attnviz`` and ``uvicorn`` loggers to ``stream`` (stderr by default) as
    JSON lines, formatted and written by a background thread (a request log costs the
    event loop about a tenth of its time under load when written in place); records still
    queued are written out at exit. Calling it again switches every logger to the new
    writer before the old one finishes its queue, so no record is dropped."""
    global _writer
    old, _writer = _writer, _Writer(stream)
    _attach(_HandOff(_writer.records), level)
    if old is not None:
        old.finish()  # nothing new is queued there any more
    # our access log replaces uvicorn's
    logging.getLogger("uvicorn.access").disabled = True
