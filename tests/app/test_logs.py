"""The service's logs: JSON lines on stderr, written by a background thread."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from attnviz.app import logs
from attnviz.app.logs import access_logger, app_logger, configure_logging, log_event, stop_logging

NAMES = ("attnviz", "uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture
def written() -> Iterator[io.StringIO]:
    """configure_logging() into a string for one test; the loggers are put back after."""
    saved = {
        n: (lg.handlers[:], lg.level, lg.propagate, lg.disabled)
        for n, lg in ((n, logging.getLogger(n)) for n in NAMES)
    }
    out = io.StringIO()
    try:
        configure_logging(stream=out)
        yield out
    finally:
        stop_logging()
        for n, (handlers, level, propagate, disabled) in saved.items():
            lg = logging.getLogger(n)
            lg.handlers[:], lg.level, lg.propagate, lg.disabled = (
                handlers,
                level,
                propagate,
                disabled,
            )


def test_records_are_written_as_json_lines_by_another_thread(written: io.StringIO) -> None:
    writers: list[str] = []
    assert logs._writer is not None
    stream = logs._writer.handler
    emit = stream.emit

    def spy(record: logging.LogRecord) -> None:
        writers.append(threading.current_thread().name)
        emit(record)

    stream.emit = spy  # type: ignore[method-assign]
    log_event(access_logger, logging.INFO, "request", path="/api/translate", ms=1.5, text="é ✓")
    logging.getLogger("uvicorn.error").warning("plain %s message", "uvicorn")
    try:
        raise ValueError("boom")
    except ValueError:
        app_logger.exception("failed")
    stop_logging()  # writes out what is queued
    lines = [json.loads(line) for line in written.getvalue().splitlines()]
    assert len(lines) == 3
    assert lines[0]["event"] == "request" and lines[0]["ms"] == 1.5
    assert (lines[0]["logger"], lines[0]["level"], lines[0]["text"]) == (
        "attnviz.access",
        "info",
        "é ✓",
    )
    assert lines[1]["message"] == "plain uvicorn message" and lines[1]["level"] == "warning"
    assert lines[2]["message"] == "failed" and "ValueError: boom" in lines[2]["exception"]
    assert writers and threading.current_thread().name not in writers


def test_configuring_again_replaces_the_writer(written: io.StringIO) -> None:
    log_event(app_logger, logging.INFO, "first")
    second = io.StringIO()
    configure_logging(stream=second)  # writes out what the first writer had queued
    log_event(app_logger, logging.INFO, "second")
    stop_logging()
    assert [json.loads(x)["event"] for x in written.getvalue().splitlines()] == ["first"]
    assert [json.loads(x)["event"] for x in second.getvalue().splitlines()] == ["second"]


def test_no_record_is_lost_while_reconfiguring_or_after_the_stop(written: io.StringIO) -> None:
    """A thread logs without pause while the writer is replaced again and again, then
    stopped: every record is written exactly once, by one writer or another, and records
    logged after the stop are written at once."""
    outs = [written]
    sent = 0
    stop = threading.Event()

    def chatter() -> None:
        nonlocal sent
        while not stop.is_set():
            log_event(app_logger, logging.INFO, "tick", n=sent)
            sent += 1

    thread = threading.Thread(target=chatter)
    thread.start()
    try:
        for _ in range(30):
            outs.append(io.StringIO())
            configure_logging(stream=outs[-1])
    finally:
        stop.set()
        thread.join()
    stop_logging()
    log_event(app_logger, logging.INFO, "after the stop")
    lines = [json.loads(x) for out in outs for x in out.getvalue().splitlines()]
    ticks = sorted(line["n"] for line in lines if line["event"] == "tick")
    assert sent > 100 and ticks == list(range(sent))
    assert json.loads(outs[-1].getvalue().splitlines()[-1])["event"] == "after the stop"
