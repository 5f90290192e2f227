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
import enum
import json
import logging
import struct
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from modelyard.errors import Code, ModelyardError
from modelyard.spec.calls import ModelCalls

log = logging.getLogger("modelyard.triton_python")

TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_START = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_END = 2
TRITONSERVER_REQUEST_RELEASE_ALL = 1
TRITONSERVER_REQUEST_RELEASE_RESCHEDULE = 2
TRITONSERVER_MEMORY_CPU = 0
TRITONSERVER_MEMORY_GPU = 1

#: The calls of the model whose code runs now (set around initialize/execute).
_current_calls: contextvars.ContextVar[ModelCalls | None] = contextvars.ContextVar(
    "pb_utils_calls", default=None
)
#: Every loaded model's calls: a thread the model started itself has no context, and then
#: the one calls object of the process (in-process: the core's; in a worker: its proxy).
_known_calls: list[ModelCalls] = []


class TritonModelException(Exception):
    """What Triton's stub raises for a misuse of pb_utils (Python backend exception)."""


def _refused(what: str, instead: str) -> TritonModelException:
    return TritonModelException(f"{what} is not supported by modelyard's Python backend; {instead}")


# ---- data types ----------------------------------------------------------------------------

TRITON_STRING_TO_NUMPY: dict[str, type] = {
    "TYPE_BOOL": np.bool_,
    "TYPE_UINT8": np.uint8,
    "TYPE_UINT16": np.uint16,
    "TYPE_UINT32": np.uint32,
    "TYPE_UINT64": np.uint64,
    "TYPE_INT8": np.int8,
    "TYPE_INT16": np.int16,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_FP16": np.float16,
    "TYPE_FP32": np.float32,
    "TYPE_FP64": np.float64,
    "TYPE_STRING": np.object_,
}
#: Triton's TRITONSERVER_DataType numbers, in the order of its enum (1 = BOOL .. 13 = BYTES).
_TYPE_CODES: list[type] = list(TRITON_STRING_TO_NUMPY.values())


def triton_string_to_numpy(triton_type_string: str) -> type:
    """The numpy type of a config's `data_type` (e.g. "TYPE_FP32" -> np.float32)."""
    return TRITON_STRING_TO_NUMPY[triton_type_string]


def triton_to_numpy_type(data_type: int) -> type | None:
    return _TYPE_CODES[data_type - 1] if 1 <= data_type <= len(_TYPE_CODES) else None


def numpy_to_triton_type(data_type: Any) -> int | None:
    kind = np.dtype(data_type)
    if kind.kind in "OSU":
        return len(_TYPE_CODES)
    for code, numpy_type in enumerate(_TYPE_CODES[:-1], start=1):
        if kind == np.dtype(numpy_type):
            return code
    return None


def serialize_byte_tensor(input_tensor: np.ndarray) -> bytes | None:
    """BYTES elements as Triton lays them out: a 4-byte little-endian length, then the bytes."""
    if input_tensor.size == 0:
        return b""
    if input_tensor.dtype.kind not in "OS":
        return None
    parts = []
    for item in input_tensor.reshape(-1):
        data = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts += [struct.pack("<I", len(data)), data]
    return b"".join(parts)


def deserialize_bytes_tensor(encoded_tensor: bytes) -> np.ndarray:
    items, offset = [], 0
    while offset < len(encoded_tensor):
        (length,) = struct.unpack_from("<I", encoded_tensor, offset)
        items.append(bytes(encoded_tensor[offset + 4 : offset + 4 + length]))
        offset += 4 + length
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


# ---- errors --------------------------------------------------------------------------------


class _ErrorCode(enum.IntEnum):  # TRITONSERVER_Error_Code
    UNKNOWN = 0
    INTERNAL = 1
    NOT_FOUND = 2
    INVALID_ARG = 3
    UNAVAILABLE = 4
    UNSUPPORTED = 5
    ALREADY_EXISTS = 6
    CANCELLED = 7


class TritonError:
    """An error for one response: `InferenceResponse(error=TritonError("msg"))`."""

    UNKNOWN = _ErrorCode.UNKNOWN
    INTERNAL = _ErrorCode.INTERNAL
    NOT_FOUND = _ErrorCode.NOT_FOUND
    INVALID_ARG = _ErrorCode.INVALID_ARG
    UNAVAILABLE = _ErrorCode.UNAVAILABLE
    UNSUPPORTED = _ErrorCode.UNSUPPORTED
    ALREADY_EXISTS = _ErrorCode.ALREADY_EXISTS
    CANCELLED = _ErrorCode.CANCELLED

    def __init__(self, message: str, code: int = _ErrorCode.INTERNAL) -> None:
        self._message = str(message)
        self._code = _ErrorCode(code)

    def message(self) -> str:
        return self._message

    def code(self) -> _ErrorCode:
        return self._code

    def __repr__(self) -> str:
        return f"TritonError({self._message!r}, {self._code.name})"


#: modelyard's error codes as Triton's, for the errors BLS calls get back.
_FROM_CODE = {
    Code.INVALID_ARGUMENT: _ErrorCode.INVALID_ARG,
    Code.PAYLOAD_TOO_LARGE: _ErrorCode.INVALID_ARG,
    Code.NOT_FOUND: _ErrorCode.NOT_FOUND,
    Code.UNAVAILABLE: _ErrorCode.UNAVAILABLE,
    Code.RESOURCE_EXHAUSTED: _ErrorCode.UNAVAILABLE,
    Code.UNIMPLEMENTED: _ErrorCode.UNSUPPORTED,
}


def _error_of(exc: BaseException) -> TritonError:
    if isinstance(exc, ModelyardError):
        return TritonError(exc.message, _FROM_CODE.get(exc.code, _ErrorCode.INTERNAL))
    return TritonError(f"{type(exc).__name__}: {exc}")


# ---- tensors -------------------------------------------------------------------------------


class Tensor:
    """A named CPU tensor; BYTES tensors are numpy object arrays of bytes, as in Triton."""

    def __init__(self, name: str, array: Any) -> None:
        if not isinstance(array, np.ndarray):
            raise TritonModelException(
                f"Tensor {name!r}: expected a numpy array, got {type(array).__name__}"
            )
        self._name = name
        self._array = array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array

    def shape(self) -> list[int]:
        return list(self._array.shape)

    def triton_dtype(self) -> int | None:
        return numpy_to_triton_type(self._array.dtype)

    def is_cpu(self) -> bool:
        return True

    def to_dlpack(self) -> Any:
        raise _refused("Tensor.to_dlpack (DLPack)", "use as_numpy()")

    def __dlpack__(self, stream: Any = None) -> Any:
        raise _refused("DLPack", "use as_numpy()")

    def __dlpack_device__(self) -> Any:
        raise _refused("DLPack", "use as_numpy()")

    @staticmethod
    def from_dlpack(name: str, capsule: Any) -> Tensor:
        raise _refused("Tensor.from_dlpack (DLPack, GPU tensors)", "use Tensor(name, numpy_array)")

    def __repr__(self) -> str:
        return f"Tensor({self._name!r}, shape={self.shape()}, dtype={self._array.dtype})"


def get_input_tensor_by_name(inference_request: InferenceRequest, name: str) -> Tensor | None:
    return next((t for t in inference_request.inputs() if t.name() == name), None)


def get_output_tensor_by_name(inference_response: InferenceResponse, name: str) -> Tensor | None:
    return next((t for t in inference_response.output_tensors() if t.name() == name), None)


def get_input_config_by_name(model_config: Mapping[str, Any], name: str) -> Any:
    return next((t for t in model_config.get("input", []) if t.get("name") == name), None)


def get_output_config_by_name(model_config: Mapping[str, Any], name: str) -> Any:
    return next((t for t in model_config.get("output", []) if t.get("name") == name), None)


def using_decoupled_model_transaction_policy(model_config: Mapping[str, Any]) -> bool:
    return bool(model_config.get("model_transaction_policy", {}).get("decoupled", False))


# ---- responses -----------------------------------------------------------------------------


class InferenceResponse:
    def __init__(
        self,
        output_tensors: Sequence[Tensor] = (),
        error: TritonError | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> None:
        self._outputs = list(output_tensors)
        self._error = error
        self._parameters = json.dumps(dict(parameters or {}))

    def output_tensors(self) -> list[Tensor]:
        return self._outputs

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error

    def parameters(self) -> str:
        """The response's parameters as a JSON string (as Triton gives them)."""
        return self._parameters


class InferenceResponseSender:
    """Sends a request's responses one at a time (decoupled models); `flags` =
    TRITONSERVER_RESPONSE_COMPLETE_FINAL closes it."""

    def __init__(self, deliver: Callable[[InferenceResponse | None, bool], None]) -> None:
        self._deliver = deliver
        self._closed = False
        self.cancelled = False

    def send(self, response: InferenceResponse | None = None, flags: int = 0) -> None:
        if self._closed:
            raise TritonModelException("Unable to send response. Response sender has been closed.")
        final = bool(flags & TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        if response is None and not final:
            raise TritonModelException("send() needs a response or the FINAL flag")
        self._closed = final
        self._deliver(response, final)

    def is_cancelled(self) -> bool:
        return self.cancelled

    @property
    def closed(self) -> bool:
        return self._closed


# ---- requests ------------------------------------------------------------------------------


class InferenceRequest:
    """A request the model received (`execute(requests)`), or one it builds to call another
    model (BLS): `InferenceRequest(model_name=..., requested_output_names=[...],
    inputs=[...]).exec()`."""

    def __init__(
        self,
        request_id: str = "",
        correlation_id: int | str = 0,
        inputs: Sequence[Tensor] = (),
        requested_output_names: Sequence[str] = (),
        model_name: str = "",
        model_version: int = -1,
        flags: int = 0,
        timeout: int = 0,
        preferred_memory: Any = None,
        trace: Any = None,
        parameters: Mapping[str, Any] | str | None = None,
    ) -> None:
        if preferred_memory is not None and getattr(preferred_memory, "kind", 0) != 0:
            raise _refused("PreferredMemory on the GPU", "BLS outputs are CPU numpy tensors")
        self._id = request_id
        self._correlation_id = correlation_id
        self._inputs = list(inputs)
        self._requested = list(requested_output_names)
        self._model_name = model_name
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
            raise _refused("Rescheduling a request (set_release_flags)", "answer it in execute")

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
            return InferenceResponse(error=_error_of(exc))
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
            "inputs": {t.name(): t.as_numpy() for t in self._inputs},
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
            return InferenceResponse(error=_error_of(exc))
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


# ---- logging -------------------------------------------------------------------------------


_LOG_LEVELS = {0: logging.INFO, 1: logging.WARNING, 2: logging.ERROR, 3: logging.DEBUG}


class Logger:
    """Triton's model logger, writing to the `modelyard.triton_python` Python logger."""

    class LogLevel(enum.IntEnum):
        INFO = 0
        WARNING = 1
        ERROR = 2
        VERBOSE = 3

    @staticmethod
    def log(message: str, level: int = 0) -> None:
        log.log(_LOG_LEVELS.get(int(level), logging.INFO), "%s", message)

    @staticmethod
    def log_info(message: str) -> None:
        log.info("%s", message)

    @staticmethod
    def log_warn(message: str) -> None:
        log.warning("%s", message)

    @staticmethod
    def log_error(message: str) -> None:
        log.error("%s", message)

    @staticmethod
    def log_verbose(message: str) -> None:
        log.debug("%s", message)


# ---- auto-complete -------------------------------------------------------------------------


class ModelConfig:
    """The config a model's `auto_complete_config(auto_complete_model_config)` may complete:
    max_batch_size, inputs, outputs, dynamic batching."""

    def __init__(self, model_config: str | Mapping[str, Any]) -> None:
        text = model_config if isinstance(model_config, str) else json.dumps(model_config)
        self._model_config: dict[str, Any] = json.loads(text)

    def as_dict(self) -> dict[str, Any]:
        return self._model_config

    def set_max_batch_size(self, max_batch_size: int) -> None:
        current = int(self._model_config.get("max_batch_size", 0))
        if current > max_batch_size:
            raise ValueError(
                f"configuration specified max_batch_size {current}, but auto_complete_config "
                f"of model {self._model_config.get('name')!r} sets {max_batch_size}"
            )
        self._model_config["max_batch_size"] = max_batch_size

    def set_dynamic_batching(self) -> None:
        self._model_config.setdefault("dynamic_batching", {})

    def add_input(self, input: Mapping[str, Any]) -> None:
        self._add("input", input)

    def add_output(self, output: Mapping[str, Any]) -> None:
        self._add("output", output)

    def set_model_transaction_policy(self, transaction_policy_dict: Mapping[str, Any]) -> None:
        self._model_config["model_transaction_policy"] = dict(transaction_policy_dict)

    def _add(self, kind: str, tensor: Mapping[str, Any]) -> None:
        unknown = set(tensor) - {"name", "data_type", "dims", "optional"}
        if unknown or "name" not in tensor or "data_type" not in tensor or "dims" not in tensor:
            raise ValueError(
                f"{kind} {tensor.get('name')!r} in auto_complete_config needs name, data_type "
                f"and dims (and optionally optional), got {sorted(tensor)}"
            )
        tensors = self._model_config.setdefault(kind, [])
        same = next((t for t in tensors if t.get("name") == tensor["name"]), None)
        if same is None:
            tensors.append(dict(tensor))
        elif same.get("data_type") != tensor["data_type"] or [
            int(d) for d in same.get("dims", [])
        ] != [int(d) for d in tensor["dims"]]:
            raise ValueError(
                f"{kind} {tensor['name']!r} is already in the config with another data_type or dims"
            )


# ---- refused -------------------------------------------------------------------------------


def load_model(model_name: str, config: str = "", files: Any = None) -> None:
    raise _refused(
        "Loading a model from a model (pb_utils.load_model)",
        "load it with the repository API (POST /v2/repository/models/NAME/load) or at start-up",
    )


def unload_model(model_name: str, unload_dependents: bool = False) -> None:
    raise _refused(
        "Unloading a model from a model (pb_utils.unload_model)",
        "use the repository API (POST /v2/repository/models/NAME/unload)",
    )


def is_model_ready(model_name: str, model_version: str = "") -> bool:
    raise _refused("pb_utils.is_model_ready", "call the model and check response.has_error()")


class MetricFamily:
    COUNTER = 0
    GAUGE = 1
    HISTOGRAM = 2

    def __init__(self, name: str, description: str, kind: int) -> None:
        raise _refused(
            "Custom metrics (pb_utils.MetricFamily)",
            "the server's /metrics has the model's statistics",
        )


class PreferredMemory:
    def __init__(self, preferred_memory_type: int, preferred_device_id: int = 0) -> None:
        self.kind = preferred_memory_type
        self.device_id = preferred_device_id


def get_model_dir() -> str:
    raise _refused("pb_utils.get_model_dir", "use args['model_repository'] in initialize()")
