"""The KServe v2 infer route as a bare ASGI endpoint: the hot path skips Starlette's routing,
middleware and request/response objects (the rest of the v2 routes stay on Starlette)."""

from __future__ import annotations

import gzip
import logging
import zlib
from typing import Protocol

import orjson
from starlette.types import Receive, Scope, Send

from modelyard.core.types import InferRequest, InferResponse
from modelyard.errors import ModelyardError
from modelyard.fronts.http_common import HTTP_STATUS, receive_body
from modelyard.fronts.kserve_codec import decode_request, encode_response

log = logging.getLogger("modelyard.kserve")

_JSON = (b"content-type", b"application/json")
_BINARY = (b"content-type", b"application/octet-stream")


def infer_target(scope: Scope) -> tuple[str, str | None] | None:
    """(model, version) when the request is `POST /v2/models/M[/versions/V]/infer`."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    parts = scope["path"].split("/")
    # ['', 'v2', 'models', M, 'infer'] or ['', 'v2', 'models', M, 'versions', V, 'infer']
    if parts[-1] != "infer" or parts[1:3] != ["v2", "models"]:
        return None
    if len(parts) == 5 and parts[3]:
        return parts[3], None
    if len(parts) == 7 and parts[4] == "versions" and parts[3] and parts[5]:
        return parts[3], parts[5]
    return None


class Infers(Protocol):
    """What the endpoint runs a request on: the core's `DataPlane`, or a stand-in that sends
    it elsewhere (modelyard on Ray sends it to the model's replicas)."""

    async def infer(self, request: InferRequest) -> InferResponse: ...


class InferEndpoint:
    def __init__(self, dataplane: Infers, max_request_bytes: int) -> None:
        self.dataplane = dataplane
        self.max_request_bytes = max_request_bytes

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, target: tuple[str, str | None]
    ) -> None:
        headers = _Headers(scope["headers"])
        try:
            status, extra, content = 200, *await self._infer(target, headers, receive)
        except ModelyardError as exc:
            status, extra, content = _error(exc)
        except Exception as exc:  # a bug: answer 500 for this request, log it once
            log.exception("infer on %s failed", scope["path"])
            status, extra, content = (
                500,
                [_JSON],
                orjson.dumps({"error": f"internal error: {exc!r}"}),
            )
        if headers.accept_encoding and status == 200:
            content = _compress(content, headers.accept_encoding, extra)
        extra.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": extra})
        await send({"type": "http.response.body", "body": content})

    async def _infer(
        self, target: tuple[str, str | None], headers: _Headers, receive: Receive
    ) -> tuple[list[tuple[bytes, bytes]], bytes]:
        body = await receive_body(
            receive, headers.content_length, headers.content_encoding, self.max_request_bytes
        )
        request = decode_request(body, headers.header_length, *target)
        response = await self.dataplane.infer(request)
        content, header_length = encode_response(request, response)
        if header_length is None:
            return [_JSON], content
        return [_BINARY, (b"inference-header-content-length", str(header_length).encode())], content


class _Headers:
    """The request headers the infer route reads, found in one pass."""

    __slots__ = ("accept_encoding", "content_encoding", "content_length", "header_length")

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self.content_length: str | None = None
        self.content_encoding: str | None = None
        self.header_length: str | None = None
        self.accept_encoding: bytes | None = None
        for name, value in raw:  # ASGI servers give the names lower-cased
            if name == b"content-length":
                self.content_length = value.decode("latin-1")
            elif name == b"content-encoding":
                self.content_encoding = value.decode("latin-1")
            elif name == b"inference-header-content-length":
                self.header_length = value.decode("latin-1")
            elif name == b"accept-encoding":
                self.accept_encoding = value


def _error(exc: ModelyardError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    status = HTTP_STATUS[exc.code]
    headers = [_JSON]
    if status in (429, 503):
        headers.append((b"retry-after", b"1"))
    return status, headers, orjson.dumps({"error": exc.message})


def _compress(content: bytes, accept: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    accept = accept.lower()
    if b"gzip" in accept:
        headers.append((b"content-encoding", b"gzip"))
        return gzip.compress(content, compresslevel=1)
    if b"deflate" in accept:
        headers.append((b"content-encoding", b"deflate"))
        return zlib.compress(content, 1)
    return content
