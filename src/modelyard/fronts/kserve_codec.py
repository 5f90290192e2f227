"""KServe v2 REST wire format <-> core requests: JSON tensors and the binary data extension."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from modelyard import tensors
from modelyard.core.types import InferRequest, InferResponse, RequestedOutput
from modelyard.errors import InvalidArgument
from modelyard.fronts.http_common import parse_json

HEADER_LENGTH = "inference-header-content-length"


def decode_request(
    body: bytes, header_length: str | None, model: str, version: str | None
) -> InferRequest:
    json_end = _json_length(body, header_length)
    view = memoryview(body)
    document = parse_json(view[:json_end])
    if not isinstance(document, dict):
        raise InvalidArgument("the request body must be a JSON object with an 'inputs' list")
    raw_inputs = document.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidArgument("the request needs a non-empty 'inputs' list")
    offset = json_end
    inputs: dict[str, np.ndarray] = {}
    for item in raw_inputs:
        name, array, offset = _decode_input(item, view, offset)
        if name in inputs:
            raise InvalidArgument(f"input {name!r} is given twice")
        inputs[name] = array
    if offset != len(body):
        raise InvalidArgument(
            f"{len(body) - offset} bytes of binary data follow the inputs but no input claims "
            "them (check binary_data_size)"
        )
    parameters = document.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidArgument("'parameters' must be a JSON object")
    request_id = document.get("id")
    return InferRequest(
        model=model,
        version=version,
        inputs=inputs,
        id=str(request_id) if request_id is not None else None,
        outputs=_decode_outputs(document.get("outputs")),
        parameters=parameters,
    )


def _json_length(body: bytes, header_length: str | None) -> int:
    if header_length is None:
        return len(body)
    if not header_length.strip().isdigit():
        raise InvalidArgument(
            f"Inference-Header-Content-Length must be a number, got {header_length!r}"
        )
    length = int(header_length)
    if length > len(body):
        raise InvalidArgument(
            f"Inference-Header-Content-Length is {length} but the body has only {len(body)} bytes"
        )
    return length


def _decode_input(item: Any, view: memoryview, offset: int) -> tuple[str, np.ndarray, int]:
    if not isinstance(item, dict):
        raise InvalidArgument("each input must be a JSON object with name, shape, datatype")
    name, shape, datatype = item.get("name"), item.get("shape"), item.get("datatype")
    if not isinstance(name, str) or not isinstance(datatype, str):
        raise InvalidArgument(f"input {name!r}: name and datatype must be strings")
    shape = tensors.check_shape(shape)
    params = item.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is None:
        if "data" not in item:
            raise InvalidArgument(f"input {name!r} has neither 'data' nor binary_data_size")
        return name, tensors.from_json(name, datatype, shape, item["data"]), offset
    if not isinstance(size, int) or size < 0 or offset + size > len(view):
        raise InvalidArgument(
            f"input {name!r}: binary_data_size {size!r} runs past the end of the body "
            f"({len(view) - offset} bytes left)"
        )
    array = tensors.from_binary(name, datatype, shape, view[offset : offset + size])
    return name, array, offset + size


def _decode_outputs(raw: Any) -> list[RequestedOutput] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise InvalidArgument("'outputs' must be a list")
    outputs = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidArgument("each requested output needs a 'name'")
        params = item.get("parameters") or {}
        if not isinstance(params, dict):
            raise InvalidArgument(f"output {item['name']!r}: parameters must be an object")
        outputs.append(RequestedOutput(item["name"], params))
    return outputs


def encode_response(request: InferRequest, response: InferResponse) -> tuple[bytes, int | None]:
    """The response body and, when binary tensors follow the JSON, the JSON's length."""
    binary_default = bool(request.parameters.get("binary_data_output", False))
    wanted = {o.name: o.parameters for o in request.outputs or []}
    outputs, blobs = [], []
    for name, array in response.outputs.items():
        entry: dict[str, Any] = {
            "name": name,
            "datatype": tensors.datatype_of(array),
            "shape": list(array.shape),
        }
        if wanted.get(name, {}).get("binary_data", binary_default):
            blob = tensors.to_binary(array)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = tensors.to_json(array)
        outputs.append(entry)
    document: dict[str, Any] = {
        "model_name": response.model,
        "model_version": response.version,
        "outputs": outputs,
    }
    if response.id is not None:
        document["id"] = response.id
    header = orjson.dumps(document)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)
