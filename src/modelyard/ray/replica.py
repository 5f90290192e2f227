"""One replica of a model's Ray Serve deployment: a modelyard core serving that one model.

The replica is modelyard's own server without its sockets: the `Modelyard` composition root
(model service, data plane with the model's batcher or LLM engine, LLM sessions, every HTTP
front) started through its ASGI lifespan, with only this model loaded. The ingress reaches it
two ways:

- `infer(InferRequest) -> InferResponse`: KServe inference with numpy arrays, which Ray
  carries through its object store (pickle protocol 5 buffers; no JSON between nodes), into
  this replica's batcher, so concurrent requests still batch here;
- `infer_stream(InferRequest)`: every response of one request as produced (KServe's
  ModelStreamInfer, a decoupled model's many);
- `http(scope, body)`: any other HTTP request (OpenAI, Ollama, TGI, metadata...), run by the
  replica's own ASGI app, its ASGI messages streamed back as produced (SSE and NDJSON streams
  included);
- `grpc(method, request)`: a KServe gRPC call other than inference (metadata, readiness,
  statistics, the repository), run by the replica's own `KServeGRPC` servicer, as the gRPC
  port of `modelyard serve` runs it; its protobuf response comes back.

Every answer it sends names it (`x-modelyard-replica`: its Ray replica id), and every
`metrics.PUSH_PERIOD_S` it reports its metrics, labelled with its deployment, replica id and
node, to the application's board, which the ingress's `/metrics` renders (`metrics.py`).

Ray's health check calls `check_health`, which fails while the model is not ready (a worker
process restarting, every instance hung), so Ray replaces a replica that stays unhealthy; and
its autoscaler calls `record_autoscaling_stats`: the model's queue depth, its signal. Ray is
imported where the replica runs, not by this module, so its helpers import without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.core.dataplane import DataPlane
from modelyard.core.types import InferRequest, InferResponse
from modelyard.errors import Internal, ModelyardError
from modelyard.fronts.h2.rpc import Context, RPCError, Status
from modelyard.fronts.kserve_grpc import SERVICE, KServeGRPC
from modelyard.ray import grpc_service  # noqa: F401  # the service's messages pickle
from modelyard.ray.metrics import PUSH_PERIOD_S, board_name, labelled
from modelyard.ray.scaling import QUEUE_METRIC
from modelyard.server import Modelyard
from modelyard.settings import Settings

log = logging.getLogger("modelyard.ray")

Message = dict[str, Any]
#: The response header naming the replica that answered (its `replica` label in /metrics).
REPLICA_HEADER = b"x-modelyard-replica"
#: What the replica answers for each request of a group: its response or its own error.
Answer = InferResponse | ModelyardError
#: The gRPC calls a replica answers with `grpc`: the unary ones; inference has its own methods.
UNARY_RPCS = frozenset(
    m.name for m in SERVICE.methods if not (m.client_streaming or m.server_streaming)
) - {"ModelInfer"}
#: The context of a call the ingress forwards (its API keys, if any, were checked there).
FORWARDED = Context([], None)


@dataclass(frozen=True)
class ReplicaOptions:
    """The server settings a replica takes from the `modelyard serve --ray` command line."""

    trust_pickle: bool = False
    workers: int = 0
    max_request_bytes: int = 64 * 1024 * 1024

    def settings(self, repository: Path, model: str) -> Settings:
        # explicit: the replica loads its one model (a pipeline: with its steps), not the
        # whole repository as "none" would
        return Settings(
            repositories=(repository,),
            model_control_mode="explicit",
            load_models=(model,),
            trust_pickle=self.trust_pickle,
            workers=self.workers,
            max_request_bytes=self.max_request_bytes,
        )


class ModelReplica:
    """The body of a model's deployment (`serve.deployment` wraps it in `app.py`)."""

    async def __init__(  # type: ignore[misc] # Ray awaits an async constructor
        self, repository: str, model: str, options: ReplicaOptions
    ) -> None:
        self.model = model
        self.board: Any = None
        self.reporter: asyncio.Task[None] | None = None
        self.server = Modelyard(options.settings(Path(repository), model))
        self.servicer = KServeGRPC(self.server.dataplane, self.server.models)
        self.lifespan = await Lifespan.start(self.server.app)
        entry = self.server.models.entries.get(model)
        if entry is None or not entry.versions:
            reason = entry.reason if entry is not None else "not in the repository"
            await self.lifespan.stop()
            raise RuntimeError(f"model {model!r} did not load: {reason}")
        self.app, self.labels = _whereabouts()
        self.header = (REPLICA_HEADER, self.labels["replica"].encode())
        self.reporter = asyncio.create_task(self._report())

    async def infer(self, request: InferRequest) -> InferResponse:
        return await self.server.dataplane.infer(request)

    async def infer_many(
        self, requests: list[InferRequest]
    ) -> list[InferResponse | ModelyardError]:
        """A group of requests the ingress sent in one call; each answered, or failed, alone."""
        done = await asyncio.gather(*map(self.infer, requests), return_exceptions=True)
        return [_answer(result) for result in done]

    async def infer_stream(self, request: InferRequest) -> AsyncGenerator[Answer, None]:
        """Every response of one request as produced; an error as the last item."""
        async for answer in stream_answers(self.server.dataplane, request):
            yield answer

    async def grpc(self, method: str, request: Any) -> Any:
        """One unary KServe gRPC call on this replica's own servicer (`run_rpc`)."""
        return await run_rpc(self.servicer, method, request)

    async def http(self, scope: dict[str, Any], body: bytes) -> AsyncGenerator[Message, None]:
        """Run one HTTP request through the replica's app; its messages as they are sent."""
        async for message in run_asgi(self.server.app, scope, body):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), self.header]}
            yield message

    def check_health(self) -> None:
        if not self.server.models.ready_version(self.model):
            raise RuntimeError(f"model {self.model!r} is not ready")

    async def _report(self) -> None:
        """Put this replica's metrics on the application's board, now and every period. No
        board yet (the ingress starts it) or a board gone with its ingress: looked up again
        at the next period."""
        import ray

        while True:
            try:
                if self.board is None:
                    self.board = await asyncio.to_thread(ray.get_actor, board_name(self.app))
                report = labelled(self.server.registry.collect(), self.labels)
                await self.board.put.remote(self.labels["replica"], report)
            except Exception as exc:  # ValueError: no such actor; Ray's errors: it died
                log.debug("replica %s: metrics not reported (%r)", self.labels["replica"], exc)
                self.board = None
            await asyncio.sleep(PUSH_PERIOD_S)

    def record_autoscaling_stats(self) -> dict[str, float]:
        """The autoscaling signal (`scaling.queue_depth_policy`): requests inside the model
        now, queued in its batcher or LLM engine or running. Ray counts calls, and one call
        from the ingress carries a group of requests."""
        entry = self.server.models.entries.get(self.model)
        versions = entry.versions.values() if entry is not None else ()
        return {QUEUE_METRIC: float(sum(version.leases for version in versions))}

    async def __del__(self) -> None:
        if self.reporter is not None:
            self.reporter.cancel()
        if self.board is not None:  # its series leave /metrics with it
            self.board.drop.remote(self.labels["replica"])
        await self.lifespan.stop()


def _whereabouts() -> tuple[str, dict[str, str]]:
    """The replica's application, and the labels naming it: deployment, replica id, node."""
    import ray
    from ray import serve

    context = serve.get_replica_context()
    node = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call, unused-ignore]
    labels = {"deployment": context.deployment, "replica": context.replica_id.unique_id}
    return context.app_name, {**labels, "node": node}


def _answer(result: InferResponse | BaseException) -> Answer:
    if isinstance(result, InferResponse | ModelyardError):
        return result
    return Internal(f"the request failed in the model's replica: {result!r}")


async def stream_answers(
    dataplane: DataPlane, request: InferRequest
) -> AsyncGenerator[Answer, None]:
    """Every response `dataplane` produces for one request; its error as the last item (a
    value, as `infer_many`'s: the ingress raises it)."""
    try:
        async with contextlib.aclosing(dataplane.infer_stream(request)) as responses:
            async for response in responses:
                yield response
    except ModelyardError as exc:
        yield exc


async def run_rpc(servicer: KServeGRPC, method: str, request: Any) -> Any:
    """One unary KServe gRPC call (`UNARY_RPCS`) run by `servicer`, as `modelyard serve`'s
    gRPC port runs it: its protobuf response, or the `RPCError` it ended with (a value)."""
    if method not in UNARY_RPCS:
        return RPCError(Status.UNIMPLEMENTED, f"a replica does not answer {method!r}")
    try:
        return await getattr(servicer, method)(request, FORWARDED)
    except RPCError as exc:
        return exc


async def run_asgi(
    app: Callable[..., Awaitable[None]], scope: dict[str, Any], body: bytes
) -> AsyncGenerator[Message, None]:
    """Call an ASGI `app` with one request whose body is `body`; yield what it sends, as it
    sends it. The app sees a disconnect once the caller stops reading (a client gone)."""
    sent: asyncio.Queue[Message | None] = asyncio.Queue()
    delivered = False
    gone = asyncio.Event()

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        await sent.put(message)

    async def call() -> None:
        try:
            await app({**scope, "type": "http"}, receive, send)
        finally:
            await sent.put(None)

    task = asyncio.create_task(call())
    try:
        while (message := await sent.get()) is not None:
            yield message
        await task  # an error the app raised reaches the caller
    finally:
        gone.set()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class Lifespan:
    """An ASGI app's lifespan, driven by hand: started (models loaded) and later stopped."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._outbox: asyncio.Queue[Message] = asyncio.Queue()
        call = app({"type": "lifespan"}, self._inbox.get, self._put)
        self._task: asyncio.Future[None] = asyncio.ensure_future(call)

    async def _put(self, message: Message) -> None:
        await self._outbox.put(message)

    @classmethod
    async def start(cls, app: Callable[..., Awaitable[None]]) -> Lifespan:
        lifespan = cls(app)
        await lifespan._step("lifespan.startup")
        return lifespan

    async def stop(self) -> None:
        if not self._task.done():
            await self._step("lifespan.shutdown")

    async def _step(self, event: str) -> None:
        await self._inbox.put({"type": event})
        answer = asyncio.ensure_future(self._outbox.get())
        either: list[asyncio.Future[Any]] = [answer, self._task]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if not answer.done():
            answer.cancel()
            self._task.result()  # the app failed: its error
            raise RuntimeError(f"the app ended during {event}")
        message = answer.result()
        if message["type"].endswith(".failed"):
            raise RuntimeError(f"{event} failed: {message.get('message', '')}")
