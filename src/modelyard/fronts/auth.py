"""API-key check for every HTTP route except liveness and the static pages (Swagger UI, the
console), which name nothing about the server and ask for the key themselves
(`Authorization: Bearer KEY`)."""

from __future__ import annotations

import hmac

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from modelyard.fronts import console, openapi

OPEN_PATHS = frozenset(
    {
        "/v2/health/live",
        "/docs",
        *(f"/docs/{name}" for name in openapi.STATIC),
        "/console",
        *(f"/console/{name}" for name in console.STATIC),
    }
)


def key_matches(header: str | None, keys: frozenset[str]) -> bool:
    if not header or not header.lower().startswith("bearer "):
        return False
    given = header[7:].strip().encode()
    # compare against every key so timing says nothing about which one came close
    return any([hmac.compare_digest(given, key.encode()) for key in keys])


class APIKeyMiddleware:
    def __init__(self, app: ASGIApp, keys: frozenset[str]) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        header = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None
        )
        if key_matches(header, self.keys):
            await self.app(scope, receive, send)
            return
        body = orjson.dumps({"error": "missing or wrong API key; send 'Authorization: Bearer KEY'"})
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
