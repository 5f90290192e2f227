"""KServe v2 gRPC messages <-> core requests and responses.

Inputs come either as typed `contents` (one repeated field per datatype family) or, as
tritonclient sends them, as `raw_input_contents` (one little-endian blob per input, in input
order). Outputs always go back as `raw_output_contents`, which is what Triton does and the only
form tritonclient reads for non-BYTES tensors.

Responses keep their raw tensors out of protobuf until the wire: upb copies a large `bytes`
field slowly (about 50 ms for 16 MiB), so `RawInferResponse` writes those fields itself, after
the rest of the message; protobuf parsers read fields in any order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from tritonclient.grpc import service_pb2 as pb

from modelyard import tensors
from modelyard.core.types import InferRequest, InferResponse, RequestedOutput
from modelyard.errors import InvalidArgument

#: The typed-contents field that carries each datatype; FP16 and BF16 have none (raw only).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

#: Request parameters that name shared-memory regions, which modelyard does not serve.
SHARED_MEMORY_KEYS = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")

FINAL_RESPONSE = "triton_final_response"
ENABLE_EMPTY_FINAL = "triton_enable_empty_final_response"


# ---- parameters ------------------------------------------------------------------------------


def parameter_value(param: Any) -> Any:
    """The Python value of an `InferParameter` / `ModelRepositoryParameter` (None if unset)."""
    choice = param.WhichOneof("parameter_choice")
    return getattr(param, choice) if choice else None


def parameters_dict(params: Mapping[str, Any]) -> dict[str, Any]:
    return {key: parameter_value(value) for key, value in params.items()}


def set_parameter(target: Any, key: str, value: Any) -> None:
    """Write one Python value into a protobuf map of `InferParameter`."""
    param = target[key]
    if isinstance(value, bool):
        param.bool_param = value
    elif isinstance(value, int):
        param.int64_param = value
    elif isinstance(value, float):
        param.double_param = value
    else:
        param.string_param = str(value)


# ---- requests --------------------------------------------------------------------------------


def decode_request(message: Any) -> InferRequest:
    """A `ModelInferRequest` as a core `InferRequest`."""
    raw: Sequence[bytes] = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise InvalidArgument(
            f"{len(raw)} raw_input_contents for {len(message.inputs)} inputs; send one raw "
            "blob per input, in input order, or use typed contents for every input"
        )
    inputs: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(message.inputs):
        if tensor.name in inputs:
            raise InvalidArgument(f"input {tensor.name!r} is given twice")
        inputs[tensor.name] = _decode_input(tensor, raw[index] if raw else None)
    if not inputs:
        raise InvalidArgument("the request has no inputs")
    return InferRequest(
        model=message.model_name,
        version=message.model_version or None,
        inputs=inputs,
        id=message.id or None,
        outputs=_decode_outputs(message.outputs),
        parameters=parameters_dict(message.parameters),
    )


def _decode_input(tensor: Any, raw: bytes | None) -> np.ndarray:
    name, datatype = tensor.name, tensor.datatype
    if any(key in tensor.parameters for key in SHARED_MEMORY_KEYS):
        raise InvalidArgument(
            f"input {name!r} names a shared-memory region; modelyard does not "
            "serve shared memory, send the tensor in the request"
        )
    shape = tensors.check_shape(list(tensor.shape))
    if raw is not None:
        if tensor.HasField("contents"):
            raise InvalidArgument(f"input {name!r} has both typed contents and raw contents")
        return tensors.from_binary(name, datatype, shape, raw)
    return _from_contents(name, datatype, shape, tensor.contents)


def _from_contents(name: str, datatype: str, shape: list[int], contents: Any) -> np.ndarray:
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        tensors.numpy_dtype(datatype)  # refuses unknown datatypes with the list of known ones
        raise InvalidArgument(
            f"input {name!r}: {datatype} has no typed contents field; send it in raw_input_contents"
        )
    values = list(getattr(contents, field))
    if len(values) != tensors.element_count(shape):
        raise InvalidArgument(
            f"input {name!r}: shape {shape} needs {tensors.element_count(shape)} elements but "
            f"{field} has {len(values)}"
        )
    if datatype == "BYTES":
        array = np.empty(len(values), dtype=object)
        array[:] = values
        return array.reshape(shape)
    return _narrow(name, datatype, values).reshape(shape)


def _narrow(name: str, datatype: str, values: list[Any]) -> np.ndarray:
    """Values from a wide protobuf field (int32, uint32, ...) in the input's own dtype."""
    dtype = tensors.numpy_dtype(datatype)
    try:
        array = np.asarray(values, dtype=dtype)
    except OverflowError as exc:
        raise InvalidArgument(f"input {name!r}: a value does not fit {datatype}: {exc}") from exc
    return array


def _decode_outputs(requested: Sequence[Any]) -> list[RequestedOutput] | None:
    if not requested:
        return None
    outputs = []
    for output in requested:
        if any(key in output.parameters for key in SHARED_MEMORY_KEYS):
            raise InvalidArgument(
                f"output {output.name!r} names a shared-memory region; "
                "modelyard returns tensors in the response"
            )
        outputs.append(RequestedOutput(output.name, parameters_dict(output.parameters)))
    return outputs


# ---- responses -------------------------------------------------------------------------------


def _tag(field_number: int) -> bytes:
    return _varint(field_number << 3 | 2)  # wire type 2: length-delimited


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_RAW_OUTPUT = _tag(pb.ModelInferResponse.DESCRIPTOR.fields_by_name["raw_output_contents"].number)
_INFER_RESPONSE = _tag(
    pb.ModelStreamInferResponse.DESCRIPTOR.fields_by_name["infer_response"].number
)


class RawInferResponse:
    """A `ModelInferResponse` (`message`, without raw contents) and its raw output tensors,
    serialized by hand; grpc calls `SerializeToString` as it would on the message."""

    __slots__ = ("message", "raw")

    def __init__(self, message: Any, raw: list[bytes]) -> None:
        self.message = message
        self.raw = raw

    @property
    def raw_size(self) -> int:
        return sum(len(blob) for blob in self.raw)

    def SerializeToString(self) -> bytes:  # protobuf's name: grpc calls it
        parts = [self.message.SerializeToString()]
        for blob in self.raw:
            parts += [_RAW_OUTPUT, _varint(len(blob)), blob]
        return b"".join(parts)


class RawStreamResponse:
    """A `ModelStreamInferResponse` carrying one `RawInferResponse`."""

    __slots__ = ("response",)

    def __init__(self, response: RawInferResponse) -> None:
        self.response = response

    def SerializeToString(self) -> bytes:  # protobuf's name: grpc calls it
        inner = self.response.SerializeToString()
        return b"".join([_INFER_RESPONSE, _varint(len(inner)), inner])


def encode_response(response: InferResponse) -> RawInferResponse:
    """A core `InferResponse` as a `ModelInferResponse` with raw output contents."""
    message = pb.ModelInferResponse(
        model_name=response.model, model_version=response.version, id=response.id or ""
    )
    raw = []
    for name, array in response.outputs.items():
        message.outputs.add(name=name, datatype=tensors.datatype_of(array), shape=array.shape)
        raw.append(tensors.to_binary(array))
    for key, value in response.parameters.items():
        set_parameter(message.parameters, key, value)
    return RawInferResponse(message, raw)


def stream_response(response: RawInferResponse, final: bool | None = None) -> RawStreamResponse:
    """Wrap a response for ModelStreamInfer, flagged final or not when asked."""
    if final is not None:
        response.message.parameters[FINAL_RESPONSE].bool_param = final
    return RawStreamResponse(response)


def stream_error(request: InferRequest | Any, message: str) -> Any:
    """A ModelStreamInfer error for one request; the stream itself goes on."""
    infer_response = pb.ModelInferResponse(
        model_name=_field(request, "model", "model_name"),
        model_version=_field(request, "version", "model_version"),
        id=_field(request, "id", "id"),
    )
    return pb.ModelStreamInferResponse(error_message=message, infer_response=infer_response)


def final_response(request: InferRequest, version: str) -> RawStreamResponse:
    """The empty last response a client asked for with triton_enable_empty_final_response."""
    message = pb.ModelInferResponse(
        model_name=request.model, model_version=version, id=request.id or ""
    )
    return stream_response(RawInferResponse(message, []), final=True)


def _field(request: Any, core_name: str, wire_name: str) -> str:
    if isinstance(request, InferRequest):
        return str(getattr(request, core_name) or "")
    return str(getattr(request, wire_name, "") or "")
