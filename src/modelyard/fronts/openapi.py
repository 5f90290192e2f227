"""`/openapi.json`, the OpenAPI 3.0 document of every HTTP route the server serves, and `/docs`,
Swagger UI over it (the static files of the swagger-ui-bundle package, no build step).

The paths come from the app's own route list (and the KServe infer route, which skips the
router), so a route cannot be served without being listed; each route's request and answer
are described in OPERATIONS by their schemas (openapi_schemas.py). A route missing there still
appears, with a generic answer, and tests/fronts/test_openapi.py fails until it is described.

`/openapi.json` sits behind the API keys like every other route. `/docs` and its files are
open: a static page that names nothing about the server; it asks for the key when
/openapi.json answers 401 and keeps it for the browser session (sessionStorage), sending it
with every request it makes."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from modelyard import __version__
from modelyard.fronts.http_common import json_response
from modelyard.fronts.openapi_schemas import SCHEMAS, Schema, ref

JSON = "application/json"
NDJSON = "application/x-ndjson"
SSE = "text/event-stream"

#: The infer route, served ahead of the router (kserve_infer.py): (method, path).
INFER_PATHS = (
    ("POST", "/v2/models/{model}/infer"),
    ("POST", "/v2/models/{model}/versions/{version}/infer"),
)


@dataclass(frozen=True)
class Op:
    """One operation: its tag, summary, request body and successful answer(s)."""

    tag: str
    summary: str
    body: str | None = None  # a component schema's name
    ok: dict[str, Schema] = field(default_factory=dict)  # media type -> schema
    error: str = "Error"
    #: Extra media types the body may come in (the KServe binary tensor extension).
    binary: bool = False
    #: Answers other than OK and errors: status -> JSON schema (a model not ready: 400).
    others: dict[str, Schema] = field(default_factory=dict)


def _json(name: str) -> dict[str, Schema]:
    return {JSON: ref(name)}


_READY_SCHEMA = {
    "type": "object",
    "properties": {"ready": {"type": "boolean"}},
    "required": ["ready"],
}
_READY = {JSON: _READY_SCHEMA}
_HTML: dict[str, Schema] = {"text/html": {}}
_KS, _OA, _OL, _SV, _TGI = "KServe v2", "OpenAI", "Ollama", "Server", "TGI"


def _events(data: str) -> Schema:
    """A server-sent event (each one is checked against this): its `data` is `data`."""
    return {
        "type": "object",
        "properties": {
            "data": {"type": "string", "description": data},
            "event": {"type": "string"},
        },
    }


_STREAMED_OPENAI = {JSON: ref("Completion"), SSE: _events("a chunk as JSON, or [DONE]")}
_TGI_EVENTS = _events("a TGIStreamEvent as JSON")
_STREAMED_OLLAMA = {JSON: ref("OllamaReply"), NDJSON: {"type": "string"}}

_MODEL_ROUTES = {
    "": Op(_KS, "Model metadata: inputs, outputs, versions, platform", ok=_json("ModelMetadata")),
    "/ready": Op(
        _KS,
        "Whether the model (version) is ready (400 when not)",
        ok=_READY,
        others={"400": _READY_SCHEMA},
    ),
    "/config": Op(_KS, "The model's config (Triton's model_config JSON)", ok={JSON: {}}),
    "/stats": Op(_KS, "Inference statistics of the model's versions", ok=_json("ModelStatistics")),
    "/infer": Op(
        _KS,
        "Run inference: JSON tensors, or binary tensors after the JSON "
        "(Inference-Header-Content-Length)",
        "InferRequest",
        {JSON: ref("InferResponse"), "application/octet-stream": {}},
        binary=True,
    ),
}

OPERATIONS: dict[tuple[str, str], Op] = {
    ("GET", "/v2"): Op(_KS, "Server metadata and extensions", ok=_json("ServerMetadata")),
    ("GET", "/v2/health/live"): Op(
        _KS,
        "Liveness (open without a key)",
        ok={JSON: {"type": "object", "properties": {"live": {"type": "boolean"}}}},
    ),
    ("GET", "/v2/health/ready"): Op(
        _KS,
        "Readiness: start-up models loaded (503 when not)",
        ok=_READY,
        others={"503": _READY_SCHEMA},
    ),
    ("GET", "/v2/models/stats"): Op(
        _KS, "Inference statistics of every loaded model", ok=_json("ModelStatistics")
    ),
    ("POST", "/v2/repository/index"): Op(
        _KS,
        "The models in the repository and their state",
        "RepositoryIndexRequest",
        _json("RepositoryIndex"),
    ),
    ("POST", "/v2/repository/models/{model}/load"): Op(
        _KS, "Load (or reload) a model, optionally with a config", "LoadRequest", {JSON: {}}
    ),
    ("POST", "/v2/repository/models/{model}/unload"): Op(_KS, "Unload a model", ok={JSON: {}}),
    **{
        ("GET", base + tail): op
        for base in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}")
        for tail, op in _MODEL_ROUTES.items()
        if tail != "/infer"
    },
    **{(method, path): _MODEL_ROUTES["/infer"] for method, path in INFER_PATHS},
    **{
        (method, f"/v2/{kind}/{{rest}}"): Op(_KS, "Shared-memory tensors: not supported (400)")
        for kind in ("systemsharedmemory", "cudasharedmemory")
        for method in ("GET", "POST")
    },
    **{
        ("POST", base + "/generate"): Op(
            _KS,
            "Triton's generate extension: inputs by tensor name in a flat JSON object, one "
            "response (a decoupled model must send exactly one)",
            ok={JSON: {"type": "object"}},
        )
        for base in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}")
    },
    **{
        ("POST", base + "/generate_stream"): Op(
            _KS,
            "Triton's generate extension, every response as a server-sent event",
            ok={SSE: _events("a response as JSON (Triton's generate shape), or an error")},
        )
        for base in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}")
    },
    # TGI (text-generation-inference)
    ("POST", "/generate"): Op(
        _TGI,
        "Generate text (TGI)",
        "TGIGenerateRequest",
        _json("TGIGenerated"),
        error="TGIError",
    ),
    ("POST", "/generate_stream"): Op(
        _TGI,
        "Generate text as server-sent events of tokens (TGI)",
        "TGIGenerateRequest",
        {SSE: _TGI_EVENTS},
        error="TGIError",
    ),
    ("POST", "/"): Op(
        _TGI,
        "TGI's compat route: /generate in a list, or /generate_stream with stream: true; "
        "embeddings when the body asks for them",
        "TGIGenerateRequest",
        {
            JSON: {
                "type": "array",
                "items": {
                    "oneOf": [
                        ref("TGIGenerated"),
                        {"type": "array", "items": {"type": "number"}},
                    ],
                    "description": "generations, or one embedding per input",
                },
            },
            SSE: _TGI_EVENTS,
        },
        error="TGIError",
    ),
    ("POST", "/embed"): Op(
        _TGI,
        "Embeddings (TEI's route)",
        "TGIEmbedRequest",
        {JSON: {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}},
        error="TGIError",
    ),
    ("GET", "/info"): Op(_TGI, "The text model served (TGI)", ok=_json("TGIInfo")),
    # OpenAI (as vLLM serves it)
    ("GET", "/v1/models"): Op(
        _OA, "The loaded text models", ok=_json("ModelList"), error="OpenAIError"
    ),
    ("GET", "/v1/models/{model}"): Op(_OA, "One model", ok=_json("ModelCard"), error="OpenAIError"),
    ("POST", "/v1/chat/completions"): Op(
        _OA,
        "Chat completion (stream: true for server-sent events)",
        "ChatCompletionRequest",
        _STREAMED_OPENAI,
        error="OpenAIError",
    ),
    ("POST", "/v1/completions"): Op(
        _OA,
        "Text completion (stream: true for server-sent events)",
        "CompletionRequest",
        _STREAMED_OPENAI,
        error="OpenAIError",
    ),
    ("POST", "/v1/embeddings"): Op(
        _OA,
        "Embeddings of texts or token ids",
        "EmbeddingRequest",
        _json("Embeddings"),
        error="OpenAIError",
    ),
    ("POST", "/tokenize"): Op(
        _OA,
        "vLLM's tokenize; a body with `inputs` is TGI's (a list of tokens back)",
        "TokenizeRequest",
        _json("Tokens"),
        error="OpenAIError",
    ),
    ("POST", "/detokenize"): Op(
        _OA, "vLLM's detokenize", "DetokenizeRequest", _json("Detokenized"), error="OpenAIError"
    ),
    ("GET", "/tokenizer_info"): Op(
        _OA, "vLLM's tokenizer_info (?model=NAME)", ok={JSON: {}}, error="OpenAIError"
    ),
    ("GET", "/health"): Op(_OA, "vLLM's health check (empty 200)", error="OpenAIError"),
    ("GET", "/version"): Op(_OA, "The server's version", ok=_json("Version"), error="OpenAIError"),
    # Ollama
    ("GET", "/"): Op(
        _OL,
        "'Ollama is running' (clients probe it); a browser (Accept: text/html) is sent to "
        "/console (307)",
        ok={"text/plain": {}},
    ),
    ("HEAD", "/"): Op(_OL, "'Ollama is running' (clients probe it)"),
    ("GET", "/api/version"): Op(_OL, "Ollama API level", ok=_json("OllamaVersion")),
    ("POST", "/api/generate"): Op(
        _OL,
        "Generate from a prompt (NDJSON stream unless stream: false)",
        "GenerateRequest",
        _STREAMED_OLLAMA,
    ),
    ("POST", "/api/chat"): Op(
        _OL, "Chat (NDJSON stream unless stream: false)", "OllamaChatRequest", _STREAMED_OLLAMA
    ),
    ("POST", "/api/embed"): Op(_OL, "Embeddings of texts", "EmbedRequest", _json("Embed")),
    ("POST", "/api/embeddings"): Op(
        _OL, "Embedding of one text (older API)", "EmbeddingsRequest", _json("Embedding")
    ),
    ("GET", "/api/tags"): Op(_OL, "The models in the repository", ok=_json("Tags")),
    ("POST", "/api/show"): Op(_OL, "A model's details", "ShowRequest", _json("Show")),
    ("GET", "/api/ps"): Op(_OL, "The loaded text models", ok=_json("Running")),
    ("POST", "/api/copy"): Op(_OL, "Copy a model under a new name", "CopyRequest"),
    ("DELETE", "/api/delete"): Op(
        _OL, "Delete a model from the first repository folder", "DeleteRequest"
    ),
    ("POST", "/api/pull"): Op(
        _OL,
        "Pull a model from a --pull-from folder or a model package",
        "PullRequest",
        {JSON: ref("Progress"), NDJSON: {"type": "string"}},
    ),
    **{
        (method, path): Op(_OL, "Not supported (400): modelyard serves model files")
        for method, path in (
            ("POST", "/api/create"),
            ("POST", "/api/push"),
            ("POST", "/api/blobs/{digest}"),
            ("HEAD", "/api/blobs/{digest}"),
        )
    },
    # the server's own
    ("GET", "/metrics"): Op(_SV, "Prometheus metrics", ok={"text/plain": {"type": "string"}}),
    ("GET", "/openapi.json"): Op(_SV, "This document", ok={JSON: {}}),
    ("GET", "/docs"): Op(_SV, "Swagger UI over this document", ok=_HTML),
    ("GET", "/docs/{file}"): Op(_SV, "Swagger UI's static files", ok={"*/*": {}}),
    ("GET", "/console"): Op(_SV, "The console: a page for people (docs/console.md)", ok=_HTML),
    ("GET", "/console/{file}"): Op(_SV, "The console's static files", ok={"*/*": {}}),
    ("GET", "/console/api/models"): Op(
        _SV,
        "Every model as the console shows it: state, versions, kind, runtime, the advisor's "
        "choices and reasons, memory estimate; the server's control mode and resident memory",
        ok=_json("ConsoleModels"),
    ),
}

#: The paths served without a key, as the document writes them.
OPEN = frozenset({"/v2/health/live", "/docs", "/docs/{file}", "/console", "/console/{file}"})

_PARAM = re.compile(r"{([^}:]+)(:[^}]+)?}")


def route_operations(routes: Sequence[BaseRoute]) -> list[tuple[str, str]]:
    """(method, OpenAPI path) of every route: the router's and the infer route. HEAD, which
    Starlette adds to every GET route, counts only where a route names it."""
    found = list(INFER_PATHS)
    for route in routes:
        if not isinstance(route, Route):
            continue
        path = _PARAM.sub(r"{\1}", route.path)
        methods = set(route.methods or ())
        if "GET" in methods and not _names_head(route):
            methods.discard("HEAD")
        found += [(method, path) for method in sorted(methods)]
    return found


def _names_head(route: Route) -> bool:
    return ("HEAD", _PARAM.sub(r"{\1}", route.path)) in OPERATIONS


def document(routes: Sequence[BaseRoute], secured: bool) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path in route_operations(routes):
        op = OPERATIONS.get((method, path), Op("Undescribed", f"{method} {path}"))
        operation = _operation(method, path, op)
        if secured and path in OPEN:
            operation["security"] = []  # no key needed (fronts/auth.py's OPEN_PATHS)
        paths.setdefault(path, {})[method.lower()] = operation
    out: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "modelyard",
            "version": __version__,
            "description": "KServe v2 (Triton), OpenAI and Ollama APIs of one server. Errors are "
            "4xx with a message that says what to fix; 429/503 carry Retry-After.",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
    }
    if secured:
        out["security"] = [{"apiKey": []}]
    return out


def _operation(method: str, path: str, op: Op) -> dict[str, Any]:
    content = {media: {"schema": schema} if schema else {} for media, schema in op.ok.items()}
    ok: dict[str, Any] = {"description": "OK"}
    if content:
        ok["content"] = content
    out: dict[str, Any] = {
        "tags": [op.tag],
        "summary": op.summary,
        "operationId": f"{method.lower()}{re.sub(r'[^A-Za-z0-9]+', '_', path)}",
        "responses": {
            "200": ok,
            "default": {
                "description": "an error, with a message that says what to fix",
                "content": {JSON: {"schema": ref(op.error)}},
            },
        },
    }
    for status, schema in op.others.items():
        out["responses"][status] = {
            "description": "not ready",
            "content": {JSON: {"schema": schema}},
        }
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{([^}]+)}", path)
    ]
    if path == "/tokenizer_info":
        params.append({"name": "model", "in": "query", "schema": {"type": "string"}})
    if op.binary:
        params.append(
            {
                "name": "Inference-Header-Content-Length",
                "in": "header",
                "schema": {"type": "integer", "minimum": 0},
                "description": "the JSON's length when binary tensors follow it",
            }
        )
    if params:
        out["parameters"] = params
    if op.body is not None:
        media: dict[str, Any] = {JSON: {"schema": ref(op.body)}}
        if op.binary:
            media["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}}
        out["requestBody"] = {"required": op.body not in _OPTIONAL_BODIES, "content": media}
    return out


#: Bodies that may be left out (an empty body is `{}`).
_OPTIONAL_BODIES = {"RepositoryIndexRequest", "LoadRequest"}


# ---- serving it ---------------------------------------------------------------------------


class APIDocs:
    """The routes that serve the document and Swagger UI. `routes` is the app's route list,
    read when the document is first asked for (these routes are in it by then)."""

    def __init__(self, routes: Sequence[BaseRoute], secured: bool) -> None:
        self.served = routes
        self.secured = secured
        self._document: bytes | None = None

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/openapi.json", self.openapi, methods=["GET"]),
            Route("/docs", self.docs, methods=["GET"]),
            Route("/docs/{file}", self.static, methods=["GET"]),
        ]

    async def openapi(self, request: Request) -> Response:
        if self._document is None:
            self._document = orjson.dumps(document(self.served, self.secured))
        return Response(self._document, media_type=JSON)

    async def docs(self, request: Request) -> Response:
        return HTMLResponse(_PAGE)

    async def static(self, request: Request) -> Response:
        name = request.path_params["file"]
        if name not in STATIC:
            return json_response({"error": f"no such file: {name}"}, 404)
        return FileResponse(_swagger_ui() / name)


STATIC = frozenset(
    {"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png", "favicon-16x16.png"}
)


def _swagger_ui() -> Path:
    from swagger_ui_bundle import swagger_ui_path

    return Path(str(swagger_ui_path))


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>modelyard API</title>
<link rel="stylesheet" href="docs/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/favicon-32x32.png">
<style>#key{display:none;font:14px sans-serif;margin:2em}#key input{width:24em}</style>
</head><body>
<form id="key">This server needs an API key:
 <input type="password" name="key" autocomplete="off"> <button>Open</button></form>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script>
const keyOf = () => sessionStorage.getItem("modelyard-key");
const auth = () => keyOf() ? {Authorization: "Bearer " + keyOf()} : {};
async function open() {
  const reply = await fetch("openapi.json", {headers: auth()});
  if (reply.status === 401) { document.getElementById("key").style.display = "block"; return; }
  document.getElementById("key").style.display = "none";
  window.ui = SwaggerUIBundle({
    spec: await reply.json(), dom_id: "#swagger-ui", deepLinking: true,
    requestInterceptor: (r) => { Object.assign(r.headers, auth()); return r; },
  });
}
document.getElementById("key").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem("modelyard-key", e.target.key.value);
  open();
});
open();
</script></body></html>
"""
