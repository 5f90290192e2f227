"""bench's HTTP/1.1 client against small servers of our own on a real socket: the three ways an
answer's body ends, keep-alive and its end, and each failure's kind."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from modelyard.bench.http1 import HTTP1, Failure
from tests.server_process import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    return head + await reader.readexactly(length)


def answering(*answers: bytes) -> tuple[Handler, list[int]]:
    """A handler that answers each request on a connection with the next of `answers`
    (closing after the last), and the list of connections it saw."""
    seen: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(1)
        for answer in answers:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                break
            writer.write(answer)
            await writer.drain()
        writer.close()

    return handle, seen


def closing(handler: Handler) -> Handler:
    """The handler, its connection closed however it ends (cancelled at the loop's end too)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    return handle


async def exchange(handler: Handler, count: int, timeout: float = 5) -> tuple[list[object], int]:
    port = free_port()
    server = await asyncio.start_server(closing(handler), "127.0.0.1", port)
    client = HTTP1(f"http://127.0.0.1:{port}", {"Authorization": "Bearer k"}, timeout, 1)
    request = client.request("/v2/models/m/infer", b'{"inputs": []}', "application/json")
    results: list[object] = []
    for _ in range(count):
        try:
            results.append(await client.send(request))
        except Failure as exc:
            results.append(exc.kind)
    await client.close()
    server.close()
    await server.wait_closed()
    return results, port


def test_lengths_chunks_and_close_delimited_bodies() -> None:
    sized = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    chunked = b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    handler, seen = answering(sized, chunked, sized)
    results, _ = asyncio.run(exchange(handler, 3))
    assert results == [200, 400, 200] and len(seen) == 1  # one kept-alive connection
    until_close = b"HTTP/1.1 503 Service Unavailable\r\n\r\nbusy"
    handler, seen = answering(until_close)
    results, _ = asyncio.run(exchange(handler, 2))
    assert results == [503, 503] and len(seen) == 2  # the body ended the connection


def test_a_connection_the_server_closed_while_idle_is_replaced() -> None:
    close = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    handler, seen = answering(close)  # answers once, then closes the kept connection

    async def twice() -> list[object]:
        port = free_port()
        server = await asyncio.start_server(closing(handler), "127.0.0.1", port)
        client = HTTP1(f"http://127.0.0.1:{port}", {}, 5, 1)
        request = client.request("/", b"", "text/plain")
        first = await client.send(request)
        await asyncio.sleep(0.1)  # the server's FIN arrives
        second = await client.send(request)
        await client.close()
        server.close()
        await server.wait_closed()
        return [first, second]

    assert asyncio.run(twice()) == [200, 200] and len(seen) == 2


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (b"", "closed"),  # closed without a word
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "closed"),
        (b"nonsense\r\n\r\n", "bad answer"),
    ],
)
def test_failures_are_named(answer: bytes, kind: str) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        writer.close()

    results, _ = asyncio.run(exchange(handle, 1))
    assert results == [kind]


def test_timeouts_and_refused_connections() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes

    results, _ = asyncio.run(exchange(silent, 1, timeout=0.2))
    assert results == ["timeout"]

    async def refused() -> str:
        client = HTTP1(f"http://127.0.0.1:{free_port()}", {}, 1, 1)
        try:
            await client.send(client.request("/", b"", "text/plain"))
        except Failure as exc:
            return exc.kind
        return "answered"

    assert asyncio.run(refused()) == "connect"
