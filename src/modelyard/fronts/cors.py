"""Cross-origin requests from browser front-ends, on every HTTP route (Ollama's rules).

Allowed by default: pages served from this machine (`http(s)://localhost`, `127.0.0.1`,
`[::1]`, `0.0.0.0`, any port) and the app schemes desktop and editor front-ends use (`app://`,
`file://`, `tauri://`, `vscode-webview://`). `--cors-origin` / `MODELYARD_ORIGINS` add origins
(`*` anywhere in one is a wildcard; `*` alone allows every origin). Preflights (`OPTIONS` with
`Access-Control-Request-Method`) are answered here, before the API-key check, as browsers send
them without credentials; the actual request still needs its key.

A request without an `Origin` header (every non-browser client) passes straight through.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_ORIGINS = (
    "http://localhost",
    "https://localhost",
    "http://localhost:*",
    "https://localhost:*",
    "http://127.0.0.1",
    "https://127.0.0.1",
    "http://127.0.0.1:*",
    "https://127.0.0.1:*",
    "http://[::1]",
    "http://[::1]:*",
    "http://0.0.0.0",
    "http://0.0.0.0:*",
    "app://*",
    "file://*",
    "tauri://*",
    "vscode-webview://*",
)
_METHODS = b"GET, POST, PUT, DELETE, HEAD, OPTIONS"
_MAX_AGE = b"600"


def origin_pattern(extra: Iterable[str] = ()) -> re.Pattern[str]:
    """One pattern for the default origins and `extra` (`*` is a wildcard)."""
    origins = [*DEFAULT_ORIGINS, *(o.strip().rstrip("/") for o in extra if o.strip())]
    parts = [".*".join(re.escape(piece) for piece in o.split("*")) for o in origins]
    return re.compile("|".join(f"(?:{p})" for p in parts))


class CORS:
    def __init__(self, app: ASGIApp, pattern: re.Pattern[str]) -> None:
        self.app = app
        self.pattern = pattern

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = _header(scope, b"origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        allowed = self.pattern.fullmatch(origin.decode("latin-1")) is not None
        if scope["method"] == "OPTIONS" and _header(scope, b"access-control-request-method"):
            await self._preflight(scope, send, origin, allowed)
            return
        if not allowed:
            await self.app(scope, receive, send)  # the browser will not show the answer
            return

        async def with_origin(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"access-control-allow-origin", origin), (b"vary", b"Origin")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_origin)

    async def _preflight(self, scope: Scope, send: Send, origin: bytes, allowed: bool) -> None:
        if not allowed:
            body = b"origin not allowed; start the server with --cors-origin " + origin
            headers = [(b"content-type", b"text/plain"), (b"vary", b"Origin")]
            await _answer(send, 403, headers, body)
            return
        requested = _header(scope, b"access-control-request-headers") or b"*"
        headers = [
            (b"access-control-allow-origin", origin),
            (b"access-control-allow-methods", _METHODS),
            (b"access-control-allow-headers", requested),
            (b"access-control-max-age", _MAX_AGE),
            (b"vary", b"Origin"),
        ]
        await _answer(send, 204, headers, b"")


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((v for k, v in scope["headers"] if k == name), None)


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
