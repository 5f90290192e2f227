"""What every HTTP front shares: reading a bounded body, JSON responses, the error table, the
guard that answers every error in its front's shape, and streamed answers that hold their
model until their last byte."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from modelyard.errors import Code, Internal, InvalidArgument, ModelyardError, PayloadTooLarge

log = logging.getLogger("modelyard.http")

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
    Code.UNIMPLEMENTED: 501,
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


def error_body(exc: ModelyardError) -> Any:
    """KServe's and Ollama's error shape."""
    return {"error": exc.message}


def error_response(
    exc: ModelyardError,
    body: Callable[[ModelyardError], Any] = error_body,
    statuses: Mapping[Code, int] = HTTP_STATUS,
) -> Response:
    """The error in a front's shape and status; 429 and 503 say when to retry."""
    status = statuses[exc.code]
    headers = {"Retry-After": "1"} if status in (429, 503) else None
    return json_response(body(exc), status, headers)


def unexpected(exc: BaseException, where: str) -> Internal:
    """An error no layer translated: logged once with its traceback, answered as INTERNAL."""
    log.error("unexpected error in %s", where, exc_info=exc)
    return Internal(f"internal error ({type(exc).__name__}); the server log has the details")


def guard(
    handler: Handler,
    body: Callable[[ModelyardError], Any] = error_body,
    statuses: Mapping[Code, int] = HTTP_STATUS,
) -> Handler:
    """The handler, answering every error with the front's error `body` and `statuses`."""

    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except ModelyardError as exc:
            return error_response(exc, body, statuses)
        except Exception as exc:
            where = f"{request.method} {request.url.path}"
            return error_response(unexpected(exc, where), body, statuses)

    return guarded


class HeldStream(StreamingResponse):
    """A streamed answer that holds what it streams from (a model's lease, a generation)
    until its last byte is sent or its client leaves, even when the stream never starts:
    `hold` is closed after the response, whatever happened."""

    def __init__(
        self,
        content: AsyncIterator[bytes],
        hold: contextlib.AsyncExitStack,
        media_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(content, media_type=media_type, headers=headers)
        self.hold = hold

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.hold.aclose()


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


def replayed(request: Request, body: bytes) -> Request:
    """`request` with its (already read and inflated) `body` to be read again, for a handler
    that hands a request on to another after looking at its body."""
    dropped = (b"content-encoding", b"content-length")
    headers = [(k, v) for k, v in request.scope["headers"] if k not in dropped]
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return await request.receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request({**request.scope, "headers": headers}, receive)


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
