"""KServe v2 / Open Inference Protocol over HTTP, with Triton's extensions (binary data,
model repository, statistics, model config). Only translates; the data plane does the work."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from modelyard import __version__
from modelyard.core.dataplane import DataPlane
from modelyard.core.models import LoadOptions, ModelService, ModelStatus
from modelyard.errors import InvalidArgument
from modelyard.fronts.http_common import Handler, guard, json_response, parse_json, read_body

EXTENSIONS = [
    "binary_tensor_data",
    "classification",
    "model_repository",
    "model_repository(unload_dependents)",
    "statistics",
    "model_configuration",
]


class KServeHTTP:
    def __init__(self, dataplane: DataPlane, models: ModelService, max_request_bytes: int) -> None:
        self.dataplane = dataplane
        self.models = models
        self.max_request_bytes = max_request_bytes

    def routes(self) -> list[BaseRoute]:
        model = "/v2/models/{model}"
        versioned = "/v2/models/{model}/versions/{version}"
        table: list[tuple[str, Handler, str]] = [
            ("/v2", self.server_metadata, "GET"),
            ("/v2/health/live", self.live, "GET"),
            ("/v2/health/ready", self.ready, "GET"),
            ("/v2/models/stats", self.stats, "GET"),
            ("/v2/repository/index", self.repository_index, "POST"),
            ("/v2/repository/models/{model}/load", self.load, "POST"),
            ("/v2/repository/models/{model}/unload", self.unload, "POST"),
        ]
        for base in (model, versioned):
            table += [
                (base, self.model_metadata, "GET"),
                (base + "/ready", self.model_ready, "GET"),
                (base + "/config", self.model_config, "GET"),
                (base + "/stats", self.stats, "GET"),
            ]
        for kind in ("systemsharedmemory", "cudasharedmemory"):
            table.append((f"/v2/{kind}/{{rest:path}}", self.no_shared_memory, "GET"))
            table.append((f"/v2/{kind}/{{rest:path}}", self.no_shared_memory, "POST"))
        return [Route(path, guard(handler), methods=[method]) for path, handler, method in table]

    # ---- server --------------------------------------------------------------------------

    async def server_metadata(self, request: Request) -> Response:
        return json_response(
            {"name": "modelyard", "version": __version__, "extensions": EXTENSIONS}
        )

    async def live(self, request: Request) -> Response:
        return json_response({"live": True})

    async def ready(self, request: Request) -> Response:
        """Ready once the start-up models are loaded, and no longer while draining."""
        ready = self.models.ready
        return json_response({"ready": ready}, 200 if ready else 503)

    # ---- models --------------------------------------------------------------------------

    async def model_metadata(self, request: Request) -> Response:
        name, version = _ids(request)
        return json_response(self.dataplane.model_metadata(name, version))

    async def model_ready(self, request: Request) -> Response:
        name, version = _ids(request)
        ready = self.models.ready_version(name, version)
        return json_response({"name": name, "ready": ready}, 200 if ready else 400)

    async def model_config(self, request: Request) -> Response:
        name, version = _ids(request)
        return json_response(self.dataplane.model_config(name, version))

    async def stats(self, request: Request) -> Response:
        name = request.path_params.get("model")
        version = request.path_params.get("version")
        return json_response({"model_stats": self.dataplane.statistics(name, version)})

    # ---- repository ----------------------------------------------------------------------

    async def repository_index(self, request: Request) -> Response:
        body = await read_body(request, self.max_request_bytes)
        options = parse_json(body) if body.strip() else {}
        ready_only = bool(options.get("ready", False)) if isinstance(options, dict) else False
        return json_response([_status(row) for row in self.models.index(ready_only)])

    async def load(self, request: Request) -> Response:
        body = await read_body(request, self.max_request_bytes)
        options = parse_json(body) if body.strip() else {}
        parameters = options.get("parameters") if isinstance(options, dict) else None
        if parameters is not None and not isinstance(parameters, dict):
            raise InvalidArgument("parameters must be an object")
        await self.models.load(request.path_params["model"], LoadOptions.parse(parameters or {}))
        return json_response({})

    async def unload(self, request: Request) -> Response:
        await self.models.unload(request.path_params["model"])
        return json_response({})

    async def no_shared_memory(self, request: Request) -> Response:
        raise InvalidArgument(
            "shared-memory tensors are not supported; send tensors in the "
            "request body (binary data extension)"
        )


def _status(row: ModelStatus) -> dict[str, Any]:
    return {"name": row.name, "version": row.version, "state": row.state, "reason": row.reason}


def _ids(request: Request) -> tuple[str, str | None]:
    return request.path_params["model"], request.path_params.get("version")
