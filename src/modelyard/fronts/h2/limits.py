"""What one gRPC client may hold (docs/security.md): the limits a connection enforces, and the
server's shared admission (a connection cap) and body budget, which the HTTP port shares."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol, cast

from modelyard.fronts.h2.connection import ENHANCE_YOUR_CALM, GOAWAY, SETTINGS, frame


class Admission(Protocol):
    """Who may open a connection (a cap shared with the HTTP port)."""

    def enter(self, port: str) -> bool: ...

    def leave(self) -> None: ...


class Budget(Protocol):
    """Bytes that request messages in flight may hold (a budget shared with the HTTP port)."""

    limit: int
    used: int

    def take(self, size: int) -> bool: ...

    def give(self, size: int) -> None: ...


@dataclass(frozen=True)
class ConnectionLimits:
    """What one client may hold: header fields (count, bytes), the time to send the preface
    and each header block, and the idle time before GOAWAY."""

    max_headers: int = 100
    max_header_bytes: int = 1 << 16
    header_timeout_s: float = 10.0
    idle_timeout_s: float = 300.0
    #: The time a unary call's request message may take to arrive once its headers have.
    body_timeout_s: float = 60.0


class Full(asyncio.Protocol):
    """A connection over the cap: the server's SETTINGS, then GOAWAY(ENHANCE_YOUR_CALM)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        goaway = (0).to_bytes(4, "big") + ENHANCE_YOUR_CALM.to_bytes(4, "big")
        goaway += b"too many connections"
        writer = cast(asyncio.Transport, transport)
        writer.write(frame(SETTINGS, 0, 0) + frame(GOAWAY, 0, 0, goaway))
        writer.close()
