"""One replica of a model's Ray Serve deployment: a modelyard core serving that one model.

The replica is modelyard's own server without its sockets: the `Modelyard` composition root
(model service, data plane with the model's batcher or LLM engine, LLM sessions, every HTTP
front) started through its ASGI lifespan, with only this model loaded. The ingress reaches it
two ways:

- `infer(InferRequest) -> InferResponse`: KServe inference with numpy arrays, which Ray
  carries through its object store (pickle protocol 5 buffers; no JSON between nodes), into
  this replica's batcher, so concurrent requests still batch here;
- `http(scope, body)`: any other HTTP request (OpenAI, Ollama, TGI, metadata...), run by the
  replica's own ASGI app, its ASGI messages streamed back as produced (SSE and NDJSON streams
  included).

Ray's health check calls `check_health`, which fails while the model is not ready (a worker
process restarting, every instance hung), so Ray replaces a replica that stays unhealthy; and
its autoscaler calls `record_autoscaling_stats`: the model's queue depth, its signal.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.core.types import InferRequest, InferResponse
from modelyard.errors import Internal, ModelyardError
from modelyard.ray.scaling import QUEUE_METRIC
from modelyard.server import Modelyard
from modelyard.settings import Settings

Message = dict[str, Any]
#: What the replica answers for each request of a group: its response or its own error.
Answer = InferResponse | ModelyardError


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
        self.server = Modelyard(options.settings(Path(repository), model))
        self.lifespan = await Lifespan.start(self.server.app)
        entry = self.server.models.entries.get(model)
        if entry is None or not entry.versions:
            reason = entry.reason if entry is not None else "not in the repository"
            await self.lifespan.stop()
            raise RuntimeError(f"model {model!r} did not load: {reason}")

    async def infer(self, request: InferRequest) -> InferResponse:
        return await self.server.dataplane.infer(request)

    async def infer_many(
        self, requests: list[InferRequest]
    ) -> list[InferResponse | ModelyardError]:
        """A group of requests the ingress sent in one call; each answered, or failed, alone."""
        done = await asyncio.gather(*map(self.infer, requests), return_exceptions=True)
        return [_answer(result) for result in done]

    async def http(self, scope: dict[str, Any], body: bytes) -> AsyncGenerator[Message, None]:
        """Run one HTTP request through the replica's app; its messages as they are sent."""
        async for message in run_asgi(self.server.app, scope, body):
            yield message

    def check_health(self) -> None:
        if not self.server.models.ready_version(self.model):
            raise RuntimeError(f"model {self.model!r} is not ready")

    def record_autoscaling_stats(self) -> dict[str, float]:
        """The autoscaling signal (`scaling.queue_depth_policy`): requests inside the model
        now, queued in its batcher or LLM engine or running. Ray counts calls, and one call
        from the ingress carries a group of requests."""
        entry = self.server.models.entries.get(self.model)
        versions = entry.versions.values() if entry is not None else ()
        return {QUEUE_METRIC: float(sum(version.leases for version in versions))}

    async def __del__(self) -> None:
        await self.lifespan.stop()


def _answer(result: InferResponse | BaseException) -> Answer:
    if isinstance(result, InferResponse | ModelyardError):
        return result
    return Internal(f"the request failed in the model's replica: {result!r}")


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
