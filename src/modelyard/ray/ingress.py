"""The ingress of modelyard on Ray Serve: one ASGI app in front of every model's deployment.

Where the time goes decides its shape. Ray's HTTP proxy hands every request to a replica as a
Ray call, and its own JSON route to a hand-written deployment ran ~190 req/s here, so
KServe inference takes modelyard's own path instead: the infer endpoint (`fronts/kserve_infer`:
body read, binary tensors decoded into numpy) runs in the ingress, and the request crosses to
the model's replica as an `InferRequest` of numpy arrays through Ray's object store, where the
replica's batcher batches it with the others. Every other HTTP request (OpenAI, Ollama, TGI,
metadata, the repository API) is sent whole to the replica of the model it names and its
answer streamed back, so every front keeps its exact wire format; a text generation goes with
its prompt's prefix named (`affinity.py`), for the router that sends a chat's turns to the
replica holding its KV cache (`routing.py`). Requests that name no model (health, listings)
go to every deployment and their answers are merged; `/metrics` is every replica's
(`metrics.py`). KServe v2 gRPC (`ray/kserve_grpc.py`) takes the same two paths.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol

import orjson
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.types import Receive, Scope, Send

from modelyard.core.types import InferRequest, InferResponse
from modelyard.errors import Internal, ModelyardError, NotFound
from modelyard.fronts.http_common import HTTP_STATUS, receive_body
from modelyard.fronts.kserve_infer import InferEndpoint, infer_target
from modelyard.ray.affinity import SESSION_HEADER, affinity_key
from modelyard.ray.replica import Answer

log = logging.getLogger("modelyard.ray")

Message = dict[str, Any]
#: The scope keys a replica's app reads; the rest (the server's state, extensions) stay here.
SCOPE_KEYS = (
    "http_version",
    "method",
    "scheme",
    "path",
    "raw_path",
    "query_string",
    "root_path",
    "headers",
    "client",
    "server",
)
#: Listings that name no model: each deployment's answer, merged (its own model loaded).
LISTINGS = {
    ("GET", "/v1/models"),
    ("GET", "/api/tags"),
    ("GET", "/api/ps"),
    ("POST", "/v2/repository/index"),
}
HEALTH = ("/v2/health/live", "/v2/health/ready")


class Remote(Protocol):
    """A model's deployment as the ingress calls it (a Ray `DeploymentHandle` in `app.py`)."""

    async def infer(self, request: InferRequest) -> InferResponse: ...

    def infer_stream(self, request: InferRequest) -> AsyncIterator[InferResponse]: ...

    def http(
        self, scope: dict[str, Any], body: bytes, affinity: str | None = None
    ) -> AsyncIterator[Message]:
        """The request answered by a replica of the model; `affinity` names the replica it
        should go to when it can (a text generation's prefix, `affinity.py`)."""
        ...

    async def grpc(self, method: str, request: Any) -> Any:
        """A unary KServe gRPC call run by a replica: its response, or its `RPCError`."""


class RayFront:
    """The ingress's ASGI app over the models' deployments (`remotes`, by model name);
    `GET /metrics` answers with `metrics()` (every replica's, `metrics.py`) when given."""

    def __init__(
        self,
        remotes: Mapping[str, Remote],
        max_request_bytes: int,
        metrics: Callable[[], Awaitable[bytes]] | None = None,
    ) -> None:
        if not remotes:
            raise ValueError("modelyard on Ray needs at least one model")
        self.remotes = dict(remotes)
        self.limit = max_request_bytes
        self.metrics = metrics
        self.infer_endpoint = InferEndpoint(self, max_request_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        target = infer_target(scope)
        if target is not None:
            await self.infer_endpoint(scope, receive, send, target)
            return
        try:
            body = await receive_body(receive, _header(scope, b"content-length"), None, self.limit)
        except ModelyardError as exc:
            await _answer(send, HTTP_STATUS[exc.code], orjson.dumps({"error": exc.message}))
            return
        await self.forward(scope, body, send)

    async def infer(self, request: InferRequest) -> InferResponse:
        """KServe inference on the model's replicas (the infer endpoint calls this)."""
        return await self._serving(request.model).infer(request)

    async def infer_stream(self, request: InferRequest) -> AsyncGenerator[InferResponse, None]:
        """Every response of one request, as the model's replica produces them."""
        async for response in self._serving(request.model).infer_stream(request):
            yield response

    def _serving(self, model: str) -> Remote:
        remote = self.remotes.get(model)
        if remote is None:
            raise NotFound(f"unknown model {model!r}; served: {sorted(self.remotes)}")
        return remote

    def remote_for(self, model: str | None) -> Remote:
        """The deployment of the model named; for a name no deployment has, one of them (its
        replica's server answers in its protocol's shape: 404, NOT_FOUND)."""
        return self.remotes.get(model or "") or next(iter(self.remotes.values()))

    async def forward(self, scope: Scope, body: bytes, send: Send) -> None:
        """Send a request to the replica of the model it names; merge what every deployment
        answers when it names none."""
        scope = {key: scope[key] for key in SCOPE_KEYS if key in scope}
        route = (scope["method"], scope["path"])
        if route == ("GET", "/metrics") and self.metrics is not None:
            await _answer(send, 200, await self.metrics(), CONTENT_TYPE_LATEST)
            return
        data = json_body(body, _header(scope, b"content-encoding"))
        model = model_named(scope["path"], data)
        if model is None and (route in LISTINGS or scope["path"] in HEALTH):
            await self._merged(scope, body, send)
            return
        key = None
        if scope["method"] == "POST":  # a text generation's prefix, for its replica's KV cache
            key = affinity_key(scope["path"], data, _header(scope, SESSION_HEADER))
        async for message in self.remote_for(model).http(scope, body, key):
            await send(message)

    async def _merged(self, scope: dict[str, Any], body: bytes, send: Send) -> None:
        answers = [await _collect(remote.http(scope, body)) for remote in self.remotes.values()]
        worst = max(status for status, _, _ in answers)
        if scope["path"] in HEALTH:  # ready when every deployment is
            await _answer(send, worst, answers[-1][2] if worst >= 400 else answers[0][2])
            return
        bodies = [orjson.loads(content) for status, _, content in answers if status == 200]
        await _answer(send, 200 if bodies else worst, orjson.dumps(merge_listings(bodies)))


class Coalescer:
    """The KServe requests for one model that arrive in the same event-loop turn cross to a
    replica as one Ray call (`send_many`), up to `limit` at a time. A Ray call costs the
    ingress more CPU than decoding a small request, so under load this is where the time
    went; the replica's batcher batches the group as if its requests had come one by one."""

    def __init__(
        self, send_many: Callable[[list[InferRequest]], Awaitable[list[Answer]]], limit: int
    ) -> None:
        self.send_many = send_many
        self.limit = limit
        self.pending: list[tuple[InferRequest, asyncio.Future[InferResponse]]] = []
        self.sending: set[asyncio.Task[None]] = set()

    async def infer(self, request: InferRequest) -> InferResponse:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[InferResponse] = loop.create_future()
        self.pending.append((request, future))
        if len(self.pending) == 1:  # the turn's first: send them all once the turn is done
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        pending, self.pending = self.pending, []
        for start in range(0, len(pending), self.limit):
            task = asyncio.ensure_future(self._send(pending[start : start + self.limit]))
            self.sending.add(task)
            task.add_done_callback(self.sending.discard)

    async def _send(self, group: list[tuple[InferRequest, asyncio.Future[InferResponse]]]) -> None:
        try:
            answers = await self.send_many([request for request, _ in group])
        except Exception as exc:  # the call itself failed: every request of the group
            answers = [exc if isinstance(exc, ModelyardError) else _internal(exc)] * len(group)
        for (_, future), answer in zip(group, answers, strict=True):
            if future.done():  # its client went away
                continue
            if isinstance(answer, BaseException):
                future.set_exception(answer)
            else:
                future.set_result(answer)


def _internal(exc: BaseException) -> Internal:
    log.error("a group of requests failed on its way to a replica: %r", exc)
    return Internal(f"the request failed on its way to the model's replica: {exc!r}")


def json_body(body: bytes, encoding: str | None) -> Any:
    """A request's JSON object body, parsed; None when it has none (empty, compressed, not
    JSON, not an object)."""
    if not body or encoding not in (None, "identity") or body[:1] != b"{":
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def model_named(path: str, data: Any) -> str | None:
    """The model a request is for: in its path (KServe v2) or its JSON body's `model` field
    (OpenAI, Ollama; `data` is the parsed body); None when it names none."""
    parts = path.split("/")
    if parts[1:3] == ["v2", "models"] and len(parts) > 3 and parts[3]:
        return parts[3]
    if parts[1:3] == ["v2", "repository"] and len(parts) > 4 and parts[3] == "models":
        return parts[4]
    name = data.get("model") if isinstance(data, dict) else None
    return name if isinstance(name, str) else None


def merge_listings(bodies: list[Any]) -> Any:
    """One listing from each deployment's (each lists its own model as loaded and the others
    as found on disk): a KServe repository index (a list), OpenAI's `data` or Ollama's
    `models`. A model some deployment lists as READY is listed by those entries alone."""
    if not bodies:
        return []
    first = bodies[0]
    field = next((f for f in ("data", "models") if isinstance(first, dict) and f in first), None)
    items = [item for body in bodies for item in (body[field] if field else body)]
    ready = {_name(item) for item in items if item.get("state") == "READY"}
    merged: dict[tuple[str, str], Any] = {}
    for item in items:
        name = _name(item)
        if name in ready and item.get("state") != "READY":
            continue
        merged.setdefault((name, str(item.get("version", ""))), item)
    listed = [merged[key] for key in sorted(merged)]
    return {**first, field: listed} if field else listed


def _name(item: dict[str, Any]) -> str:
    return str(item.get("id") or item.get("name") or item.get("model"))


async def _collect(messages: AsyncIterator[Message]) -> tuple[int, list[Any], bytes]:
    status, headers, chunks = 500, [], []
    async for message in messages:
        if message["type"] == "http.response.start":
            status, headers = message["status"], message.get("headers", [])
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
    return status, headers, b"".join(chunks)


async def _answer(send: Send, status: int, content: bytes, kind: str = "application/json") -> None:
    headers = [(b"content-type", kind.encode()), (b"content-length", b"%d" % len(content))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def _lifespan(receive: Receive, send: Send) -> None:
    """Nothing to start: the deployments load their models themselves."""
    while True:
        message = await receive()
        kind = message["type"].removeprefix("lifespan.")
        await send({"type": f"lifespan.{kind}.complete"})
        if kind == "shutdown":
            return
