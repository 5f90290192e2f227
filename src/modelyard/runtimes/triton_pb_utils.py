"""`triton_python_backend_utils` for Triton Python-backend models run by modelyard.

A Triton `model.py` does `import triton_python_backend_utils as pb_utils`; the runtime
(`runtimes/triton_python.py`) puts this module in `sys.modules` under that name before it
imports the model. What Triton's stub offers on CPU is here with Triton's names and
behaviour: tensors, requests, responses, response senders, errors, the logger, the config
helpers, and BLS (`InferenceRequest(...).exec()` / `async_exec()`), which calls other models
through the model's `ModelCalls` (modelyard.spec.calls), so a call goes through the server's
queues and statistics like a client's. What modelyard does not do (DLPack, GPU memory,
loading models from a model, custom metrics) raises `TritonModelException` saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from modelyard.runtimes.triton_pb_extras import (
    Logger,
    MetricFamily,
    ModelConfig,
    PreferredMemory,
    get_model_dir,
    is_model_ready,
    load_model,
    unload_model,
)
from modelyard.runtimes.triton_pb_tensors import (
    TRITON_STRING_TO_NUMPY,
    TRITONSERVER_MEMORY_CPU,
    TRITONSERVER_MEMORY_GPU,
    TRITONSERVER_REQUEST_FLAG_SEQUENCE_END,
    TRITONSERVER_REQUEST_FLAG_SEQUENCE_START,
    TRITONSERVER_REQUEST_RELEASE_ALL,
    TRITONSERVER_REQUEST_RELEASE_RESCHEDULE,
    TRITONSERVER_RESPONSE_COMPLETE_FINAL,
    InferenceResponse,
    InferenceResponseSender,
    Tensor,
    TritonError,
    TritonModelException,
    bytes_objects,
    deserialize_bytes_tensor,
    error_of,
    get_input_config_by_name,
    get_output_config_by_name,
    get_output_tensor_by_name,
    numpy_to_triton_type,
    refused,
    serialize_byte_tensor,
    triton_string_to_numpy,
    triton_to_numpy_type,
    using_decoupled_model_transaction_policy,
)
from modelyard.spec.calls import ModelCalls

__all__ = [
    "TRITONSERVER_MEMORY_CPU",
    "TRITONSERVER_MEMORY_GPU",
    "TRITONSERVER_REQUEST_FLAG_SEQUENCE_END",
    "TRITONSERVER_REQUEST_FLAG_SEQUENCE_START",
    "TRITONSERVER_REQUEST_RELEASE_ALL",
    "TRITONSERVER_REQUEST_RELEASE_RESCHEDULE",
    "TRITONSERVER_RESPONSE_COMPLETE_FINAL",
    "TRITON_STRING_TO_NUMPY",
    "InferenceRequest",
    "InferenceResponse",
    "InferenceResponseSender",
    "Logger",
    "MetricFamily",
    "ModelConfig",
    "PreferredMemory",
    "Tensor",
    "TritonError",
    "TritonModelException",
    "deserialize_bytes_tensor",
    "get_input_config_by_name",
    "get_input_tensor_by_name",
    "get_model_dir",
    "get_output_config_by_name",
    "get_output_tensor_by_name",
    "is_model_ready",
    "load_model",
    "numpy_to_triton_type",
    "serialize_byte_tensor",
    "triton_string_to_numpy",
    "triton_to_numpy_type",
    "unload_model",
    "using_decoupled_model_transaction_policy",
]

#: The calls of the model whose code runs now (set around initialize/execute).
_current_calls: contextvars.ContextVar[ModelCalls | None] = contextvars.ContextVar(
    "pb_utils_calls", default=None
)
#: Every loaded model's calls: a thread the model started itself has no context, and then
#: the one calls object of the process (in-process: the core's; in a worker: its proxy).
_known_calls: list[ModelCalls] = []


def get_input_tensor_by_name(inference_request: InferenceRequest, name: str) -> Tensor | None:
    return next((t for t in inference_request.inputs() if t.name() == name), None)


# ---- requests ------------------------------------------------------------------------------


class InferenceRequest:
    """A request the model received (`execute(requests)`), or one it builds to call another
    model (BLS): `InferenceRequest(model_name=..., requested_output_names=[...],
    inputs=[...]).exec()`."""

    def __init__(
        self,
        request_id: str | bytes = "",
        correlation_id: int | str = 0,
        inputs: Sequence[Tensor] = (),
        requested_output_names: Sequence[str | bytes] = (),
        model_name: str | bytes = "",
        model_version: int = -1,
        flags: int = 0,
        timeout: int = 0,
        preferred_memory: Any = None,
        trace: Any = None,
        parameters: Mapping[str, Any] | str | None = None,
    ) -> None:
        if preferred_memory is not None and getattr(preferred_memory, "kind", 0) != 0:
            raise refused("PreferredMemory on the GPU", "BLS outputs are CPU numpy tensors")
        self._id = _text(request_id)
        self._correlation_id = correlation_id
        self._inputs = list(inputs)
        self._requested = [_text(name) for name in requested_output_names]
        self._model_name = _text(model_name)
        self._model_version = model_version
        self._flags = flags
        self._timeout = timeout
        given = json.loads(parameters or "{}") if isinstance(parameters, str) else parameters
        self._parameters: dict[str, Any] = dict(given or {})
        self._sender: InferenceResponseSender | None = None

    def inputs(self) -> list[Tensor]:
        return self._inputs

    def requested_output_names(self) -> list[str]:
        return self._requested

    def request_id(self) -> str:
        return self._id

    def correlation_id(self) -> int | str:
        return self._correlation_id

    def flags(self) -> int:
        return self._flags

    def set_flags(self, flags: int) -> None:
        self._flags = flags

    def timeout(self) -> int:
        return self._timeout

    def parameters(self) -> str:
        """The request's parameters as a JSON string (as Triton gives them)."""
        return json.dumps(self._parameters)

    def trace(self) -> None:
        return None

    def is_cancelled(self) -> bool:
        return self._sender.cancelled if self._sender is not None else False

    def get_response_sender(self) -> InferenceResponseSender:
        if self._sender is None:
            raise TritonModelException("only a request the model received has a response sender")
        return self._sender

    def set_release_flags(self, flags: int) -> None:
        if flags != TRITONSERVER_REQUEST_RELEASE_ALL:
            raise refused("Rescheduling a request (set_release_flags)", "answer it in execute")

    # ---- BLS ---------------------------------------------------------------------------

    def exec(self, decoupled: bool = False) -> Any:
        """Run this request on `model_name` and wait: an InferenceResponse (its error set when
        the call failed), or with decoupled=True an iterator of every response."""
        calls = _calls()
        if decoupled:
            return _ResponseIterator(calls, self._stream(calls))
        try:
            outputs = calls.blocking(self._infer(calls))
        except Exception as exc:
            return InferenceResponse(error=error_of(exc))
        return InferenceResponse([Tensor(name, array) for name, array in outputs.items()])

    def async_exec(self, decoupled: bool = False) -> asyncio.Future[Any]:
        """`exec` as an awaitable (on a thread of the running loop's default executor, as
        Triton does)."""
        calls = _calls()
        token = _current_calls.set(calls)
        try:
            context = contextvars.copy_context()
        finally:
            _current_calls.reset(token)
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(None, context.run, self.exec, decoupled)

    async def _infer(self, calls: ModelCalls) -> dict[str, np.ndarray]:
        return await calls.infer(self._model_name, **self._call_args())

    def _stream(self, calls: ModelCalls) -> AsyncIterator[dict[str, np.ndarray]]:
        return calls.infer_stream(self._model_name, **self._call_args())

    def _call_args(self) -> dict[str, Any]:
        if not self._model_name:
            raise TritonModelException("InferenceRequest.exec() needs a model_name")
        return {
            "inputs": {t.name(): bytes_objects(t.as_numpy()) for t in self._inputs},
            "version": str(self._model_version) if self._model_version >= 0 else "",
            "outputs": self._requested or None,
            "parameters": {**self._parameters, "timeout": self._timeout}
            if self._timeout
            else self._parameters or None,
        }

    @classmethod
    def received(
        cls,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[str],
        deliver: Callable[[InferenceResponse | None, bool], None],
        request_id: str = "",
        parameters: Mapping[str, Any] | None = None,
    ) -> InferenceRequest:
        """A request as `execute` gets it, with its response sender."""
        request = cls(
            request_id=request_id,
            inputs=[Tensor(name, array) for name, array in inputs.items()],
            requested_output_names=outputs,
            parameters=parameters,
        )
        request._sender = InferenceResponseSender(deliver)
        return request


class _ResponseIterator:
    """The responses of a decoupled BLS call, pulled one at a time from the calls' loop, and
    then an empty last one (Triton's iterator gives the response that carries the FINAL flag,
    empty when the model sent the flag alone, as decoupled models usually do)."""

    def __init__(self, calls: ModelCalls, stream: AsyncIterator[dict[str, np.ndarray]]) -> None:
        self._calls = calls
        self._stream = stream
        self._done = False

    def __iter__(self) -> Iterator[InferenceResponse]:
        return self

    def __next__(self) -> InferenceResponse:
        if self._done:
            raise StopIteration
        try:
            outputs = self._calls.blocking(_next(self._stream))
        except Exception as exc:
            self._done = True  # an error response is the last one
            return InferenceResponse(error=error_of(exc))
        if outputs is None:
            self._done = True
            return InferenceResponse()
        return InferenceResponse([Tensor(name, array) for name, array in outputs.items()])

    def cancel(self) -> None:
        if not self._done:
            self._done = True
            with contextlib.suppress(Exception):
                self._calls.blocking(_close(self._stream))


async def _next(stream: AsyncIterator[dict[str, np.ndarray]]) -> dict[str, np.ndarray] | None:
    return await anext(stream, None)


async def _close(stream: AsyncIterator[dict[str, np.ndarray]]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


def _text(value: str | bytes) -> str:
    """A name given as bytes (a BYTES tensor's element) as text, as Triton's binding takes it."""
    return value.decode() if isinstance(value, bytes) else value


def _calls() -> ModelCalls:
    calls = _current_calls.get()
    if calls is not None:
        return calls
    distinct = {id(c): c for c in _known_calls}
    if len(distinct) == 1:
        return next(iter(distinct.values()))
    raise TritonModelException(
        "BLS is not available here: this server gives the model no way to call other models"
        if not distinct
        else "BLS from a thread the model started itself cannot tell which model calls; "
        "call exec() from execute() or pass the work back to it"
    )


@contextlib.contextmanager
def calling_as(calls: ModelCalls | None) -> Iterator[None]:
    """Run model code (initialize, execute) with BLS going through `calls`."""
    token = _current_calls.set(calls)
    try:
        yield
    finally:
        _current_calls.reset(token)


def register_calls(calls: ModelCalls | None) -> None:
    if calls is not None:
        _known_calls.append(calls)


def forget_calls(calls: ModelCalls | None) -> None:
    if calls is not None and calls in _known_calls:
        _known_calls.remove(calls)
