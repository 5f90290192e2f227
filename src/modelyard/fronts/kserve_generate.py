"""Triton's generate extension on the KServe HTTP front, for every model:
`POST /v2/models/M[/versions/V]/generate` (one JSON answer) and `.../generate_stream`
(Server-Sent Events, one `data:` event per response the model sends).

The request is a flat JSON object: a key named like one of the model's inputs is that
tensor (a value or a 1-D list, shaped to the input's dims as Triton does: fixed dimensions
divide the elements, the innermost -1 takes the rest, other -1s are 1); "id" is the request
id; "parameters" is an object read the same way; any other key is a request parameter. The
answer has `id`, `model_name`, `model_version` and each output by name (its elements as a
list, one element as a bare value; BYTES as text). An error before the first response is an
HTTP status; one after it is an `{"error": ...}` event.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from modelyard.core.dataplane import DataPlane
from modelyard.core.models import ModelService
from modelyard.core.types import InferRequest, InferResponse
from modelyard.errors import InvalidArgument, ModelyardError
from modelyard.fronts.http_common import (
    HeldStream,
    guard,
    json_response,
    parse_json,
    read_body,
    unexpected,
)
from modelyard.tensors import from_json


class KServeGenerate:
    def __init__(self, dataplane: DataPlane, models: ModelService, max_request_bytes: int) -> None:
        self.dataplane = dataplane
        self.models = models
        self.max_request_bytes = max_request_bytes

    def routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = []
        for base in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
            routes.append(Route(base + "/generate", guard(self.generate), methods=["POST"]))
            routes.append(
                Route(base + "/generate_stream", guard(self.generate_stream), methods=["POST"])
            )
        return routes

    async def generate(self, request: Request) -> Response:
        infer = await self._request(request)
        response = await self.dataplane.generate(infer)
        return json_response(_answer(response))

    async def generate_stream(self, request: Request) -> Response:
        infer = await self._request(request)
        async with contextlib.AsyncExitStack() as stack:
            responses = self.dataplane.infer_stream(infer)
            stack.push_async_callback(responses.aclose)
            first = await anext(responses, None)
            return HeldStream(
                _events(first, responses),
                stack.pop_all(),
                "text/event-stream; charset=utf-8",
                {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )

    async def _request(self, request: Request) -> InferRequest:
        name, version = request.path_params["model"], request.path_params.get("version")
        body = parse_json(await read_body(request, self.max_request_bytes))
        if not isinstance(body, dict):
            raise InvalidArgument("a generate request is a JSON object")
        async with self.models.lease(name, version):  # loads it first in ondemand mode
            metadata = self.dataplane.model_metadata(name, version)
        specs = {t["name"]: t for t in metadata["inputs"]}
        infer = InferRequest(name, {}, version, id=_id(body.pop("id", None)))
        _read(body, specs, infer)
        return infer


def _read(body: dict[str, Any], specs: dict[str, dict[str, Any]], infer: InferRequest) -> None:
    for key, value in body.items():
        if key == "parameters" and key not in specs:
            if not isinstance(value, dict):
                raise InvalidArgument("parameters must be a JSON object")
            _read(value, specs, infer)
        elif key in specs:
            infer.inputs[key] = _tensor(key, specs[key], value)
        elif isinstance(value, str | int | float | bool):
            infer.parameters[key] = value
        else:
            raise InvalidArgument(
                f"{key!r} is not an input of this model (inputs: {sorted(specs)}), so it is a "
                "parameter, and a parameter is a string, number or boolean"
            )


def _tensor(name: str, spec: dict[str, Any], value: Any) -> np.ndarray:
    """A JSON value or 1-D list as the input's tensor, shaped as Triton's generate does."""
    if isinstance(value, dict) or (
        isinstance(value, list) and any(isinstance(v, list | dict) for v in value)
    ):
        raise InvalidArgument(f"input {name!r}: give a value or a flat list of values")
    data = value if isinstance(value, list) else [value]
    remaining = len(data)
    shape = [int(d) for d in spec["shape"]]
    for d in shape:
        if d != -1:
            if d == 0 or remaining % d:
                raise InvalidArgument(
                    f"input {name!r}: {len(data)} elements do not fit its shape {shape}"
                )
            remaining //= d
    for i in reversed(range(len(shape))):
        if shape[i] == -1:
            shape[i], remaining = remaining, 1
    if remaining != 1:
        raise InvalidArgument(f"input {name!r}: {len(data)} elements do not fit its shape")
    return from_json(name, spec["datatype"], shape, data)


def _id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidArgument("id must be a string")
    return value


def _answer(response: InferResponse) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if response.id:
        out["id"] = response.id
    out["model_name"] = response.model
    out["model_version"] = response.version
    out.update(response.parameters)
    for name, array in response.outputs.items():
        items = [_plain(x) for x in array.reshape(-1).tolist()]
        out[name] = items[0] if len(items) == 1 else items
    return out


def _plain(item: Any) -> Any:
    if isinstance(item, bytes):
        return item.decode("utf-8", errors="replace")
    return item


async def _events(
    first: InferResponse | None, rest: AsyncGenerator[InferResponse, None]
) -> AsyncIterator[bytes]:
    if first is None:
        return
    yield _event(_answer(first))
    try:
        async for response in rest:
            yield _event(_answer(response))
    except ModelyardError as exc:
        yield _event({"error": exc.message})
    except Exception as exc:
        yield _event({"error": unexpected(exc, "generate_stream").message})


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n\n"
