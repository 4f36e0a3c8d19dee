"""Pure ASGI middleware (no BaseHTTPMiddleware, which would hide client disconnects from the routes):

- RequestTrackingMiddleware: a request id (the client's X-Request-ID when sane, else a new one) on
  `request.state.request_id` and the response, the arrival time, and the per-request metrics;
- BodyLimitMiddleware: 413 for a body over max_body_bytes, from Content-Length before reading
  anything, and by counting while reading a body without one (chunked).
"""

from __future__ import annotations

import json
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import PROBLEM_MEDIA_TYPE, BodyTooLarge, problem_body
from .metrics import Metrics

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestTrackingMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, static_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.metrics = metrics
        # Paths that are their own route template, to label answers given before routing (413s).
        self.static_paths = static_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.monotonic()
        given = _header(scope, b"x-request-id")
        request_id = given if given and REQUEST_ID_PATTERN.match(given) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["arrival"] = start
        status = 500  # when the app raises before answering, the server error middleware sends a 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None)  # the template, never the raw path
            if endpoint is None:
                endpoint = scope["path"] if scope["path"] in self.static_paths else "other"
            self.metrics.requests.labels(endpoint=endpoint, code=str(status)).inc()
            self.metrics.request_duration.labels(endpoint=endpoint).observe(time.monotonic() - start)


class BodyLimitMiddleware:
    """413 for bodies over the limit. The rest of an oversized body (up to DRAIN_BYTES) is read and
    discarded before answering: closing a socket with unread data resets the connection, and the
    client would see a reset instead of the 413."""

    DRAIN_BYTES = 64 * 2**20

    def __init__(self, app: ASGIApp, max_body_bytes: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            if int(declared) <= limit + self.DRAIN_BYTES:
                await self._drain(receive)
            await self._reject(scope, send, f"the body has {int(declared)} bytes; the limit is {limit}")
            return

        received = 0
        rejected = False

        async def limited_receive() -> Message:
            nonlocal received, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    rejected = True
                    if message.get("more_body", False):
                        await self._drain(receive)
                    await self._reject(scope, send, f"the request body exceeds the limit of {limit} bytes")
                    # The app sees a disconnect and stops; whatever it answers is dropped below.
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not rejected:
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not rejected:
                raise

    async def _drain(self, receive: Receive) -> None:
        """Read and drop the rest of the body, up to DRAIN_BYTES."""
        drained = 0
        while drained <= self.DRAIN_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def _reject(self, scope: Scope, send: Send, detail: str) -> None:
        error = BodyTooLarge(detail)
        state = scope.get("state", {})
        body = problem_body(
            error.status, error.title, detail, slug=error.slug, instance=scope.get("path", ""),
            request_id=state.get("request_id"),
        )  # fmt: skip
        payload = json.dumps(body).encode()
        scope.setdefault("state", {})["answered"] = True  # the app's own error answer is not counted
        self.metrics.failures.labels(reason=error.reason).inc()
        headers = [
            (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
            (b"content-length", str(len(payload)).encode()),
        ]
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None
