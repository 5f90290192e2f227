"""The console: a page for people at `/console` (static HTML, JavaScript and CSS shipped in the
package, no build step) and the one JSON route it reads besides the public APIs,
`/console/api/models` (every model: state, versions, kind, runtime, the advisor's choices and
reasons, memory estimate, keep-alive, and the server's resident memory).

The page and its files are open, like /docs: they name nothing about the server. Every call
the page makes for data goes through the API keys (the page asks for the key on a 401 and keeps
it for the browser session). A browser opening `/` (Accept: text/html) is sent to `/console`;
API clients probing `/` still get Ollama's "Ollama is running" (`BrowserHome`)."""

from __future__ import annotations

from importlib.resources import files

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from modelyard.core.models import ModelService
from modelyard.core.overview import overview
from modelyard.fronts.http_common import guard, json_response

#: The page's files (src/modelyard/fronts/console_static), by name -> media type.
STATIC = {
    "console.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "playground.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
_CACHE = "no-cache"  # the page changes with the server's version; revalidate


def _static(name: str) -> bytes:
    return files("modelyard.fronts").joinpath("console_static", name).read_bytes()


class Console:
    def __init__(self, models: ModelService) -> None:
        self.models = models

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/console", self.page, methods=["GET"]),
            Route("/console/api/models", guard(self.model_list), methods=["GET"]),
            Route("/console/{file}", self.static, methods=["GET"]),
        ]

    async def page(self, request: Request) -> Response:
        return Response(
            _static("index.html"), media_type="text/html; charset=utf-8", headers=_headers()
        )

    async def static(self, request: Request) -> Response:
        name = request.path_params["file"]
        media = STATIC.get(name)
        if media is None:
            return json_response({"error": f"no such file: {name}"}, 404)
        return Response(_static(name), media_type=media, headers=_headers())

    async def model_list(self, request: Request) -> Response:
        return json_response((await overview(self.models)).to_json())


def _headers() -> dict[str, str]:
    return {"cache-control": _CACHE, "x-content-type-options": "nosniff"}


class BrowserHome:
    """`GET /` from a browser (its Accept names text/html) -> 307 to /console; everything else
    goes on (Ollama's clients probe `/` for "Ollama is running")."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if _wants_page(scope):
            location = (scope.get("root_path", "") + "/console").encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 307,
                    "headers": [(b"location", location), (b"content-length", b"0")],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        await self.app(scope, receive, send)


def _wants_page(scope: Scope) -> bool:
    if scope["type"] != "http" or scope["path"] != "/" or scope["method"] not in ("GET", "HEAD"):
        return False
    accept = next((v for k, v in scope["headers"] if k == b"accept"), b"")
    return b"text/html" in accept.lower()
