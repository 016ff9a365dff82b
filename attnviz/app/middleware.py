"""ASGI middleware: request body limit, security headers, request logs and metrics.

Both are plain ASGI classes (no ``BaseHTTPMiddleware``): they cost a few microseconds
and never hold a lock while a request runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from attnviz.app.logs import access_logger, app_logger, log_event
from attnviz.app.metrics import Metrics

# No third-party origin: the pages load their scripts (plotly.js included) from the app.
# Plotly sets inline styles, hence 'unsafe-inline' for styles only.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
# Swagger UI (served from the installed swagger-ui-bundle, no CDN) is started by an inline
# script: only /docs gets 'unsafe-inline' for scripts.
DOCS_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
    "connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'self'; "
    "frame-ancestors 'none'"
)
DOCS_PATHS = frozenset({"/docs"})
_COMMON_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)
_JSON_TYPES = (b"application/json", b"+json")


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


async def _send_json(send: Send, status: int, detail: str, *, close: bool = False) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if close:  # the rest of the request may still come: the connection cannot be reused
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Reads the whole request body first: 413 when it is over ``max_bytes``, 408 (and the
    connection closed) when it has not all arrived within ``timeout_s`` (0: no limit), 400
    when a JSON body is not UTF-8; otherwise hands the body on to the app unchanged."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float = 0.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    def _too_large(self, size: int | None) -> str:
        got = f"{size} bytes" if size is not None else "more than that"
        return (
            f"the request body is {got}; the limit is {self.max_bytes} bytes "
            f"({self.max_bytes // 1024} KB): send fewer or shorter texts"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _send_json(send, 400, "the Content-Length header is not a number")
                return
            if declared > self.max_bytes:
                await _send_json(send, 413, self._too_large(declared))
                return
        chunks: list[bytes] = []
        size = 0
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                if self.timeout_s:
                    left = max(0.0, deadline - time.monotonic())
                    message = await asyncio.wait_for(receive(), left)
                else:
                    message = await receive()
            except TimeoutError:
                await _send_json(
                    send,
                    408,
                    f"the request body did not arrive within {self.timeout_s:g} s: send the "
                    "whole request at once",
                    close=True,
                )
                return
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _send_json(send, 413, self._too_large(None))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        content_type = (_header(scope, b"content-type") or b"").split(b";")[0].strip().lower()
        if body and content_type.endswith(_JSON_TYPES):
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as e:
                await _send_json(
                    send,
                    400,
                    f"the request body is not valid UTF-8 (byte 0x{body[e.start]:02x} at "
                    f"offset {e.start}): send the JSON encoded as UTF-8",
                )
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class RequestContextMiddleware:
    """Security headers on every response, one JSON log line and metrics per request.

    An unexpected exception becomes a logged 500 with a JSON body (never a traceback).
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, log_requests: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self.log_requests = log_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path: str = scope.get("path", "")
        policy = DOCS_CONTENT_SECURITY_POLICY if path in DOCS_PATHS else CONTENT_SECURITY_POLICY
        extra: Iterable[tuple[bytes, bytes]] = (
            (b"content-security-policy", policy.encode()),
            *_COMMON_HEADERS,
        )
        status = 500
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            app_logger.exception(
                json.dumps({"event": "unhandled_error", "method": scope["method"], "path": path})
            )
            status = 500
            if not started:
                await send_with_headers(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send(
                    {
                        "type": "http.response.body",
                        "body": b'{"detail":"internal error: the request was logged"}',
                    }
                )
        finally:
            seconds = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe_request(scope["method"], template, status, seconds)
            if self.log_requests:
                log_event(
                    access_logger,
                    logging.INFO,
                    "request",
                    method=scope["method"],
                    path=path,
                    status=status,
                    ms=round(seconds * 1000.0, 3),
                )
