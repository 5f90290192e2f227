"""The KServe HTTP load's client: HTTP/1.1 on asyncio streams, one keep-alive connection per
request in flight. httpx spends about a millisecond of CPU per request, ten times this, which
on a machine shared with the server made the client the thing measured (iris_onnx at c=4 on the
2-core development machine: wrk 6,574 req/s, httpx ~650, this ~3,100). It sends one POST and
reads the answer's status and body (Content-Length, chunked, or until close); nothing more."""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit


class Failure(Exception):
    """A request that got no answer; `kind` is what the step's errors count it as."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def exchange(self, request: bytes) -> tuple[int, bool]:
        """Send one request, read its whole answer: (status, whether the connection stays)."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip().lower()
        if "content-length" in fields:
            await self.reader.readexactly(int(fields["content-length"]))
        elif fields.get("transfer-encoding") == "chunked":
            await self._chunks()
        else:
            await self.reader.read()
            return status, False
        return status, fields.get("connection") != "close"

    async def _chunks(self) -> None:
        while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
            await self.reader.readexactly(size + 2)
        while await self.reader.readuntil(b"\r\n") != b"\r\n":  # trailers, then the end
            pass

    def close(self) -> None:
        self.writer.close()


class HTTP1:
    """POSTs to one server over up to `most` connections, opened as they are first needed."""

    def __init__(self, url: str, headers: dict[str, str], timeout_s: float, most: int) -> None:
        parts = urlsplit(url)
        self.tls = ssl.create_default_context() if parts.scheme == "https" else None
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.tls else 80)
        self.prefix = parts.path.rstrip("/")
        fields = {"Host": parts.netloc, **headers}
        self.fields = "".join(f"{k}: {v}\r\n" for k, v in fields.items())
        self.timeout_s = timeout_s
        self.slots = asyncio.Semaphore(most)  # requests in flight at most
        self.free: list[_Connection] = []

    def request(self, path: str, body: bytes, content_type: str) -> bytes:
        """The bytes of one POST (built once per distinct request, sent many times)."""
        head = (
            f"POST {self.prefix}{path} HTTP/1.1\r\n{self.fields}Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode("latin-1") + body

    async def send(self, request: bytes) -> int:
        """The answer's status; `Failure` when there was none."""
        async with self.slots:
            connection = await self._take()
            try:
                status, keep = await asyncio.wait_for(connection.exchange(request), self.timeout_s)
            except asyncio.TimeoutError:
                connection.close()
                raise Failure("timeout") from None
            except (OSError, EOFError, ValueError, IndexError, asyncio.LimitOverrunError) as exc:
                connection.close()
                raise Failure(_kind(exc)) from None
            if keep:
                self.free.append(connection)
            else:
                connection.close()
            return status

    async def _take(self) -> _Connection:
        while self.free:
            connection = self.free.pop()
            if not connection.reader.at_eof():  # else the server closed it while idle
                return connection
            connection.close()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, ssl=self.tls), self.timeout_s
            )
        except (OSError, asyncio.TimeoutError):
            raise Failure("connect") from None
        return _Connection(reader, writer)

    async def close(self) -> None:
        for connection in self.free:
            connection.close()
        self.free.clear()


def _kind(exc: Exception) -> str:
    if isinstance(exc, asyncio.IncompleteReadError | ConnectionError):
        return "closed"  # the server closed the connection before the whole answer
    return "bad answer" if isinstance(exc, ValueError | IndexError) else type(exc).__name__
