"""What every HTTP front shares: reading a bounded body, JSON responses, the error table."""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

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


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), status,
                    headers, media_type="application/json")


def error_response(exc: ModelyardError) -> Response:
    status = HTTP_STATUS[exc.code]
    headers = {"Retry-After": "1"} if status in (429, 503) else None
    return json_response({"error": exc.message}, status, headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, decompressed if it says so, refused past `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes is over the limit of {limit} "
                              "bytes (--max-request-bytes)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the limit of {limit} bytes "
                                  "(--max-request-bytes)")
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").lower()
    return _decompress(body, encoding, limit) if encoding != "identity" else body


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
