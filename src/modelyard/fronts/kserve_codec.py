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
    if header_length is None:  # JSON only: the common case, no view to slice
        json_end, document = len(body), parse_json(body)
    else:
        json_end = _json_length(body, header_length)
        document = parse_json(memoryview(body)[:json_end])
    if type(document) is not dict:
        raise InvalidArgument("the request body must be a JSON object with an 'inputs' list")
    raw_inputs = document.get("inputs")
    if type(raw_inputs) is not list or not raw_inputs:
        raise InvalidArgument("the request needs a non-empty 'inputs' list")
    offset = json_end
    inputs: dict[str, np.ndarray] = {}
    for item in raw_inputs:
        name, array, offset = _decode_input(item, body, offset)
        if name in inputs:
            raise InvalidArgument(f"input {name!r} is given twice")
        inputs[name] = array
    if offset != len(body):
        raise InvalidArgument(
            f"{len(body) - offset} bytes of binary data follow the inputs but no input claims "
            "them (check binary_data_size)"
        )
    parameters = document.get("parameters") or {}
    if type(parameters) is not dict:
        raise InvalidArgument("'parameters' must be a JSON object")
    request_id = document.get("id")
    outputs = document.get("outputs")
    return InferRequest(
        model,
        inputs,
        version,
        str(request_id) if request_id is not None else None,
        None if outputs is None else _decode_outputs(outputs),
        parameters,
    )


def _json_length(body: bytes, header_length: str) -> int:
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


def _decode_input(item: Any, body: bytes, offset: int) -> tuple[str, np.ndarray, int]:
    if type(item) is not dict:
        raise InvalidArgument("each input must be a JSON object with name, shape, datatype")
    name, shape, datatype = item.get("name"), item.get("shape"), item.get("datatype")
    if type(name) is not str or type(datatype) is not str:
        raise InvalidArgument(f"input {name!r}: name and datatype must be strings")
    shape = tensors.check_shape(shape)
    params = item.get("parameters")
    size = params.get("binary_data_size") if type(params) is dict else None
    if size is None:
        if "data" not in item:
            raise InvalidArgument(f"input {name!r} has neither 'data' nor binary_data_size")
        return name, tensors.from_json(name, datatype, shape, item["data"]), offset
    if type(size) is not int or size < 0 or offset + size > len(body):
        raise InvalidArgument(
            f"input {name!r}: binary_data_size {size!r} runs past the end of the body "
            f"({len(body) - offset} bytes left)"
        )
    array = tensors.from_binary(name, datatype, shape, memoryview(body)[offset : offset + size])
    return name, array, offset + size


def _decode_outputs(raw: Any) -> list[RequestedOutput]:
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
    parameters = request.parameters
    binary_default = bool(parameters.get("binary_data_output", False)) if parameters else False
    wanted = {o.name: o.parameters for o in request.outputs} if request.outputs else {}
    outputs, blobs = [], []
    for name, array in response.outputs.items():
        entry: dict[str, Any] = {
            "name": name,
            "datatype": tensors.datatype_of(array),
            "shape": list(array.shape),
        }
        options = wanted.get(name)
        if options.get("binary_data", binary_default) if options else binary_default:
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
    if response.parameters:
        document["parameters"] = response.parameters
    header = orjson.dumps(document)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)
