"""What every HTTP front shares: reading a bounded body, JSON responses, the error table."""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive

from modelyard.errors import Code, InvalidArgument, ModelyardError, PayloadTooLarge

#: The one table from protocol-neutral codes to HTTP statuses.
HTTP_STATUS = {
    Code.INVALID_ARGUMENT: 400,
    Code.FAILED_PRECONDITION: 400,
    Code.PAYLOAD_TOO_LARGE: 413,
    Code.UNAUTHENTICATED: 401,
    Code.NOT_FOUND: 404,
    Code.UNAVAILABLE: 503,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.DEADLINE_EXCEEDED: 504,
    Code.INTERNAL: 500,
}


def json_response(
    content: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY),
        status,
        headers,
        media_type="application/json",
    )


Handler = Callable[[Request], Awaitable[Response]]


def error_response(exc: ModelyardError) -> Response:
    status = HTTP_STATUS[exc.code]
    headers = {"Retry-After": "1"} if status in (429, 503) else None
    return json_response({"error": exc.message}, status, headers)


def guard(
    handler: Handler, render: Callable[[ModelyardError], Response] = error_response
) -> Handler:
    """The handler, answering a ModelyardError with `render` (the front's error table)."""

    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except ModelyardError as exc:
            return render(exc)

    return guarded


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, decompressed if it says so, refused past `limit` bytes."""
    headers = request.headers
    return await receive_body(
        request.receive, headers.get("content-length"), headers.get("content-encoding"), limit
    )


async def receive_body(
    receive: Receive, declared: str | None, encoding: str | None, limit: int
) -> bytes:
    """Read an ASGI request body within `limit` bytes (before and after decompression)."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"request body of {declared} bytes is over the limit of {limit} "
            "bytes (--max-request-bytes)"
        )
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidArgument("the client went away before sending its whole request")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"request body is over the limit of {limit} bytes (--max-request-bytes)"
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if encoding is None or encoding.lower() == "identity":
        return body
    return _decompress(body, encoding.lower(), limit)


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}.get(encoding)
    if wbits is None:
        raise InvalidArgument(f"unsupported Content-Encoding {encoding!r}; use gzip or deflate")
    inflater = zlib.decompressobj(wbits)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidArgument(f"body is not valid {encoding} data: {exc}") from exc
    if len(data) > limit:
        raise PayloadTooLarge(f"decompressed body is over the limit of {limit} bytes")
    return data


def parse_json(data: bytes | memoryview) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"malformed JSON: {exc}") from exc


async def until_disconnect(request: Request, work: Awaitable[Response]) -> Response:
    """Run `work`, cancelling it (which aborts its generations) if the client goes away first;
    the answer is then 499, which nobody reads."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return Response(status_code=499)
    return task.result()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
