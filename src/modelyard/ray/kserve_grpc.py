"""KServe v2 gRPC at modelyard on Ray's ingress: tritonclient.grpc through Ray Serve's gRPC
proxy, and on the ingress's own gRPC port past it (docs/ray.md).

`RayKServeGRPC` is the ingress's servicer, one for both ways in. Inference is modelyard's own
`InferenceServicer` over `RayFront`: ModelInfer decodes the protobuf into an `InferRequest` of
numpy arrays here, and `RayFront` sends it to the model's replicas as it sends a KServe HTTP
request (grouped by its `Coalescer`, into the replica's batcher); ModelStreamInfer streams each
request's responses from a replica. Every other call is run by a replica of the model it names,
by that replica's own `KServeGRPC` (`ModelReplica.grpc`), and its protobuf answer sent back;
the calls that name no model (server readiness, the repository index, every model's
statistics) ask every deployment and merge the answers, as `RayFront` does for HTTP.

Ray's gRPC proxy calls the ingress deployment's method named after the RPC with the request
message and, when the method takes one, Ray's `grpc_context`; `with_rpcs` gives the deployment
those methods. An `RPCError` becomes the call's status through that context.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from tritonclient.grpc import service_pb2 as pb

from modelyard.errors import ModelyardError
from modelyard.fronts.h2.rpc import Context, RPCError
from modelyard.fronts.kserve_grpc import GRPC_STATUS, SERVICE, InferenceServicer, guarded
from modelyard.ray import grpc_service  # noqa: F401  # the service's messages pickle
from modelyard.ray.ingress import RayFront, Remote, merge_listings

T = TypeVar("T")
#: gRPC's status codes by number, as Ray's context takes them.
STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}


class RayKServeGRPC(InferenceServicer):
    """The KServe v2 gRPC service over the models' deployments (`front`'s)."""

    def __init__(self, front: RayFront, max_message_bytes: int = 64 * 1024 * 1024) -> None:
        super().__init__(front, max_message_bytes=max_message_bytes)
        self.front = front

    # ---- answered by the named model's replica -------------------------------------------

    @guarded
    async def ModelReady(self, request: Any, context: Context) -> Any:
        return await self._named(request.name, "ModelReady", request)

    @guarded
    async def ModelMetadata(self, request: Any, context: Context) -> Any:
        return await self._named(request.name, "ModelMetadata", request)

    @guarded
    async def ModelConfig(self, request: Any, context: Context) -> Any:
        return await self._named(request.name, "ModelConfig", request)

    @guarded
    async def RepositoryModelLoad(self, request: Any, context: Context) -> Any:
        return await self._named(request.model_name, "RepositoryModelLoad", request)

    @guarded
    async def RepositoryModelUnload(self, request: Any, context: Context) -> Any:
        return await self._named(request.model_name, "RepositoryModelUnload", request)

    # ---- merged from every deployment ----------------------------------------------------

    @guarded
    async def ServerReady(self, request: Any, context: Context) -> Any:
        """Ready when every deployment is."""
        answers = await self._everyone("ServerReady", request)
        ready = all(not isinstance(answer, RPCError) and answer.ready for answer in answers)
        return pb.ServerReadyResponse(ready=ready)

    @guarded
    async def ModelStatistics(self, request: Any, context: Context) -> Any:
        if request.name:
            return await self._named(request.name, "ModelStatistics", request)
        answers = _answered(await self._everyone("ModelStatistics", request))
        stats = {(s.name, s.version): s for answer in answers for s in answer.model_stats}
        return pb.ModelStatisticsResponse(model_stats=[stats[key] for key in sorted(stats)])

    @guarded
    async def RepositoryIndex(self, request: Any, context: Context) -> Any:
        """Each model once: as its own deployment lists it (loaded), not as the others do."""
        answers = _answered(await self._everyone("RepositoryIndex", request))
        listings = [[_row(row) for row in answer.models] for answer in answers]
        index = [pb.RepositoryIndexResponse.ModelIndex(**r) for r in merge_listings(listings)]
        return pb.RepositoryIndexResponse(models=index)

    # ---- helpers -------------------------------------------------------------------------

    async def _named(self, model: str, method: str, request: Any) -> Any:
        answer = await self.front.remote_for(model).grpc(method, request)
        if isinstance(answer, RPCError):
            raise answer
        return answer

    async def _everyone(self, method: str, request: Any) -> list[Any]:
        """Every deployment's answer: its response or its error, as a value."""
        remotes = self.front.remotes.values()
        return list(await asyncio.gather(*(_ask(r, method, request) for r in remotes)))


async def _ask(remote: Remote, method: str, request: Any) -> Any:
    try:
        return await remote.grpc(method, request)
    except ModelyardError as exc:  # its replicas went away
        return RPCError(GRPC_STATUS[exc.code], exc.message)


def _row(row: Any) -> dict[str, str]:
    return {"name": row.name, "version": row.version, "state": row.state, "reason": row.reason}


def _answered(answers: list[Any]) -> list[Any]:
    """The responses among `answers`; the first error when none answered."""
    responses = [answer for answer in answers if not isinstance(answer, RPCError)]
    if not responses and answers:
        raise answers[0]
    return responses


# ---- the deployment's methods, for Ray's gRPC proxy ------------------------------------------


def with_rpcs(cls: type[T]) -> type[T]:
    """Give the ingress deployment a method per RPC of the service, named after it, as Ray's
    gRPC proxy calls them: each runs the servicer its instance holds in `.grpc`."""
    for method in SERVICE.methods:
        setattr(cls, method.name, _ray_method(method))
    return cls


def _ray_method(method: Any) -> Callable[..., Any]:
    name = method.name
    if method.server_streaming:

        async def streaming(self: Any, requests: Any, grpc_context: Any = None) -> Any:
            calls = getattr(self.grpc, name)
            try:
                async for response in calls(requests, _context(grpc_context)):
                    yield response
            except RPCError as exc:  # Ray ends the stream with the status set here
                set_status(grpc_context, exc)
                raise

        streaming.__name__ = streaming.__qualname__ = name
        return streaming
    empty = getattr(pb, method.output_type.name)

    async def unary(self: Any, request: Any, grpc_context: Any = None) -> Any:
        try:
            return await getattr(self.grpc, name)(request, _context(grpc_context))
        except RPCError as exc:
            set_status(grpc_context, exc)
            return empty()  # gRPC sends no message with an error status

    unary.__name__ = unary.__qualname__ = name
    return unary


def _context(grpc_context: Any) -> Context:
    """modelyard's call context from Ray's (its client's metadata: an API key, if any)."""
    metadata = list(grpc_context.invocation_metadata()) if grpc_context is not None else []
    return Context(metadata, None)


def set_status(grpc_context: Any, error: RPCError) -> None:
    """The call's status and message, on Ray's context (the proxy sets them on the call)."""
    if grpc_context is None:
        raise error
    grpc_context.set_code(STATUS_CODES[int(error.status)])
    grpc_context.set_details(error.message)
