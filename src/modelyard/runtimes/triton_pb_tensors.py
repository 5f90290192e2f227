"""Tensors, responses, errors and data types of `triton_python_backend_utils` (re-exported
by `triton_pb_utils`, the module Triton models import)."""

from __future__ import annotations

import enum
import json
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from modelyard.errors import Code, ModelyardError

TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_START = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_END = 2
TRITONSERVER_REQUEST_RELEASE_ALL = 1
TRITONSERVER_REQUEST_RELEASE_RESCHEDULE = 2
TRITONSERVER_MEMORY_CPU = 0
TRITONSERVER_MEMORY_GPU = 1


class TritonModelException(Exception):
    """What Triton's stub raises for a misuse of pb_utils (Python backend exception)."""


def refused(what: str, instead: str) -> TritonModelException:
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


def bytes_objects(array: np.ndarray) -> np.ndarray:
    """A text array as Triton hands BYTES tensors on: an object array of bytes (numpy `S`
    and `U` arrays are encoded, UTF-8); any other array as it is."""
    if array.dtype.kind not in "SU":
        return array
    out = np.empty(array.shape, dtype=object)
    out.reshape(-1)[:] = [x if isinstance(x, bytes) else str(x).encode() for x in array.flat]
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


def error_of(exc: BaseException) -> TritonError:
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
        raise refused("Tensor.to_dlpack (DLPack)", "use as_numpy()")

    def __dlpack__(self, stream: Any = None) -> Any:
        raise refused("DLPack", "use as_numpy()")

    def __dlpack_device__(self) -> Any:
        raise refused("DLPack", "use as_numpy()")

    @staticmethod
    def from_dlpack(name: str, capsule: Any) -> Tensor:
        raise refused("Tensor.from_dlpack (DLPack, GPU tensors)", "use Tensor(name, numpy_array)")

    def __repr__(self) -> str:
        return f"Tensor({self._name!r}, shape={self.shape()}, dtype={self._array.dtype})"


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
