"""modelyard's gRPC server (fronts/h2) in this test's event loop, on a real socket, against
grpcio's own client: unary and streaming calls, large messages through flow control,
compression, deadlines, cancellation, limits, statuses, and a graceful stop."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest

from modelyard.fronts.h2.connection import (
    COMPRESSION_ERROR,
    CONTINUATION,
    DATA,
    FRAME_SIZE_ERROR,
    GOAWAY,
    HEADERS,
    PING,
    PROTOCOL_ERROR,
    PUSH_PROMISE,
    SETTINGS,
    frame,
)
from modelyard.fronts.h2.limits import ConnectionLimits
from modelyard.fronts.h2.rpc import (
    Context,
    GRPCServer,
    Method,
    RPCError,
    Status,
    bind,
    parse_timeout,
)

PATH = "/test.Blobs/"


class Blob:
    """A message that is its own bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def SerializeToString(self) -> bytes:
        return self.data


class Handlers:
    """The test service; `cancelled` counts handlers that were cancelled."""

    def __init__(self) -> None:
        self.cancelled = 0
        self.calls = 0

    async def echo(self, request: Blob, context: Context) -> Blob:
        self.calls += 1
        key = dict(context.invocation_metadata()).get("x-key", "")
        return Blob(request.data + key.encode())

    async def hang(self, request: Blob, context: Context) -> Blob:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return request

    async def slow(self, request: Blob, context: Context) -> Blob:
        await asyncio.sleep(0.3)
        return request

    async def fail(self, request: Blob, context: Context) -> Blob:
        raise RPCError(Status.NOT_FOUND, "no model called \u00e9t\u00e9 (100%)")

    async def crash(self, request: Blob, context: Context) -> Blob:
        raise ValueError("a bug")

    async def reverse(self, requests: AsyncIterator[Blob], context: Context) -> AsyncIterator[Blob]:
        async for request in requests:
            yield Blob(request.data[::-1])

    def methods(self) -> dict[str, Method]:
        unary = {"Echo": self.echo, "Hang": self.hang, "Slow": self.slow, "Fail": self.fail}
        methods = {PATH + name: Method(handler, Blob) for name, handler in unary.items()}
        methods[PATH + "Crash"] = Method(self.crash, Blob)
        methods[PATH + "Reverse"] = Method(self.reverse, Blob, True, True)
        return methods


Body = Callable[[grpc.aio.Channel, Handlers], Awaitable[None]]


def _serve(body: Body, limit: int = 1 << 26, **options: Any) -> Handlers:
    handlers = Handlers()

    async def run() -> None:
        server = GRPCServer(handlers.methods(), bind("127.0.0.1", 0), limit)
        await server.start()
        port = server.sock.getsockname()[1]
        channel_options = [("grpc.max_receive_message_length", 1 << 26)]
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=channel_options, **options
        ) as channel:
            try:
                await body(channel, handlers)
            finally:
                await server.stop(1.0)

    asyncio.run(run())
    return handlers


def _unary(channel: grpc.aio.Channel, name: str) -> Any:
    return channel.unary_unary(
        PATH + name, request_serializer=lambda b: b, response_deserializer=lambda b: b
    )


def test_unary_calls_with_metadata_many_at_once() -> None:
    async def body(channel: grpc.aio.Channel, handlers: Handlers) -> None:
        echo = _unary(channel, "Echo")
        assert await echo(b"ping", metadata=(("x-key", "k"),)) == b"pingk"
        assert await echo(b"") == b""
        answers = await asyncio.gather(*(echo(str(i).encode()) for i in range(300)))
        assert answers == [str(i).encode() for i in range(300)]

    assert _serve(body).calls == 302


def test_large_messages_cross_the_flow_control_windows_both_ways() -> None:
    blob = bytes(range(256)) * (40 * 1024)  # 10 MiB, past every initial window

    async def body(channel: grpc.aio.Channel, handlers: Handlers) -> None:
        answers = await asyncio.gather(*(_unary(channel, "Echo")(blob) for _ in range(3)))
        assert answers == [blob] * 3

    _serve(body)


def test_compressed_requests_are_inflated() -> None:
    async def body(channel: grpc.aio.Channel, handlers: Handlers) -> None:
        assert await _unary(channel, "Echo")(b"z" * 100_000) == b"z" * 100_000

    _serve(body, compression=grpc.Compression.Gzip)


def test_a_message_over_the_limit_is_refused_before_the_handler() -> None:
    async def body(channel: grpc.aio.Channel, handlers: Handlers) -> None:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _unary(channel, "Echo")(b"x" * 2000)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "larger than max (2000 vs. 1024)" in str(err.value.details())
        assert await _unary(channel, "Echo")(b"x" * 1000) == b"x" * 1000  # the channel goes on

    assert _serve(body, limit=1024).calls == 1


def test_statuses_messages_and_unknown_methods() -> None:
    async def body(channel: grpc.aio.Channel, handlers: Handlers) -> None:
        cases = [
            ("Fail", grpc.StatusCode.NOT_FOUND, "no model called \u00e9t\u00e9 (100%)"),
            ("Crash", grpc.StatusCode.INTERNAL, "unexpected error: ValueError('a bug')"),
            ("Nope", grpc.StatusCode.UNIMPLEMENTED, f"unknown method {PATH}Nope"),
        ]
        for name, code, message in cases:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await _unary(channel, name)(b"")
            assert (err.value.code(), err.value.details()) == (code, message)

    _serve(body)


def test_the_deadline_cancels_the_handler() -> None:
    async def body(channel: grpc.aio.Channel, handlers: Handlers) -> None:
        began = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _unary(channel, "Hang")(b"", timeout=0.2)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - began < 5
        for _ in range(100):
            if handlers.cancelled:
                break
            await asyncio.sleep(0.01)

    assert _serve(body).cancelled == 1


def test_a_client_that_cancels_cancels_the_handler() -> None:
    async def body(channel: grpc.aio.Channel, handlers: Handlers) -> None:
        call = _unary(channel, "Hang")(b"")
        await asyncio.sleep(0.2)
        call.cancel()
        for _ in range(100):
            if handlers.cancelled:
                break
            await asyncio.sleep(0.01)
        assert await _unary(channel, "Echo")(b"after") == b"after"

    assert _serve(body).cancelled == 1


def test_a_stream_answers_each_request_as_it_comes() -> None:
    async def body(channel: grpc.aio.Channel, handlers: Handlers) -> None:
        call = channel.stream_stream(
            PATH + "Reverse", request_serializer=lambda b: b, response_deserializer=lambda b: b
        )()
        for word in (b"abc", b"", b"xyz" * 10_000):
            await call.write(word)
            assert await call.read() == word[::-1]
        await call.done_writing()
        assert await call.read() == grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK

    _serve(body)


def test_stop_lets_open_calls_finish_within_the_grace_then_cancels_the_rest() -> None:
    handlers = Handlers()

    async def run() -> None:
        server = GRPCServer(handlers.methods(), bind("127.0.0.1", 0), 1 << 20)
        await server.start()
        address = f"127.0.0.1:{server.sock.getsockname()[1]}"
        async with grpc.aio.insecure_channel(address) as channel:
            slow = asyncio.ensure_future(_unary(channel, "Slow")(b"done"))
            hung = asyncio.ensure_future(_unary(channel, "Hang")(b""))
            await asyncio.sleep(0.1)
            began = time.monotonic()
            await server.stop(1.0)
            assert 0.9 < time.monotonic() - began < 3
            assert await slow == b"done"
            with pytest.raises(grpc.aio.AioRpcError):
                await hung
        async with grpc.aio.insecure_channel(address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await _unary(channel, "Echo")(b"", timeout=2)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE

    asyncio.run(run())
    assert handlers.cancelled == 1


def test_bind_refuses_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            bind("127.0.0.1", taken.getsockname()[1])


@pytest.mark.parametrize(
    ("value", "seconds"), [("100m", 0.1), ("2S", 2.0), ("1H", 3600.0), ("250000u", 0.25)]
)
def test_grpc_timeout_units(value: str, seconds: float) -> None:
    assert parse_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "10", "1x", "-1S", "m"])
def test_malformed_grpc_timeouts_are_refused(value: str) -> None:
    with pytest.raises(RPCError):
        parse_timeout(value)


def _frames(data: bytes) -> list[tuple[int, int, bytes]]:
    """(type, stream, payload) of each frame in what the server sent."""
    frames, offset = [], 0
    while offset + 9 <= len(data):
        length = int.from_bytes(data[offset : offset + 3], "big")
        kind, stream = data[offset + 3], int.from_bytes(data[offset + 5 : offset + 9], "big")
        frames.append((kind, stream, data[offset + 9 : offset + 9 + length]))
        offset += 9 + length
    return frames


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(SETTINGS, 0, 0)


@pytest.mark.parametrize(
    ("sent", "code"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"x" * 20, PROTOCOL_ERROR),
        (PREFACE + b"\x10\x00\x01" + bytes(6), FRAME_SIZE_ERROR),  # a frame over 1 MiB
        (PREFACE + frame(CONTINUATION, 0x4, 1, b"\x82"), PROTOCOL_ERROR),
        (PREFACE + frame(SETTINGS, 0, 0, b"\x00" * 5), FRAME_SIZE_ERROR),
        (PREFACE + frame(HEADERS, 0x4, 1, b"\xbe"), COMPRESSION_ERROR),  # no such index
        (PREFACE + frame(HEADERS, 0x4, 2, b"\x82"), PROTOCOL_ERROR),  # an even stream id
        (PREFACE + frame(PUSH_PROMISE, 0x4, 1, bytes(5)), PROTOCOL_ERROR),
    ],
    ids=["preface", "frame-size", "continuation", "settings", "hpack", "even-id", "push"],
)
def test_a_client_that_breaks_the_protocol_gets_goaway(sent: bytes, code: int) -> None:
    async def run() -> list[tuple[int, int, bytes]]:
        server = GRPCServer(Handlers().methods(), bind("127.0.0.1", 0), 1 << 20)
        await server.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sock.getsockname()[1])
        writer.write(sent)
        received = await asyncio.wait_for(reader.read(), 5)  # until the server closes
        writer.close()
        await server.stop(0.1)
        return _frames(received)

    goaway = [payload for kind, _, payload in asyncio.run(run()) if kind == GOAWAY]
    assert [int.from_bytes(payload[4:8], "big") for payload in goaway] == [code]


def test_pings_are_answered_and_unknown_frames_ignored() -> None:
    async def run() -> list[tuple[int, int, bytes]]:
        server = GRPCServer(Handlers().methods(), bind("127.0.0.1", 0), 1 << 20)
        await server.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sock.getsockname()[1])
        writer.write(PREFACE + frame(0x42, 0, 0, b"??") + frame(PING, 0, 0, b"12345678"))
        received = b""
        while b"12345678" not in received:
            received += await asyncio.wait_for(reader.read(1024), 5)
        writer.close()
        await server.stop(0.1)
        return _frames(received)

    assert (PING, 0, b"12345678") in asyncio.run(run())


def test_a_unary_request_that_arrives_too_slowly_is_ended_and_frees_its_budget() -> None:
    """A message's prefix takes its length from the body budget; a request still incomplete
    at the body deadline ends with DEADLINE_EXCEEDED, and the bytes go back."""
    from modelyard.fronts.h2.hpack import encode_literal
    from modelyard.fronts.limits import BodyBudget

    fields = {
        ":method": "POST",
        ":scheme": "http",
        ":path": PATH + "Echo",
        "content-type": "application/grpc",
        "te": "trailers",
    }
    block = b"".join(encode_literal(k, v) for k, v in fields.items())
    sent = PREFACE + frame(HEADERS, 0x4, 1, block)
    sent += frame(DATA, 0, 1, b"\x00" + (1000).to_bytes(4, "big") + b"x" * 10)
    budget = BodyBudget(4096)

    async def run() -> tuple[bytes, list[int]]:
        limits = ConnectionLimits(body_timeout_s=0.3)
        server = GRPCServer(
            Handlers().methods(), bind("127.0.0.1", 0), 1 << 20, limits, None, budget
        )
        await server.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sock.getsockname()[1])
        writer.write(sent)
        held, received = [], b""
        await asyncio.sleep(0.1)
        held.append(budget.used)
        while b"--body-timeout" not in received:
            received += await asyncio.wait_for(reader.read(4096), 5)
        held.append(budget.used)
        writer.close()
        await server.stop(0.1)
        return received, held

    received, held = asyncio.run(run())
    assert held == [1000, 0]
    trailers = [payload for kind, stream, payload in _frames(received) if kind == HEADERS]
    assert any(b"grpc-status" in t and b"4" in t for t in trailers)
