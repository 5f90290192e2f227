"""gRPC over the HTTP/2 connections of `connection.py`: one `Call` per stream, and the server.

A call reads the length-prefixed messages of its stream (gzip/deflate when the client
compressed them), runs the method's handler as one task in the server's event loop, and
answers with response headers, messages and trailers (`grpc-status`, `grpc-message`). The
client's `grpc-timeout` cancels the handler at its deadline (DEADLINE_EXCEEDED); a client that
resets the stream cancels it too. Request messages over the size limit are refused before
they are buffered.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import socket
import time
import zlib
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from modelyard.fronts.h2.connection import Fields, H2Connection, Stream
from modelyard.fronts.h2.limits import Admission, Budget, ConnectionLimits, Full

log = logging.getLogger("modelyard.grpc")


class Status(enum.IntEnum):
    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class RPCError(Exception):
    """Ends a call with this status and message."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:  # pickled whole (modelyard on Ray sends it back)
        return type(self), (self.status, self.message)


@dataclass(frozen=True)
class Method:
    """A handler and how its messages travel. A unary handler is `async (request, context) ->
    response`; with `client_streaming` the request is an async iterator of messages; with
    `server_streaming` the handler is an async generator of responses."""

    handler: Callable[[Any, Context], Any]
    parse: Callable[[bytes], Any]
    client_streaming: bool = False
    server_streaming: bool = False


class Context:
    """What a handler may ask about its call."""

    __slots__ = ("deadline", "metadata")

    def __init__(self, metadata: list[tuple[str, str]], deadline: float | None) -> None:
        self.metadata = metadata
        self.deadline = deadline

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return self.metadata

    def time_remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()


RESPONSE_HEADERS: Fields = (
    (":status", "200"),
    ("content-type", "application/grpc"),
    ("grpc-accept-encoding", "identity,deflate,gzip"),
)
OK_TRAILERS: Fields = (("grpc-status", "0"),)
#: What every call's answer repeats: kept in the client's HPACK table.
INDEXED = frozenset(RESPONSE_HEADERS[1:] + OK_TRAILERS)
MESSAGE_LIMIT = 1024  # characters of grpc-message kept: its header stays under one frame
TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_END = object()  # closes a streaming call's request queue


def trailers(status: Status, message: str) -> Fields:
    if status == Status.OK and not message:
        return OK_TRAILERS
    text = quote(message[:MESSAGE_LIMIT], safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")
    return (("grpc-status", str(int(status))), ("grpc-message", text))


def parse_timeout(value: str) -> float:
    unit = TIMEOUT_UNITS.get(value[-1:])
    if unit is None or not value[:-1].isdigit():
        raise RPCError(Status.INTERNAL, f"malformed grpc-timeout {value!r}")
    return int(value[:-1]) * unit


def _length(data: bytes | bytearray) -> int:
    """The length in a gRPC message's 5-byte prefix."""
    return int.from_bytes(data[1:5], "big")


class Call:
    """One RPC: the stream's `Receiver`, and the task that runs its handler."""

    def __init__(self, server: GRPCServer, stream: Stream, method: Method) -> None:
        self.server = server
        self.stream = stream
        self.method = method
        self.buffer = bytearray()
        self.request: bytes | None = None
        self.queue: asyncio.Queue[Any] | None = None
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.expired = False
        self.headers_sent = False
        self.encoding = "identity"
        self.context = Context([], None)
        self.held = 0  # bytes of the body budget this call's request holds
        self.counted = False  # whether the message being buffered has taken its bytes

    def begin(self) -> None:
        """Read the call's headers; a streaming call's handler starts now, a unary one's once
        its request has arrived."""
        metadata = [(k, v) for k, v in self.stream.headers if not k.startswith(":")]
        deadline = None
        for key, value in metadata:
            if key == "grpc-timeout":
                try:
                    seconds = parse_timeout(value)
                except RPCError as exc:
                    self._finish(exc.status, exc.message)
                    return
                deadline = time.monotonic() + seconds
                self.timer = asyncio.get_running_loop().call_later(seconds, self._expire)
            elif key == "grpc-encoding":
                self.encoding = value
        self.context = Context(metadata, deadline)
        if self.method.client_streaming:
            self.queue = asyncio.Queue()
            self._start(self._requests())
        else:
            self.server.arriving(self)

    def too_slow(self) -> None:
        """The sweep's verdict: the request did not arrive within the body deadline."""
        seconds = self.server.limits.body_timeout_s
        self._refuse(
            Status.DEADLINE_EXCEEDED,
            f"the request message took over {seconds:g} s to arrive (--body-timeout)",
        )

    # ---- the request side (Receiver) -----------------------------------------------------

    def data(self, chunk: bytes) -> None:
        try:
            if self.buffer or len(chunk) < 5 or _length(chunk) != len(chunk) - 5:
                self.buffer += chunk
                self._messages()
            else:  # one whole message in one frame
                self._hold(self._within_limit(len(chunk) - 5))
                self._message(chunk[0], chunk[5:])
        except RPCError as exc:
            self._refuse(exc.status, exc.message)

    def _messages(self) -> None:
        buffer = self.buffer
        while len(buffer) >= 5:
            length = self._within_limit(_length(buffer))
            if not self.counted:
                self._hold(length)
                self.counted = True
            if len(buffer) < 5 + length:
                return
            flag, payload = buffer[0], bytes(buffer[5 : 5 + length])
            del buffer[: 5 + length]
            self.counted = False
            self._message(flag, payload)

    def _within_limit(self, length: int) -> int:
        """A message's length, refused (before it is buffered) when over the limit."""
        limit = self.server.max_message_bytes
        if length > limit:
            raise RPCError(
                Status.RESOURCE_EXHAUSTED,
                f"Received message larger than max ({length} vs. {limit})",
            )
        return length

    def _hold(self, length: int) -> None:
        """A unary call's request counts against the body budget until the call ends
        (a streaming call's messages are handed on as they come)."""
        budget = self.server.budget
        if budget is None or self.queue is not None:
            return
        if not budget.take(length):
            raise RPCError(
                Status.RESOURCE_EXHAUSTED,
                f"the server holds {budget.used} bytes of requests, its budget is "
                f"{budget.limit} (--max-body-memory); retry shortly",
            )
        self.held += length

    def _release(self) -> None:
        if self.held and self.server.budget is not None:
            self.server.budget.give(self.held)
            self.held = 0

    def _message(self, flag: int, payload: bytes) -> None:
        if flag:
            payload = self._inflate(payload)
        if self.queue is not None:
            self.queue.put_nowait(payload)
        elif self.request is None:
            self.request = payload
        else:
            raise RPCError(Status.UNIMPLEMENTED, "a unary method was sent more than one message")

    def _inflate(self, payload: bytes) -> bytes:
        wbits = WBITS.get(self.encoding)
        if wbits is None:
            raise RPCError(
                Status.UNIMPLEMENTED,
                f"grpc-encoding {self.encoding!r} is not served (gzip, deflate)",
            )
        limit = self.server.max_message_bytes
        try:
            inflated = zlib.decompressobj(wbits).decompress(payload, limit + 1)
        except zlib.error as exc:
            raise RPCError(Status.INTERNAL, f"cannot inflate a request message: {exc}") from None
        if len(inflated) > limit:
            raise RPCError(
                Status.RESOURCE_EXHAUSTED,
                f"Received message larger than max (over {limit} bytes once inflated)",
            )
        return inflated

    def end(self) -> None:
        if not self.stream.open:
            return
        if self.buffer:
            self._refuse(Status.INTERNAL, "the request ended inside a message")
        elif self.queue is not None:
            self.queue.put_nowait(_END)
        elif self.request is None:
            self._refuse(Status.UNIMPLEMENTED, "a unary call sent no request message")
        else:
            self._start(self.request)

    def reset(self) -> None:
        self._cancel_timer()
        self.server.arrived(self)
        if self.task is not None:
            self.task.cancel()
        else:
            self._release()

    # ---- running the handler -------------------------------------------------------------

    def _start(self, request: bytes | AsyncIterator[Any]) -> None:
        self.server.arrived(self)
        self.task = self.server.spawn(self._run(request))

    async def _requests(self) -> AsyncIterator[Any]:
        assert self.queue is not None
        while (payload := await self.queue.get()) is not _END:
            yield self._parse(payload)

    def _parse(self, payload: bytes) -> Any:
        try:
            return self.method.parse(payload)
        except Exception as exc:  # protobuf's DecodeError: the client sent it (grpc-go says
            # INTERNAL; the client is the one to fix it, so INVALID_ARGUMENT, as HTTP's 400)
            raise RPCError(
                Status.INVALID_ARGUMENT, f"cannot parse the request message: {exc}"
            ) from None

    async def _run(self, request: bytes | AsyncIterator[Any]) -> None:
        try:
            if isinstance(request, bytes):
                request = self._parse(request)
            result = self.method.handler(request, self.context)
            if not self.method.server_streaming:
                self._answer(await result)
                return
            async for response in result:
                self._send(response)
            self._finish(Status.OK, "")
        except RPCError as exc:
            self._finish(exc.status, exc.message)
        except asyncio.CancelledError:
            if self.expired:
                self._finish(Status.DEADLINE_EXCEEDED, "the call ran past its deadline")
        except Exception as exc:
            log.exception("gRPC handler failed")
            self._finish(Status.INTERNAL, f"unexpected error: {exc!r}")
        finally:
            self._release()

    def _message_bytes(self, response: Any) -> bytes:
        payload: bytes = response.SerializeToString()
        limit = self.server.max_message_bytes
        if len(payload) > limit:
            raise RPCError(
                Status.RESOURCE_EXHAUSTED,
                f"Sent message larger than max ({len(payload)} vs. {limit})",
            )
        return b"\x00" + len(payload).to_bytes(4, "big") + payload

    def _send(self, response: Any) -> None:
        """One message of a streaming answer; headers first."""
        data = self._message_bytes(response)
        if not self.headers_sent:
            self.headers_sent = True
            self.stream.send_headers(RESPONSE_HEADERS)
        self.stream.send_data(data)

    def _answer(self, response: Any) -> None:
        """A unary call's whole answer, in one write when the windows allow."""
        data = self._message_bytes(response)
        self._cancel_timer()
        self.headers_sent = True
        self.stream.send_answer(RESPONSE_HEADERS, data, OK_TRAILERS)

    def _finish(self, status: Status, message: str) -> None:
        self._cancel_timer()
        self.server.arrived(self)
        block = trailers(status, message)
        if not self.headers_sent:  # trailers-only
            self.headers_sent = True
            block = RESPONSE_HEADERS + block
        self.stream.send_headers(block, end=True)

    def _refuse(self, status: Status, message: str) -> None:
        """End the call now, before or instead of its handler."""
        self.buffer.clear()
        if self.task is None:
            self._release()
        if self.task is not None:
            self.task.cancel()
        self._finish(status, message)

    def _expire(self) -> None:
        self.expired = True
        if self.task is not None:
            self.task.cancel()
        else:
            self._finish(Status.DEADLINE_EXCEEDED, "the call ran past its deadline")

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class _Refused:
    """The receiver of a stream answered at once (unknown method, bad headers)."""

    def data(self, chunk: bytes) -> None:
        pass

    def end(self) -> None:
        pass

    def reset(self) -> None:
        pass


class GRPCServer:
    """gRPC on one listening socket (bound by `bind`), in the running event loop."""

    def __init__(
        self,
        methods: dict[str, Method],
        sock: socket.socket,
        max_message_bytes: int,
        limits: ConnectionLimits | None = None,
        admission: Admission | None = None,
        budget: Budget | None = None,
    ) -> None:
        self.methods = methods
        self.budget = budget
        self.sock = sock
        self.max_message_bytes = max_message_bytes
        self.limits = limits or ConnectionLimits()
        self.admission = admission
        self.server: asyncio.AbstractServer | None = None
        self.connections: set[H2Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.sweeper: asyncio.Task[None] | None = None
        #: Unary calls whose request is still arriving, and the loop time it must be in by.
        self.pending: dict[Call, float] = {}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self._connect, sock=self.sock)
        self.sweeper = loop.create_task(self._sweep())

    def _connect(self) -> asyncio.Protocol:
        if self.admission is not None and not self.admission.enter("gRPC"):
            return Full()
        limits = self.limits
        connection = H2Connection(
            self._open, self._closed, INDEXED, limits.max_headers, limits.max_header_bytes
        )
        self.connections.add(connection)
        return connection

    def _closed(self, connection: H2Connection) -> None:
        self.connections.discard(connection)
        if self.admission is not None:
            self.admission.leave()

    def arriving(self, call: Call) -> None:
        self.pending[call] = asyncio.get_running_loop().time() + self.limits.body_timeout_s

    def arrived(self, call: Call) -> None:
        self.pending.pop(call, None)

    async def _sweep(self, every: float = 0.5) -> None:
        loop = asyncio.get_running_loop()
        limits = self.limits
        while True:
            await asyncio.sleep(every)
            now = loop.time()
            for connection in list(self.connections):
                connection.check(now, limits.header_timeout_s, limits.idle_timeout_s)
            for call, deadline in list(self.pending.items()):
                if now > deadline:
                    call.too_slow()

    def _open(self, stream: Stream) -> Any:
        path = next((v for k, v in stream.headers if k == ":path"), "")
        method = self.methods.get(path)
        if method is None:
            stream.send_headers(
                RESPONSE_HEADERS + trailers(Status.UNIMPLEMENTED, f"unknown method {path}"), True
            )
            return _Refused()
        call = Call(self, stream, method)
        call.begin()
        return call

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def close_listener(self) -> None:
        """Take no new connections; those open go on."""
        if self.server is not None:
            self.server.close()

    async def stop(self, grace: float) -> None:
        """Refuse new calls, let open ones finish for `grace` seconds, then cancel the rest."""
        if self.sweeper is not None:
            self.sweeper.cancel()
        if self.server is not None:
            self.server.close()
        for connection in list(self.connections):
            connection.go_away()
        idle = [asyncio.ensure_future(c.idle.wait()) for c in self.connections]
        if idle:
            await asyncio.wait(idle, timeout=grace)
        for waiter in idle:
            waiter.cancel()
        for connection in list(self.connections):
            connection.close()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=1.0)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port; `OSError` when the address cannot be bound."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock
