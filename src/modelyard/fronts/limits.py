"""What one client may hold on the HTTP port (docs/security.md): header lines (bytes and count,
431), time to send a request's headers and its body (408), idle time between requests, open
connections (503 past the cap, shared with the gRPC port), and one memory budget for request
bodies in flight across every request (429 past it, logged).

uvicorn's httptools protocol is extended, not replaced: the checks ride on the parser's own
callbacks, and the deadlines are read by one sweep a second rather than a timer per request,
so the small-request path pays a few attribute writes.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any, ClassVar

import httptools
import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from modelyard.errors import ResourceExhausted
from modelyard.settings import Limits

log = logging.getLogger("modelyard.limits")

#: Open files kept for what is not a connection (model files, logs, pipes, the listeners).
FILES_RESERVE = 256
SWEEP_S = 0.5


class Throttled:
    """A warning logged at most once per `every` seconds, with how many were held back."""

    def __init__(self, logger: logging.Logger, every: float = 1.0) -> None:
        self.logger = logger
        self.every = every
        self.last = -every
        self.held = 0

    def warning(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            self.held += 1
            return
        held, self.held, self.last = self.held, 0, now
        suffix = f" ({held} more like it not logged)" if held else ""
        self.logger.warning(message + suffix, *args)


class ConnectionCap:
    """Open client connections, across the HTTP and gRPC ports, at most `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self.refusals = Throttled(log)

    def enter(self, port: str) -> bool:
        if self.open >= self.limit:
            self.refusals.warning(
                "refused a %s connection: %d are open, the cap (--max-connections)",
                port,
                self.open,
            )
            return False
        self.open += 1
        return True

    def leave(self) -> None:
        self.open -= 1


def connection_cap(configured: int, reserve: int = FILES_RESERVE) -> int:
    """Raise the soft open-files limit to the hard one, and the connection cap it allows:
    `configured` (0: as many as the limit leaves after `reserve`), never past that."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # pragma: no cover - a platform that refuses
            log.warning("could not raise the open-files limit from %d", soft)
    room = max(16, soft - reserve)
    if configured and configured > room:
        log.warning(
            "--max-connections %d lowered to %d: the open-files limit is %d (%d kept for "
            "models and logs)",
            configured,
            room,
            soft,
            reserve,
        )
    return min(configured, room) if configured else room


class BodyBudget:
    """Bytes of request bodies held by requests in flight, at most `limit` in all."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.refusals = Throttled(log)

    def take(self, size: int) -> bool:
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give(self, size: int) -> None:
        self.used -= size


class BodyGuard:
    """ASGI middleware: a request's body counts against the `BodyBudget` from its first
    byte read (its whole Content-Length at once, so concurrent big bodies do not each get
    part-way and all fail) until its response ends. Past the budget the read raises
    RESOURCE_EXHAUSTED, which the front answers as 429 in its own shape."""

    def __init__(self, app: ASGIApp, budget: BodyBudget) -> None:
        self.app = app
        self.budget = budget

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held = _Held(scope, receive, self.budget)
        try:
            await self.app(scope, held.receive, send)
        finally:
            if held.held:
                self.budget.give(held.held)


class _Held:
    __slots__ = ("budget", "held", "scope", "seen", "upstream")

    def __init__(self, scope: Scope, receive: Receive, budget: BodyBudget) -> None:
        self.scope = scope
        self.upstream = receive
        self.budget = budget
        self.held = 0
        self.seen = 0

    async def receive(self) -> Message:
        message = await self.upstream()
        body = message.get("body")
        if body:
            self.seen += len(body)
            if self.seen > self.held:
                self._take(max(self.seen, self._declared()) - self.held)
        return message

    def _declared(self) -> int:
        if self.held:  # declared sizes are taken whole on the first chunk
            return 0
        for name, value in self.scope["headers"]:
            if name == b"content-length":
                return int(value) if value.isdigit() else 0
        return 0

    def _take(self, size: int) -> None:
        budget = self.budget
        if not budget.take(size):
            budget.refusals.warning(
                "refused a request body of %d bytes with 429: %d bytes of bodies are in "
                "flight, the budget is %d (--max-body-memory)",
                size,
                budget.used,
                budget.limit,
            )
            raise ResourceExhausted(
                f"the server holds {budget.used} bytes of request bodies, its budget is "
                f"{budget.limit} (--max-body-memory); retry shortly"
            )
        self.held += size


class _Refused(Exception):
    """Raised in a parser callback to stop parsing a request over a limit."""


class LimitedHTTP(HttpToolsProtocol):
    """uvicorn's httptools protocol with modelyard's limits (a subclass per server, made by
    `http_protocol`, carries them)."""

    limits: ClassVar[Limits]
    cap: ClassVar[ConnectionCap]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_bytes = 0  # the request line and header fields parsed so far
        self.head_raw = 0  # bytes received while the headers were not yet whole
        self.header_count = 0
        self.in_head = False
        self.deadline = 0.0  # loop time by which the request being read must be whole
        self.admitted = False
        self.refusal: tuple[int, str] | None = None

    # ---- connections ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.cap.enter("HTTP"):
            self.connections.discard(self)
            self.refusal = (503, "too many connections; retry shortly")  # read nothing more
            self._answer(*self.refusal, retry=True)
            return
        self.admitted = True
        # a connection that sends nothing is idle from the start
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if self.admitted:
            self.admitted = False
            self.cap.leave()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refusal is not None:
            return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if self.refusal is not None:
                self._answer(*self.refusal)
            else:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            return
        if self.in_head:  # headers not yet whole: what they took so far counts
            self.head_raw += len(data)
            if self.head_raw > self.limits.max_header_bytes:
                self.refusal = self._too_large()
                self._answer(*self.refusal)

    # ---- parser callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_bytes = self.head_raw = self.header_count = 0
        self.in_head = True
        self.deadline = self.loop.time() + self.limits.header_timeout_s

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self.head_bytes += len(url)
        if self.head_bytes > self.limits.max_header_bytes:
            self._refuse(self._too_large())

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value)
        self.header_count += 1
        limits = self.limits
        if self.head_bytes > limits.max_header_bytes:
            self._refuse(self._too_large())
        if self.header_count > limits.max_headers:
            self._refuse(
                (431, f"more than {limits.max_headers} request header fields (--max-headers)")
            )
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.deadline = self.loop.time() + self.limits.body_timeout_s
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.deadline = 0.0
        super().on_message_complete()

    def _too_large(self) -> tuple[int, str]:
        limit = self.limits.max_header_bytes
        return 431, f"request line and header fields over {limit} bytes (--max-header-bytes)"

    def _refuse(self, refusal: tuple[int, str]) -> None:
        self.refusal = refusal
        raise _Refused(refusal[1])

    # ---- deadlines -----------------------------------------------------------------------

    def check_deadline(self, now: float) -> None:
        """Called by the sweep: a request still arriving past its deadline ends with 408
        (a client whose reads this side has paused is not slow)."""
        if not self.deadline or now < self.deadline or self.flow.read_paused:
            return
        self.deadline = 0.0
        what = "headers" if self.in_head else "body"
        limit = self.limits.header_timeout_s if self.in_head else self.limits.body_timeout_s
        slow.warning("closed a connection whose request %s took over %g s", what, limit)
        self.refusal = (408, f"the request {what} took over {limit:g} s to arrive")
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()
        else:
            self._answer(*self.refusal)

    def _answer(self, status: int, message: str, retry: bool = False) -> None:
        """Answer `status` with a JSON error and close, outside any request's cycle."""
        if self.transport.is_closing():
            return
        body = orjson.dumps({"error": message})
        head = [
            f"HTTP/1.1 {status} {_REASONS[status]}",
            "content-type: application/json",
            f"content-length: {len(body)}",
            "connection: close",
        ]
        if retry:
            head.append("retry-after: 1")
        self.transport.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        self.transport.close()


_REASONS = {
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}
slow = Throttled(log)


def http_protocol(limits: Limits, cap: ConnectionCap) -> type[LimitedHTTP]:
    """The protocol class for one server's uvicorn config."""
    return type("LimitedHTTP", (LimitedHTTP,), {"limits": limits, "cap": cap})


async def sweep(watched: list[set[Any]], every: float = SWEEP_S) -> None:
    """End requests that arrive too slowly on the connections of each set in `watched`
    (uvicorn servers' own), checking every `every` seconds."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(every)
        now = loop.time()
        for connections in watched:
            for connection in list(connections):
                if isinstance(connection, LimitedHTTP):
                    connection.check_deadline(now)
