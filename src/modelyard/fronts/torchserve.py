"""TorchServe's inference and management APIs, on their own ports (TorchServe's 8080 and 8081:
`--torchserve-port`, `--torchserve-management-port`), so a client of the deprecated server
changes nothing but the host.

Inference: `POST /predictions/{model}[/{version}]` (a raw body is the part "body", a form sends
one part per field, query parameters are parts too, as in TorchServe) and `GET /ping`.
Management: `GET /models`, `GET /models/{model}[/{version}|/all]`, `POST /models?url=NAME.mar`
(an archive in the model repository, TorchServe's model store) and `DELETE /models/{model}`.
Errors are TorchServe's `{"code", "type", "message"}` with its statuses: a handler that
raised is 503 "Prediction failed", an unknown model 404, a bad request 400.

Only translates: a prediction is one request of the data plane (the tensors of
`modelyard.spec.torchserve`), batched by the model's batcher; registering is the model
service's register and load, unregistering its unload.
"""

from __future__ import annotations

import email.parser
import email.policy
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from modelyard.core.dataplane import DataPlane
from modelyard.core.entries import LoadOptions
from modelyard.core.models import ModelService, ServedModel
from modelyard.core.types import InferRequest
from modelyard.errors import Code, InvalidArgument, ModelyardError, NotFound
from modelyard.fronts import http_common
from modelyard.fronts.http_common import json_response, read_body
from modelyard.spec import torchserve as ts

Handler = Callable[[Request], Awaitable[Response]]

#: TorchServe's statuses and exception names per code. A model that raised is 503 in
#: TorchServe ("Prediction failed"), and so is a full queue.
STATUS: dict[Code, tuple[int, str]] = {
    Code.INVALID_ARGUMENT: (400, "BadRequestException"),
    Code.FAILED_PRECONDITION: (400, "BadRequestException"),
    Code.PAYLOAD_TOO_LARGE: (413, "RequestEntityTooLargeException"),
    Code.UNAUTHENTICATED: (401, "InvalidKeyException"),
    Code.NOT_FOUND: (404, "ModelNotFoundException"),
    Code.UNAVAILABLE: (503, "ServiceUnavailableException"),
    Code.RESOURCE_EXHAUSTED: (503, "ServiceUnavailableException"),
    Code.DEADLINE_EXCEEDED: (408, "RequestTimeoutException"),
    Code.UNIMPLEMENTED: (501, "MethodNotAllowedException"),
    Code.INTERNAL: (503, "InternalServerException"),
}
HTTP_STATUS = {code: status for code, (status, _) in STATUS.items()}
#: The archive version TorchServe reports for modelyard's version N ("1.0" for 1).
_VERSION = re.compile(r"^(\d+)(?:\.0+)?$")


def error_body(exc: ModelyardError) -> dict[str, Any]:
    status, kind = STATUS[exc.code]
    return {"code": status, "type": kind, "message": exc.message}


def guard(handler: Handler) -> Handler:
    return http_common.guard(handler, error_body, HTTP_STATUS)


class TorchServeFront:
    def __init__(self, dataplane: DataPlane, models: ModelService, max_request_bytes: int) -> None:
        self.dataplane = dataplane
        self.models = models
        self.max_request_bytes = max_request_bytes

    # ---- the two apps ------------------------------------------------------------------------

    def inference_routes(self) -> list[BaseRoute]:
        predict = guard(self.predict)
        return [
            Route("/ping", guard(self.ping), methods=["GET"]),
            Route("/predictions/{model}", predict, methods=["POST", "PUT"]),
            Route("/predictions/{model}/{version}", predict, methods=["POST", "PUT"]),
        ]

    def management_routes(self) -> list[BaseRoute]:
        return [
            Route("/models", guard(self.list_models), methods=["GET"]),
            Route("/models", guard(self.register), methods=["POST"]),
            Route("/models/{model}", guard(self.describe), methods=["GET"]),
            Route("/models/{model}/{version}", guard(self.describe), methods=["GET"]),
            Route("/models/{model}", guard(self.unregister), methods=["DELETE"]),
            Route("/models/{model}/{version}", guard(self.unregister), methods=["DELETE"]),
        ]

    # ---- inference ---------------------------------------------------------------------------

    async def ping(self, request: Request) -> Response:
        if self.models.ready:
            return json_response({"status": "Healthy"})
        return json_response({"status": "Unhealthy"}, 500)

    async def predict(self, request: Request) -> Response:
        name = request.path_params["model"]
        version = _version(request.path_params.get("version"))
        entry = self.models.entries.get(name)
        if self.models.control_mode != "ondemand" and (entry is None or not entry.versions):
            raise NotFound(f"Model not found: {name}")  # unregistered (ondemand: loads it)
        body = await read_body(request, self.max_request_bytes)
        parts = _query_parts(request) + _body_parts(request.headers.get("content-type"), body)
        values = np.empty((1, len(parts)), dtype=object)
        values[0, :] = [value for _, value, _ in parts]
        parameters = {
            ts.NAMES: [part for part, _, _ in parts],
            ts.CONTENT_TYPES: [kind for _, _, kind in parts],
            ts.HEADERS: {k.lower(): v for k, v in request.headers.items()},
        }
        call = InferRequest(name, {ts.INPUT: values}, version, parameters=parameters)
        answer = await self.dataplane.infer(call)
        output = answer.outputs.get(ts.OUTPUT)
        if output is None or output.size == 0:
            raise InvalidArgument(f"model {name!r} has no output {ts.OUTPUT!r} to answer with")
        payload = output.reshape(-1)[0]
        content = payload if isinstance(payload, bytes) else str(payload).encode()
        extra = answer.parameters.get(ts.RESPONSE_HEADERS)
        headers = {str(k): str(v) for k, v in extra.items()} if isinstance(extra, dict) else {}
        status = answer.parameters.get(ts.STATUS, 200)
        kind = answer.parameters.get(ts.CONTENT_TYPE)
        return Response(content, int(status), headers, media_type=kind)

    # ---- management --------------------------------------------------------------------------

    async def list_models(self, request: Request) -> Response:
        limit = _int_query(request, "limit", 100, minimum=1)
        start = _int_query(request, "next_page_token", 0)
        served = self.models.latest()
        page = served[start : start + limit]
        out: dict[str, Any] = {}
        if start + limit < len(served):
            out["nextPageToken"] = str(start + limit)
        out["models"] = [{"modelName": m.name, "modelUrl": self._url(m.name)} for m in page]
        return json_response(out)

    async def describe(self, request: Request) -> Response:
        name = request.path_params["model"]
        wanted = request.path_params.get("version")
        versions = self._loaded(name)
        if wanted == "all":
            chosen = list(versions.values())
        elif wanted is None:
            chosen = [versions[max(versions)]]
        else:
            number = _number(wanted)
            if number not in versions:
                raise NotFound(f"Model version: {wanted} does not exist for model: {name}")
            chosen = [versions[number]]
        return json_response([self._describe(m) for m in chosen])

    async def register(self, request: Request) -> Response:
        query = request.query_params
        url = query.get("url")
        if not url:
            raise InvalidArgument("Parameter url is required.")
        name = self._archive_name(url, query.get("model_name"))
        entry = self.models.entries.get(name)
        if entry is not None and entry.versions:
            message = f"Model version 1.0 is already registered for model {name}"
            return json_response(
                {"code": 409, "type": "ConflictStatusException", "message": message}, 409
            )
        options = _load_options(request)
        await self.models.register(name)
        await self.models.load(name, options)
        workers = self._loaded(name)[max(self._loaded(name))].config.instance_count
        status = f'Model "{name}" Version: 1.0 registered with {workers} initial workers'
        return json_response({"status": status})

    async def unregister(self, request: Request) -> Response:
        name = request.path_params["model"]
        self._loaded(name)
        await self.models.unload(name)
        return json_response({"status": f'Model "{name}" unregistered'})

    # ---- helpers -----------------------------------------------------------------------------

    def _loaded(self, name: str) -> dict[int, ServedModel]:
        entry = self.models.entries.get(name)
        if entry is None or not entry.versions:
            raise NotFound(f"Model not found: {name}")
        return entry.versions

    def _url(self, name: str) -> str:
        return self.models.entry(name).source.path.name

    def _describe(self, model: ServedModel) -> dict[str, Any]:
        config = model.config
        batching = config.dynamic_batching
        delay_ms = batching.max_queue_delay_us // 1000 if batching is not None else 0
        workers = config.instance_count
        status = "READY" if model.ready else "UNLOADING"
        return {
            "modelName": model.name,
            "modelVersion": f"{model.version}.0",
            "modelUrl": self._url(model.name),
            "runtime": "python",
            "minWorkers": workers,
            "maxWorkers": workers,
            "batchSize": max(1, config.max_batch_size),
            "maxBatchDelay": delay_ms,
            "loadedAtStartup": False,
            "workers": [
                {"id": str(9000 + i), "status": status, "memoryUsage": 0, "gpu": False}
                for i in range(workers)
            ],
        }

    def _archive_name(self, url: str, model_name: str | None) -> str:
        """The model an archive URL names: a file directly in a repository folder (TorchServe's
        model store); its name is the file's stem."""
        if re.match(r"^[a-z][a-z0-9+.-]*://", url) and not url.startswith("file://"):
            raise InvalidArgument(
                f"Invalid model url: {url}; this server registers archives from its model "
                "repository only (put NAME.mar there and register url=NAME.mar)"
            )
        path = Path(url.removeprefix("file://"))
        roots = [root.resolve() for root in self.models.roots]
        if path.is_absolute() and path.parent.resolve() not in roots:
            raise InvalidArgument(
                f"{url} is not in the model store; archives register from the model "
                f"repository's folder ({', '.join(map(str, roots))}), not a subfolder"
            )
        if path.suffix != ".mar" or (len(path.parts) != 1 and not path.is_absolute()):
            raise InvalidArgument(f"Invalid model url: {url}; name a NAME.mar in the model store")
        if not any((root / path.name).is_file() for root in roots):
            raise NotFound(f"Model not found in model store: {path.name}")
        if model_name and model_name != path.stem:
            raise InvalidArgument(
                f"model_name {model_name!r} differs from the archive's file name "
                f"{path.name!r}; a model's name is its archive's stem here: rename the file"
            )
        return path.stem


def _version(text: str | None) -> str | None:
    """modelyard's version for a TorchServe version ("1.0" and "1" are version 1)."""
    return None if text is None else str(_number(text))


def _number(text: str) -> int:
    match = _VERSION.match(text)
    if match is None:
        raise NotFound(f"Model version: {text} does not exist")
    return int(match.group(1))


def _int_query(request: Request, key: str, default: int, minimum: int = 0) -> int:
    value = request.query_params.get(key)
    if value is None:
        return default
    if not value.isdigit() or int(value) < minimum:
        raise InvalidArgument(f"Parameter {key} must be a whole number of at least {minimum}")
    return int(value)


def _load_options(request: Request) -> LoadOptions | None:
    """Registration settings as a load config: batch_size, max_batch_delay (ms),
    initial_workers (instances) and response_timeout (s); none given: the archive's own."""
    batch = _int_query(request, "batch_size", 0, minimum=1)
    delay = _int_query(request, "max_batch_delay", -1)
    workers = _int_query(request, "initial_workers", -1)
    timeout = _int_query(request, "response_timeout", 0)
    if not batch and delay < 0 and workers < 0 and not timeout:
        return None
    config: dict[str, Any] = {"max_batch_size": batch or 1}
    config["dynamic_batching"] = {"max_queue_delay_microseconds": max(delay, 0) * 1000}
    config["instance_group"] = [{"count": max(workers, 1), "kind": "KIND_CPU"}]
    if timeout:
        config["parameters"] = {"execution_timeout_s": {"string_value": str(timeout)}}
    return LoadOptions(config)


def _query_parts(request: Request) -> list[tuple[str, bytes, str]]:
    return [(key, value.encode(), "") for key, value in request.query_params.multi_items()]


def _body_parts(content_type: str | None, body: bytes) -> list[tuple[str, bytes, str]]:
    """The request body as TorchServe's parts: form fields by name, else one part "body"
    with the request's content type."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        return [(key, value.encode(), "") for key, value in pairs]
    if kind == "multipart/form-data":
        return _multipart(content_type or "", body)
    return [("body", body, kind)]


def _multipart(content_type: str, body: bytes) -> list[tuple[str, bytes, str]]:
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise InvalidArgument("a multipart/form-data body without parts")
    parts = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(payload, bytes):
            raise InvalidArgument("every part of a multipart/form-data body needs a name")
        kind = part.get_content_type() if part.get("content-type") else ""
        parts.append((name, payload, kind))
    return parts


def torchserve_app(routes: list[BaseRoute]) -> Starlette:
    """An app of TorchServe's routes, its unknown paths and methods answered in its shape."""
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kinds = {404: "ResourceNotFoundException", 405: "MethodNotAllowedException"}
    body = {"code": exc.status_code, "type": kinds.get(exc.status_code, "BadRequestException")}
    if exc.status_code == 404:
        body["message"] = "Requested resource is not found, please refer to API document."
    else:
        body["message"] = str(exc.detail)
    return json_response(body, exc.status_code, dict(exc.headers or {}))
