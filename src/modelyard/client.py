"""A small client of a running server's Ollama API, for the command line (`modelyard run`, `ps`,
`show`, `stop`, `pull`, `list`). The server is at MODELYARD_HOST (host[:port], default
127.0.0.1:8000)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import orjson

from modelyard.settings import split_host

DEFAULT_PORT = 8000


class ClientError(Exception):
    """The server refused a request (its message), or could not be reached."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def server_address(value: str | None = None) -> tuple[str, int]:
    """(host, port) of the server: `value`, else MODELYARD_HOST, else 127.0.0.1:8000; a
    wildcard bind address is reached on loopback."""
    host, port = split_host(value or os.environ.get("MODELYARD_HOST") or "", DEFAULT_PORT)
    return ("127.0.0.1" if host in ("0.0.0.0", "::", "") else host), port


class Client:
    def __init__(self, host: str | None = None, timeout: float | None = None) -> None:
        address, port = server_address(host)
        address = f"[{address}]" if ":" in address else address
        self.url = f"http://{address}:{port}"
        key = os.environ.get("MODELYARD_API_KEY", "").split(",")[0].strip()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=self.url, timeout=timeout, headers=headers)

    def close(self) -> None:
        self.http.close()

    def alive(self, timeout: float = 0.5) -> bool:
        """Whether a server answers at the address (a quick probe; one that wants an API key
        answers too, and says so on the next request)."""
        try:
            return self.http.get("/api/version", timeout=timeout).status_code in (200, 401)
        except httpx.HTTPError:
            return False

    # ---- one answer ----------------------------------------------------------------------------

    def get(self, path: str) -> Any:
        return self._json(self._send("GET", path))

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._json(self._send("POST", path, body))

    def delete(self, path: str, body: dict[str, Any]) -> None:
        self._send("DELETE", path, body)

    # ---- streams -------------------------------------------------------------------------------

    def stream(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The NDJSON objects of a streamed answer; an `{"error"}` line raises ClientError."""
        try:
            with self.http.stream("POST", path, content=orjson.dumps(body)) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _refused(response)
                for line in response.iter_lines():
                    if not line.strip():
                        continue
                    item = orjson.loads(line)
                    if "error" in item:
                        raise ClientError(str(item["error"]), 500)
                    yield item
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None

    # ---- plumbing ------------------------------------------------------------------------------

    def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        content = orjson.dumps(body) if body is not None else None
        try:
            response = self.http.request(method, path, content=content)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if response.status_code >= 400:
            raise _refused(response)
        return response

    def _json(self, response: httpx.Response) -> Any:
        return orjson.loads(response.content) if response.content else {}

    def _unreachable(self, exc: httpx.HTTPError) -> ClientError:
        if isinstance(exc, httpx.ConnectError):
            return ClientError(
                f"no modelyard server answers at {self.url}; start one with "
                "`modelyard serve --model-control-mode ondemand` or set "
                "MODELYARD_HOST"
            )
        return ClientError(f"talking to {self.url} failed: {exc}")


def _refused(response: httpx.Response) -> ClientError:
    try:
        message = str(orjson.loads(response.content).get("error"))
    except (orjson.JSONDecodeError, AttributeError):
        message = response.text or response.reason_phrase
    return ClientError(message, response.status_code)
