"""modelyard on Ray's ingress without a cluster: `RayFront` over in-process stand-ins for the
models' deployments, each a real modelyard server called through the functions
`ModelReplica` calls."""

from __future__ import annotations

import pickle
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from modelyard.core.types import InferRequest, InferResponse
from modelyard.errors import ModelyardError
from modelyard.fronts.kserve_grpc import KServeGRPC
from modelyard.ray.ingress import RayFront
from modelyard.ray.replica import (
    Answer,
    Lifespan,
    Message,
    ReplicaOptions,
    run_asgi,
    run_rpc,
    stream_answers,
)
from modelyard.server import Modelyard


class LocalRemote:
    """A model's deployment as the ingress sees it, served by a modelyard in this process (what
    `ModelReplica` runs in a Ray actor); what crosses to it and back is pickled, as by Ray."""

    def __init__(self, server: Modelyard) -> None:
        self.server = server
        self.servicer = KServeGRPC(server.dataplane, server.models)

    async def infer(self, request: InferRequest) -> InferResponse:
        return await self.server.dataplane.infer(request)

    async def infer_stream(self, request: InferRequest) -> AsyncIterator[InferResponse]:
        async for answer in stream_answers(self.server.dataplane, _crossed(request)):
            yield _raised(_crossed(answer))

    async def http(
        self, scope: dict[str, Any], body: bytes, affinity: str | None = None
    ) -> AsyncIterator[Message]:
        async for message in run_asgi(self.server.app, scope, body):
            yield message

    async def grpc(self, method: str, request: Any) -> Any:
        return _crossed(await run_rpc(self.servicer, method, _crossed(request)))


def _crossed(value: Any) -> Any:
    return pickle.loads(pickle.dumps(value))


def _raised(answer: Answer) -> InferResponse:
    if isinstance(answer, ModelyardError):
        raise answer
    return answer


@asynccontextmanager
async def local_front(repository: Path) -> AsyncIterator[RayFront]:
    """The ingress's `RayFront` over a local server of each model, mlp and iris."""
    remotes, lifespans = {}, []
    try:
        for name in ("mlp", "iris"):
            server = Modelyard(ReplicaOptions().settings(repository, name))
            lifespans.append(await Lifespan.start(server.app))
            remotes[name] = LocalRemote(server)
        yield RayFront(remotes, 1 << 20)
    finally:
        for lifespan in lifespans:
            await lifespan.stop()
