"""KServe v2 / Open Inference Protocol over gRPC (`inference.GRPCInferenceService`, the service
tritonclient.grpc speaks), on `grpc.aio` in the server's event loop. Only translates; the data
plane and the repository do the work, exactly as for HTTP.

Shared memory, tracing and log settings answer UNIMPLEMENTED.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from modelyard import __version__
from modelyard.core.dataplane import DataPlane
from modelyard.core.models import LoadOptions, ModelService
from modelyard.errors import (
    Code,
    DeadlineExceeded,
    Internal,
    ModelyardError,
    PayloadTooLarge,
    Unauthenticated,
)
from modelyard.fronts.auth import key_matches
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

log = logging.getLogger("modelyard.grpc")

#: The one table from protocol-neutral codes to gRPC statuses.
GRPC_STATUS = {
    Code.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    Code.PAYLOAD_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Code.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    Code.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Code.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Code.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Code.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Code.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    Code.INTERNAL: grpc.StatusCode.INTERNAL,
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
T = TypeVar("T")
Method = Callable[[Any, Any, Any], Awaitable[Any]]


def _guarded(method: Method) -> Method:
    """Check the API key, apply the client's deadline and map errors to statuses, once."""

    @functools.wraps(method)
    async def guarded(self: KServeGRPC, request: Any, context: Any) -> Any:
        try:
            self.authorize(context)
            return await _within_deadline(method(self, request, context), context)
        except ModelyardError as exc:
            await context.abort(GRPC_STATUS[exc.code], exc.message)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            error = unexpected(exc, method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, error.message)

    return guarded


async def _within_deadline(work: Awaitable[T], context: Any) -> T:
    remaining = context.time_remaining()
    if remaining is None:
        return await work
    try:
        return await asyncio.wait_for(work, max(remaining, 0.0))
    except asyncio.TimeoutError:
        raise DeadlineExceeded(
            f"the request ran past the client's deadline of {remaining:.3f} s"
        ) from None


class KServeGRPC(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    def __init__(
        self,
        dataplane: DataPlane,
        models: ModelService,
        *,
        api_keys: frozenset[str] = frozenset(),
        max_message_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.dataplane = dataplane
        self.models = models
        self.api_keys = api_keys
        self.max_message_bytes = max_message_bytes

    def authorize(self, context: Any) -> None:
        if not self.api_keys:
            return
        header = next(
            (value for key, value in context.invocation_metadata() or () if key == "authorization"),
            None,
        )
        if not key_matches(header, self.api_keys):
            raise Unauthenticated(
                "missing or wrong API key; send metadata 'authorization: Bearer KEY'"
            )

    # ---- server --------------------------------------------------------------------------

    async def ServerLive(self, request: Any, context: Any) -> Any:  # open, like HTTP's live
        return pb.ServerLiveResponse(live=True)

    @_guarded
    async def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=self.models.ready)

    @_guarded
    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        return pb.ServerMetadataResponse(
            name="modelyard", version=__version__, extensions=EXTENSIONS
        )

    # ---- models --------------------------------------------------------------------------

    @_guarded
    async def ModelReady(self, request: Any, context: Any) -> Any:
        ready = self.models.ready_version(request.name, request.version or None)
        return pb.ModelReadyResponse(ready=ready)

    @_guarded
    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        metadata = self.dataplane.model_metadata(request.name, request.version or None)
        return _parse(metadata, pb.ModelMetadataResponse())

    @_guarded
    async def ModelConfig(self, request: Any, context: Any) -> Any:
        config = self.dataplane.model_config(request.name, request.version or None)
        return _parse({"config": config}, pb.ModelConfigResponse())

    @_guarded
    async def ModelStatistics(self, request: Any, context: Any) -> Any:
        stats = self.dataplane.statistics(request.name or None, request.version or None)
        return _parse({"model_stats": stats}, pb.ModelStatisticsResponse())

    @_guarded
    async def ModelInfer(self, request: Any, context: Any) -> Any:
        response = await self.dataplane.infer(decode_request(request))
        return self._bounded(encode_response(response))

    async def ModelStreamInfer(
        self, requests: AsyncIterator[Any], context: Any
    ) -> AsyncIterator[Any]:
        """Requests run concurrently; each response is sent as its model produces it. A
        request's error goes in that response's error_message and the stream goes on."""
        try:
            self.authorize(context)
        except Unauthenticated as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, exc.message)
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
            responses = self.dataplane.infer_stream(request)
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

    # ---- repository ----------------------------------------------------------------------

    @_guarded
    async def RepositoryIndex(self, request: Any, context: Any) -> Any:
        rows = [
            pb.RepositoryIndexResponse.ModelIndex(
                name=row.name, version=row.version, state=row.state, reason=row.reason
            )
            for row in self.models.index(request.ready)
        ]
        return pb.RepositoryIndexResponse(models=rows)

    @_guarded
    async def RepositoryModelLoad(self, request: Any, context: Any) -> Any:
        options = LoadOptions.parse(parameters_dict(request.parameters))
        await self.models.load(request.model_name, options)
        return pb.RepositoryModelLoadResponse()

    @_guarded
    async def RepositoryModelUnload(self, request: Any, context: Any) -> Any:
        await self.models.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()

    # ---- not served ----------------------------------------------------------------------

    async def _unimplemented(self, request: Any, context: Any, what: str = NO_SHARED_MEMORY) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, what)

    SystemSharedMemoryStatus = SystemSharedMemoryRegister = _unimplemented
    SystemSharedMemoryUnregister = CudaSharedMemoryStatus = _unimplemented
    CudaSharedMemoryRegister = CudaSharedMemoryUnregister = _unimplemented

    async def TraceSetting(self, request: Any, context: Any) -> Any:
        await self._unimplemented(
            request,
            context,
            "trace settings are not supported by modelyard; use /metrics and the server log",
        )

    async def LogSettings(self, request: Any, context: Any) -> Any:
        await self._unimplemented(
            request,
            context,
            "log settings cannot be changed at run time; start the server with --log-level",
        )


def _parse(document: dict[str, Any], message: Any) -> Any:
    """Triton's JSON form into its protobuf message, ignoring fields the message lacks."""
    try:
        return json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise Internal(f"cannot express {type(message).__name__} in protobuf: {exc}") from exc


# ---- the server ------------------------------------------------------------------------------


def grpc_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


_HANDLER_KINDS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def method_handlers(servicer: Any, service: Any) -> dict[str, Any]:
    """One handler per method of the service's descriptor (from tritonclient's generated
    module), as `add_GRPCInferenceServiceServicer_to_server` builds them, except that every
    response is serialized by its own `SerializeToString`, so raw tensors skip protobuf."""
    handlers = {}
    for method in service.methods:
        kind = _HANDLER_KINDS[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = kind(
            getattr(servicer, method.name),
            request_deserializer=getattr(pb, method.input_type.name).FromString,
            response_serializer=_serialize,
        )
    return handlers


def _serialize(message: Any) -> bytes:
    data: bytes = message.SerializeToString()
    return data


def create_server(
    dataplane: DataPlane,
    models: ModelService,
    host: str,
    port: int,
    *,
    api_keys: frozenset[str],
    max_message_bytes: int,
) -> Any:
    """A `grpc.aio` server with the KServe v2 service, bound to host:port but not started.
    Raises `OSError` when the port cannot be bound."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),  # a port in use is an error, not a silently shared socket
        ]
    )
    servicer = KServeGRPC(dataplane, models, api_keys=api_keys, max_message_bytes=max_message_bytes)
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    handlers = method_handlers(servicer, service)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    server.add_registered_method_handlers(service.full_name, handlers)
    address = grpc_address(host, port)
    try:
        server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(
            f"cannot serve gRPC on {address}: the address is in use or cannot be bound"
        ) from exc
    return server
