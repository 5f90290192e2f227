"""KServe v2 / Open Inference Protocol over gRPC (`inference.GRPCInferenceService`, the service
tritonclient.grpc speaks), served by modelyard's own HTTP/2 stack (`fronts/h2`) in the server's
event loop. Only translates; the data plane and the repository do the work, exactly as for HTTP.

`InferenceServicer` holds the calls that need only inference (`Inference`: the core's data
plane, or modelyard on Ray's ingress, which sends requests to the models' replicas) and those
answered without a model; `KServeGRPC` adds the model and repository calls over the core.
Shared memory, tracing and log settings answer UNIMPLEMENTED.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from google.protobuf import json_format
from tritonclient.grpc import service_pb2 as pb

from modelyard import __version__
from modelyard.core.dataplane import DataPlane
from modelyard.core.models import LoadOptions, ModelService
from modelyard.core.types import InferRequest, InferResponse
from modelyard.errors import Code, Internal, ModelyardError, PayloadTooLarge, Unauthenticated
from modelyard.fronts.auth import key_matches
from modelyard.fronts.h2.limits import Admission, Budget, ConnectionLimits
from modelyard.fronts.h2.rpc import (
    Context,
    GRPCServer,
    Method,
    RPCError,
    Status,
    bind,
)
from modelyard.fronts.http_common import unexpected
from modelyard.fronts.kserve_grpc_codec import (
    ENABLE_EMPTY_FINAL,
    RawInferResponse,
    decode_request,
    encode_response,
    final_response,
    parameters_dict,
    stream_error,
    stream_response,
)
from modelyard.fronts.kserve_infer import Infers
from modelyard.settings import Limits

log = logging.getLogger("modelyard.grpc")

#: The one table from protocol-neutral codes to gRPC statuses.
GRPC_STATUS = {
    Code.INVALID_ARGUMENT: Status.INVALID_ARGUMENT,
    Code.PAYLOAD_TOO_LARGE: Status.RESOURCE_EXHAUSTED,
    Code.FAILED_PRECONDITION: Status.FAILED_PRECONDITION,
    Code.UNAUTHENTICATED: Status.UNAUTHENTICATED,
    Code.NOT_FOUND: Status.NOT_FOUND,
    Code.UNAVAILABLE: Status.UNAVAILABLE,
    Code.RESOURCE_EXHAUSTED: Status.RESOURCE_EXHAUSTED,
    Code.DEADLINE_EXCEEDED: Status.DEADLINE_EXCEEDED,
    Code.UNIMPLEMENTED: Status.UNIMPLEMENTED,
    Code.INTERNAL: Status.INTERNAL,
}

EXTENSIONS = [
    "classification",
    "model_repository",
    "model_repository(unload_dependents)",
    "statistics",
    "model_configuration",
]

NO_SHARED_MEMORY = (
    "shared-memory tensors are not supported by modelyard; send tensors in the "
    "request (raw_input_contents)"
)

_Done = object()  # ends a ModelStreamInfer response queue
Handler = Callable[[Any, Any, Context], Awaitable[Any]]
#: The service, from tritonclient's generated module.
SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]


class Inference(Infers, Protocol):
    """What ModelInfer and ModelStreamInfer run on: the core's `DataPlane`, or a stand-in
    that sends requests elsewhere (modelyard on Ray's ingress)."""

    def infer_stream(self, request: InferRequest) -> AsyncGenerator[InferResponse, None]: ...


def guarded(method: Handler) -> Handler:
    """Check the API key and map errors to statuses, once. (The server itself ends a call at
    its client's deadline.)"""

    @functools.wraps(method)
    async def guarded(self: InferenceServicer, request: Any, context: Context) -> Any:
        try:
            self.authorize(context)
            return await method(self, request, context)
        except ModelyardError as exc:
            raise RPCError(GRPC_STATUS[exc.code], exc.message) from None
        except RPCError:
            raise
        except Exception as exc:
            error = unexpected(exc, method.__name__)
            raise RPCError(Status.INTERNAL, error.message) from None

    return guarded


class InferenceServicer:
    """The calls that need only inference (`inference`), and those answered without a model:
    liveness, server metadata, the unimplemented ones. A subclass answers the model and
    repository calls."""

    def __init__(
        self,
        inference: Inference,
        *,
        api_keys: frozenset[str] = frozenset(),
        max_message_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.inference = inference
        self.api_keys = api_keys
        self.max_message_bytes = max_message_bytes

    def authorize(self, context: Context) -> None:
        if not self.api_keys:
            return
        header = next(
            (value for key, value in context.invocation_metadata() if key == "authorization"),
            None,
        )
        if not key_matches(header, self.api_keys):
            raise Unauthenticated(
                "missing or wrong API key; send metadata 'authorization: Bearer KEY'"
            )

    # ---- server --------------------------------------------------------------------------

    async def ServerLive(self, request: Any, context: Context) -> Any:  # open, like HTTP's live
        return pb.ServerLiveResponse(live=True)

    @guarded
    async def ServerMetadata(self, request: Any, context: Context) -> Any:
        return pb.ServerMetadataResponse(
            name="modelyard", version=__version__, extensions=EXTENSIONS
        )

    # ---- inference ----------------------------------------------------------------------

    @guarded
    async def ModelInfer(self, request: Any, context: Context) -> Any:
        response = await self.inference.infer(decode_request(request))
        return self._bounded(encode_response(response))

    async def ModelStreamInfer(
        self, requests: AsyncIterator[Any], context: Context
    ) -> AsyncIterator[Any]:
        """Requests run concurrently; each response is sent as its model produces it. A
        request's error goes in that response's error_message and the stream goes on."""
        try:
            self.authorize(context)
        except Unauthenticated as exc:
            raise RPCError(Status.UNAUTHENTICATED, exc.message) from None
        queue: asyncio.Queue[Any] = asyncio.Queue()
        reader = asyncio.create_task(self._read_stream(requests, queue))
        try:
            while (item := await queue.get()) is not _Done:
                yield item
            await reader  # re-raises a broken request stream
        finally:
            reader.cancel()

    async def _read_stream(self, requests: AsyncIterator[Any], queue: asyncio.Queue[Any]) -> None:
        running: set[asyncio.Task[None]] = set()
        try:
            async for message in requests:
                task = asyncio.create_task(self._stream_one(message, queue))
                running.add(task)
                task.add_done_callback(running.discard)
            if running:
                await asyncio.gather(*running)
        finally:
            for task in running:
                task.cancel()
            queue.put_nowait(_Done)

    async def _stream_one(self, message: Any, queue: asyncio.Queue[Any]) -> None:
        request = None
        try:
            request = decode_request(message)
            empty_final = bool(request.parameters.pop(ENABLE_EMPTY_FINAL, False))
            version = request.version or ""
            responses = self.inference.infer_stream(request)
            async with contextlib.aclosing(responses):
                async for response in responses:
                    version = response.version
                    encoded = self._bounded(encode_response(response))
                    queue.put_nowait(stream_response(encoded, False if empty_final else None))
            if empty_final:
                queue.put_nowait(final_response(request, version))
        except ModelyardError as exc:
            queue.put_nowait(stream_error(request or message, exc.message))
        except Exception as exc:
            error = unexpected(exc, "ModelStreamInfer")
            queue.put_nowait(stream_error(request or message, error.message))

    def _bounded(self, response: RawInferResponse) -> RawInferResponse:
        size = response.raw_size
        if size > self.max_message_bytes:
            raise PayloadTooLarge(
                f"the response's tensors are {size} bytes, over the gRPC message limit of "
                f"{self.max_message_bytes} bytes (--grpc-max-message-bytes); ask for fewer "
                "outputs or a smaller batch"
            )
        return response

    # ---- not served ----------------------------------------------------------------------

    async def _unimplemented(
        self, request: Any, context: Context, what: str = NO_SHARED_MEMORY
    ) -> Any:
        raise RPCError(Status.UNIMPLEMENTED, what)

    SystemSharedMemoryStatus = SystemSharedMemoryRegister = _unimplemented
    SystemSharedMemoryUnregister = CudaSharedMemoryStatus = _unimplemented
    CudaSharedMemoryRegister = CudaSharedMemoryUnregister = _unimplemented

    async def TraceSetting(self, request: Any, context: Context) -> Any:
        await self._unimplemented(
            request,
            context,
            "trace settings are not supported by modelyard; use /metrics and the server log",
        )

    async def LogSettings(self, request: Any, context: Context) -> Any:
        await self._unimplemented(
            request,
            context,
            "log settings cannot be changed at run time; start the server with --log-level",
        )


class KServeGRPC(InferenceServicer):
    """Every call, over the core: its data plane and model service (`modelyard serve`'s
    gRPC port, and each model replica of modelyard on Ray)."""

    def __init__(
        self,
        dataplane: DataPlane,
        models: ModelService,
        *,
        api_keys: frozenset[str] = frozenset(),
        max_message_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        super().__init__(dataplane, api_keys=api_keys, max_message_bytes=max_message_bytes)
        self.dataplane = dataplane
        self.models = models

    # ---- server and models ---------------------------------------------------------------

    @guarded
    async def ServerReady(self, request: Any, context: Context) -> Any:
        return pb.ServerReadyResponse(ready=self.models.ready)

    @guarded
    async def ModelReady(self, request: Any, context: Context) -> Any:
        ready = self.models.ready_version(request.name, request.version or None)
        return pb.ModelReadyResponse(ready=ready)

    @guarded
    async def ModelMetadata(self, request: Any, context: Context) -> Any:
        metadata = self.dataplane.model_metadata(request.name, request.version or None)
        return _parse(metadata, pb.ModelMetadataResponse())

    @guarded
    async def ModelConfig(self, request: Any, context: Context) -> Any:
        config = self.dataplane.model_config(request.name, request.version or None)
        return _parse({"config": config}, pb.ModelConfigResponse())

    @guarded
    async def ModelStatistics(self, request: Any, context: Context) -> Any:
        stats = self.dataplane.statistics(request.name or None, request.version or None)
        return _parse({"model_stats": stats}, pb.ModelStatisticsResponse())

    # ---- repository ----------------------------------------------------------------------

    @guarded
    async def RepositoryIndex(self, request: Any, context: Context) -> Any:
        rows = [
            pb.RepositoryIndexResponse.ModelIndex(
                name=row.name, version=row.version, state=row.state, reason=row.reason
            )
            for row in self.models.index(request.ready)
        ]
        return pb.RepositoryIndexResponse(models=rows)

    @guarded
    async def RepositoryModelLoad(self, request: Any, context: Context) -> Any:
        options = LoadOptions.parse(parameters_dict(request.parameters))
        await self.models.load(request.model_name, options)
        return pb.RepositoryModelLoadResponse()

    @guarded
    async def RepositoryModelUnload(self, request: Any, context: Context) -> Any:
        await self.models.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()


def _parse(document: dict[str, Any], message: Any) -> Any:
    """Triton's JSON form into its protobuf message, ignoring fields the message lacks."""
    try:
        return json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise Internal(f"cannot express {type(message).__name__} in protobuf: {exc}") from exc


# ---- the server ------------------------------------------------------------------------------


def grpc_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def methods(servicer: InferenceServicer) -> dict[str, Method]:
    """The servicer's methods by path, one per method of the service's descriptor (from
    tritonclient's generated module; no protos are copied)."""
    return {
        f"/{SERVICE.full_name}/{method.name}": Method(
            getattr(servicer, method.name),
            getattr(pb, method.input_type.name).FromString,
            client_streaming=method.client_streaming,
            server_streaming=method.server_streaming,
        )
        for method in SERVICE.methods
    }


def create_server(
    dataplane: DataPlane,
    models: ModelService,
    host: str,
    port: int,
    *,
    api_keys: frozenset[str],
    max_message_bytes: int,
    limits: Limits | None = None,
    cap: Admission | None = None,
    budget: Budget | None = None,
) -> GRPCServer:
    """The KServe v2 gRPC server over the core, bound to host:port but not started. Raises
    `OSError` when the port cannot be bound."""
    servicer = KServeGRPC(dataplane, models, api_keys=api_keys, max_message_bytes=max_message_bytes)
    return serve_servicer(servicer, host, port, limits=limits, cap=cap, budget=budget)


def serve_servicer(
    servicer: InferenceServicer,
    host: str,
    port: int,
    *,
    limits: Limits | None = None,
    cap: Admission | None = None,
    budget: Budget | None = None,
) -> GRPCServer:
    """A gRPC server answering the service with `servicer`'s methods, bound to host:port but
    not started; its message limit is the servicer's. Raises `OSError` when the port cannot
    be bound."""
    address = grpc_address(host, port)
    try:
        sock = bind(host, port)
    except OSError as exc:
        raise OSError(f"cannot serve gRPC on {address}: {exc.strerror or exc}") from exc
    limits = limits or Limits()
    connection_limits = ConnectionLimits(
        limits.max_headers,
        limits.max_header_bytes,
        limits.header_timeout_s,
        limits.grpc_idle_timeout_s,
        limits.body_timeout_s,
    )
    return GRPCServer(
        methods(servicer), sock, servicer.max_message_bytes, connection_limits, cap, budget
    )
