"""One HTTP/2 connection (RFC 9113) as an asyncio protocol, for a server: frames in and out,
settings, flow control both ways, stream lifecycles, GOAWAY.

It knows nothing of gRPC. Each new stream is handed to `open_stream`, which returns the
stream's `Receiver` (its data, its end, its reset). Answers go out through the `Stream`:
header fields and data, in order (fields are encoded as they leave, so the client's HPACK table
follows the wire), data held back while the client's windows are shut. Frames written during
one loop turn leave in one socket write.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol, cast

from modelyard.fronts.h2.hpack import Decoder, Encoder, Header, HPACKError

log = logging.getLogger("modelyard.grpc")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY = range(8)
WINDOW_UPDATE, CONTINUATION = 8, 9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR = 0x0, 0x1, 0x3, 0x6
REFUSED_STREAM, COMPRESSION_ERROR, ENHANCE_YOUR_CALM = 0x7, 0x9, 0xB
HEADER_TABLE_SIZE, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE = 0x1, 0x3, 0x4, 0x5
MAX_HEADER_LIST_SIZE = 0x6

#: What this server tells clients: windows large enough that a request of several MiB
#: arrives without waiting for a WINDOW_UPDATE, frames up to 1 MiB.
WINDOW = 1 << 22
CONNECTION_WINDOW = 1 << 24
FRAME_LIMIT = 1 << 20
STREAM_LIMIT = 4096
HEADER_BLOCK_LIMIT = 1 << 16
DEFAULT_WINDOW, DEFAULT_FRAME = 65535, 16384


class ConnectionError_(Exception):
    """The client broke the protocol: the connection ends with GOAWAY(code)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class Receiver(Protocol):
    """What a stream's request side tells its handler."""

    def data(self, chunk: bytes) -> None: ...

    def end(self) -> None: ...

    def reset(self) -> None: ...


_FRAME_HEADER = struct.Struct(">HBBBI")  # a 24-bit length as 16 + 8 bits, type, flags, stream


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    size = len(payload)
    return _FRAME_HEADER.pack(size >> 8, size & 0xFF, kind, flags, stream_id) + payload


def _u32(value: int) -> bytes:
    return struct.pack(">I", value)


Fields = tuple[Header, ...]
Item = tuple[Fields | bytes, bool]  # header fields or data, and whether it ends the stream


class Stream:
    """One request/response exchange. Its answer is a queue of header blocks and data, sent in
    order as far as the client's flow-control windows allow."""

    __slots__ = (
        "connection",
        "headers",
        "id",
        "outbox",
        "received",
        "receiver",
        "remote_done",
        "window",
    )

    def __init__(self, stream_id: int, headers: Sequence[Header], connection: H2Connection) -> None:
        self.id = stream_id
        self.headers = headers
        self.connection = connection
        self.receiver: Receiver | None = None
        self.window = connection.peer_window
        self.received = 0  # bytes since our last WINDOW_UPDATE for it
        self.outbox: deque[Item] = deque()
        self.remote_done = False

    def send_headers(self, fields: Fields, end: bool = False) -> None:
        self.outbox.append((fields, end))
        self.connection.flush_stream(self)

    def send_data(self, data: bytes, end: bool = False) -> None:
        self.outbox.append((data, end))
        self.connection.flush_stream(self)

    def send_answer(self, headers: Fields, data: bytes, trailers: Fields) -> None:
        """A whole answer: headers, data, trailers (which end the stream)."""
        if not self.connection.answer(self, headers, data, trailers):
            self.outbox.extend([(headers, False), (data, False), (trailers, True)])
            self.connection.flush_stream(self)

    @property
    def open(self) -> bool:
        return self.connection.streams.get(self.id) is self


class H2Connection(asyncio.Protocol):
    def __init__(
        self,
        open_stream: Callable[[Stream], Receiver],
        on_close: Callable[[H2Connection], None],
        indexable: frozenset[Header] = frozenset(),
        max_headers: int = 100,
        max_header_bytes: int = HEADER_BLOCK_LIMIT,
    ) -> None:
        self.open_stream = open_stream
        self.max_headers = max_headers
        self.max_header_bytes = max_header_bytes
        #: When the connection last had no stream open, and when the header block being
        #: received began (loop time; for the server's sweep of idle and slow clients).
        self.idle_since = 0.0
        self.head_since = 0.0
        self.on_close = on_close
        self.encoder = Encoder(indexable)
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.preface_seen = False
        self.decoder = Decoder()
        self.streams: dict[int, Stream] = {}
        self.last_stream_id = 0
        self.peer_window = DEFAULT_WINDOW  # the client's initial stream window
        self.peer_frame = DEFAULT_FRAME  # the client's largest frame
        self.send_window = DEFAULT_WINDOW  # our connection-level send window
        self.blocked: dict[int, Stream] = {}  # streams waiting for window
        self.received = 0  # bytes since our last connection WINDOW_UPDATE
        self.headers_in: tuple[int, int, bytearray] | None = None  # (stream, flags, block)
        self.out: list[bytes] = []
        self.going_away = False
        self.idle = asyncio.Event()

    # ---- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass of it
        self.idle_since = self.head_since = asyncio.get_running_loop().time()
        settings = {
            MAX_CONCURRENT_STREAMS: STREAM_LIMIT,
            INITIAL_WINDOW_SIZE: WINDOW,
            MAX_FRAME_SIZE: FRAME_LIMIT,
            MAX_HEADER_LIST_SIZE: self.max_header_bytes,
        }
        payload = b"".join(struct.pack(">HI", key, value) for key, value in settings.items())
        self._write(frame(SETTINGS, 0, 0, payload))
        self._write(frame(WINDOW_UPDATE, 0, 0, _u32(CONNECTION_WINDOW - DEFAULT_WINDOW)))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            self._parse()
        except (ConnectionError_, HPACKError) as exc:
            code = exc.code if isinstance(exc, ConnectionError_) else COMPRESSION_ERROR
            log.info("closing an HTTP/2 connection: %s", exc)
            self._write(frame(GOAWAY, 0, 0, _u32(self.last_stream_id) + _u32(code)))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        for stream in list(self.streams.values()):
            self._forget(stream)
            if stream.receiver is not None:
                stream.receiver.reset()
        self.on_close(self)

    # ---- frames in -----------------------------------------------------------------------

    def _parse(self) -> None:
        buffer, offset = self.buffer, 0
        if not self.preface_seen:
            if len(buffer) < len(PREFACE):
                return
            if buffer[: len(PREFACE)] != PREFACE:
                raise ConnectionError_(PROTOCOL_ERROR, "not an HTTP/2 connection preface")
            self.preface_seen, offset = True, len(PREFACE)
        while len(buffer) - offset >= 9:
            length = buffer[offset] << 16 | buffer[offset + 1] << 8 | buffer[offset + 2]
            if length > FRAME_LIMIT:
                raise ConnectionError_(FRAME_SIZE_ERROR, f"a frame of {length} bytes")
            end = offset + 9 + length
            if len(buffer) < end:
                break
            kind, flags = buffer[offset + 3], buffer[offset + 4]
            stream_id = struct.unpack_from(">I", buffer, offset + 5)[0] & 0x7FFFFFFF
            self._frame(kind, flags, stream_id, bytes(buffer[offset + 9 : end]))
            offset = end
        del buffer[:offset]
        if self.received >= CONNECTION_WINDOW // 2:
            self._write(frame(WINDOW_UPDATE, 0, 0, _u32(self.received)))
            self.received = 0

    def _frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self.headers_in is not None and kind != CONTINUATION:
            raise ConnectionError_(PROTOCOL_ERROR, "a header block was interrupted")
        if kind == DATA:
            self._data(flags, stream_id, payload)
        elif kind in (HEADERS, CONTINUATION):
            self._headers(kind, flags, stream_id, payload)
        elif kind == RST_STREAM:
            self._reset(stream_id)
        elif kind == WINDOW_UPDATE:
            self._window_update(stream_id, payload)
        elif not flags & ACK:
            self._control(kind, payload)

    def _control(self, kind: int, payload: bytes) -> None:
        """SETTINGS, PING (not acknowledgements), GOAWAY, PUSH_PROMISE; PRIORITY and unknown
        frame types are ignored, as the RFC asks."""
        if kind == SETTINGS:
            self._settings(payload)
        elif kind == PING:
            self._write(frame(PING, ACK, 0, payload))
        elif kind == GOAWAY:
            self.going_away = True
        elif kind == PUSH_PROMISE:
            raise ConnectionError_(PROTOCOL_ERROR, "a client sent PUSH_PROMISE")

    def _data(self, flags: int, stream_id: int, payload: bytes) -> None:
        self.received += len(payload)
        stream = self.streams.get(stream_id)
        if stream is None or stream.remote_done:
            return  # a stream already reset or answered: its data is dropped
        if flags & PADDED:
            payload = _unpad(payload)
        if payload and stream.receiver is not None:
            stream.receiver.data(payload)
        if flags & END_STREAM:
            self._remote_end(stream)
            return
        stream.received += len(payload)
        if stream.received >= WINDOW // 2 and stream.open:
            self._write(frame(WINDOW_UPDATE, 0, stream_id, _u32(stream.received)))
            stream.received = 0

    def _headers(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if kind == HEADERS:
            payload = _unpad(payload) if flags & PADDED else payload
            payload = payload[5:] if flags & PRIORITY_FLAG else payload
            self.headers_in = (stream_id, flags, bytearray())
            self.head_since = asyncio.get_running_loop().time()
        elif self.headers_in is None or self.headers_in[0] != stream_id:
            raise ConnectionError_(PROTOCOL_ERROR, "CONTINUATION without HEADERS")
        assert self.headers_in is not None
        block = self.headers_in[2]
        block += payload
        if len(block) > HEADER_BLOCK_LIMIT:
            raise ConnectionError_(PROTOCOL_ERROR, "a header block over 64 KiB")
        if flags & END_HEADERS:
            first_flags = self.headers_in[1]
            self.headers_in = None
            self._header_block(stream_id, first_flags, self.decoder.decode(bytes(block)))

    def _header_block(self, stream_id: int, flags: int, headers: Sequence[Header]) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None:  # trailers from the client
            if flags & END_STREAM and not stream.remote_done:
                self._remote_end(stream)
            return
        if stream_id % 2 == 0:
            raise ConnectionError_(PROTOCOL_ERROR, f"a client stream with the even id {stream_id}")
        if stream_id <= self.last_stream_id:
            return  # trailers for a stream this side already closed
        self.last_stream_id = stream_id
        if self.going_away or len(self.streams) >= STREAM_LIMIT:
            self._write(frame(RST_STREAM, 0, stream_id, _u32(REFUSED_STREAM)))
            return
        if not self._headers_fit(headers):
            self._write(frame(RST_STREAM, 0, stream_id, _u32(ENHANCE_YOUR_CALM)))
            return
        stream = self.streams[stream_id] = Stream(stream_id, headers, self)
        self.idle.clear()
        stream.receiver = self.open_stream(stream)
        if flags & END_STREAM and stream.open:
            self._remote_end(stream)

    def _headers_fit(self, headers: Sequence[Header]) -> bool:
        """Within the header limits (count, and RFC 9113's list size: names, values and 32
        bytes each)? A refused stream is reset with ENHANCE_YOUR_CALM."""
        if len(headers) > self.max_headers:
            log.info("refused a stream with %d header fields", len(headers))
            return False
        size = sum(len(name) + len(value) + 32 for name, value in headers)
        if size > self.max_header_bytes:
            log.info("refused a stream with %d bytes of header fields", size)
            return False
        return True

    def _remote_end(self, stream: Stream) -> None:
        stream.remote_done = True
        if stream.receiver is not None:
            stream.receiver.end()

    def _reset(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        self._forget(stream)
        if stream.receiver is not None:
            stream.receiver.reset()

    def _settings(self, payload: bytes) -> None:
        if len(payload) % 6:
            raise ConnectionError_(FRAME_SIZE_ERROR, "a SETTINGS frame of odd length")
        for key, value in struct.iter_unpack(">HI", payload):
            if key == INITIAL_WINDOW_SIZE:
                if value > 0x7FFFFFFF:
                    raise ConnectionError_(FLOW_CONTROL_ERROR, "an initial window over 2^31-1")
                delta, self.peer_window = value - self.peer_window, value
                for stream in self.streams.values():
                    stream.window += delta
            elif key == MAX_FRAME_SIZE:
                self.peer_frame = value
            elif key == HEADER_TABLE_SIZE:
                self.encoder.resize(value)
        self._write(frame(SETTINGS, ACK, 0))
        self._unblock(list(self.streams.values()))

    def _window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ConnectionError_(FRAME_SIZE_ERROR, "a WINDOW_UPDATE frame not of 4 bytes")
        increment = struct.unpack(">I", payload)[0] & 0x7FFFFFFF
        if stream_id == 0:
            self.send_window += increment
            self._unblock(list(self.blocked.values()))
        elif (stream := self.streams.get(stream_id)) is not None:
            stream.window += increment
            self._unblock([stream])

    # ---- frames out ----------------------------------------------------------------------

    def flush_stream(self, stream: Stream) -> None:
        """Send what the stream's outbox holds, as far as the windows allow."""
        if not stream.open:
            stream.outbox.clear()
            return
        outbox = stream.outbox
        while outbox:
            payload, end = outbox[0]
            if not isinstance(payload, bytes):
                self._write(self._headers_frame(stream.id, payload, end))
                outbox.popleft()
            elif not self._send_data(stream, payload, end):
                self.blocked[stream.id] = stream
                return
            if end:
                self._local_end(stream)
                return
        self.blocked.pop(stream.id, None)

    def _send_data(self, stream: Stream, payload: bytes, end: bool) -> bool:
        """Send as much of the outbox's first data item as the windows allow; True when all of
        it went."""
        while True:
            allowed = min(stream.window, self.send_window, self.peer_frame)
            if len(payload) <= allowed:
                self._write(frame(DATA, END_STREAM if end else 0, stream.id, payload))
                self._consume(stream, len(payload))
                stream.outbox.popleft()
                return True
            if allowed <= 0:
                stream.outbox[0] = (payload, end)
                return False
            self._write(frame(DATA, 0, stream.id, payload[:allowed]))
            self._consume(stream, allowed)
            payload = payload[allowed:]

    def _headers_frame(self, stream_id: int, fields: Fields, end: bool) -> bytes:
        flags = END_HEADERS | (END_STREAM if end else 0)
        return frame(HEADERS, flags, stream_id, self.encoder.encode(fields))

    def answer(self, stream: Stream, headers: Fields, data: bytes, trailers: Fields) -> bool:
        """Send a whole answer in one piece when nothing waits before it and its data fits
        the windows and one frame (a unary call's answer, nearly always); False otherwise."""
        size = len(data)
        if stream.outbox or size > min(stream.window, self.send_window, self.peer_frame):
            return False
        if stream.open:
            self._consume(stream, size)
            sid = stream.id
            self._write(
                self._headers_frame(sid, headers, False)
                + frame(DATA, 0, sid, data)
                + self._headers_frame(sid, trailers, True)
            )
            self._local_end(stream)
        return True

    def _consume(self, stream: Stream, size: int) -> None:
        stream.window -= size
        self.send_window -= size

    def _unblock(self, streams: list[Stream]) -> None:
        for stream in streams:
            if stream.outbox:
                self.flush_stream(stream)

    def _local_end(self, stream: Stream) -> None:
        stream.outbox.clear()
        self.blocked.pop(stream.id, None)
        if not stream.remote_done:  # answered early: the client need not send the rest
            self._write(frame(RST_STREAM, 0, stream.id, _u32(NO_ERROR)))
        self._forget(stream)

    def _forget(self, stream: Stream) -> None:
        self.streams.pop(stream.id, None)
        self.blocked.pop(stream.id, None)
        if not self.streams:
            self.idle.set()
            self.idle_since = asyncio.get_running_loop().time()
            if self.going_away:
                self.close()

    def _write(self, data: bytes) -> None:
        """Queue bytes; everything queued in one loop turn goes out in one write."""
        if self.transport is None:
            return
        if not self.out:
            asyncio.get_running_loop().call_soon(self._flush)
        self.out.append(data)

    def _flush(self) -> None:
        if self.transport is not None and self.out:
            self.transport.write(b"".join(self.out))
        self.out.clear()

    # ---- shutdown ------------------------------------------------------------------------

    def go_away(self) -> None:
        """No new streams; the open ones finish; the connection closes when they have."""
        self.going_away = True
        self._write(frame(GOAWAY, 0, 0, _u32(self.last_stream_id) + _u32(NO_ERROR)))
        if not self.streams:
            self.close()

    def check(self, now: float, header_timeout: float, idle_timeout: float) -> None:
        """Called by the server's sweep: a client that sends no preface or a header block
        too slowly is cut off; one idle too long gets GOAWAY."""
        if not self.preface_seen or self.headers_in is not None:
            if now - self.head_since > header_timeout:
                log.info(
                    "closing an HTTP/2 connection whose headers took over %g s", header_timeout
                )
                self._write(
                    frame(GOAWAY, 0, 0, _u32(self.last_stream_id) + _u32(ENHANCE_YOUR_CALM))
                )
                self.close()
        elif not self.streams and not self.going_away and now - self.idle_since > idle_timeout:
            self.go_away()

    def close(self) -> None:
        if self.transport is not None:
            self._flush()
            self.transport.close()


def _unpad(payload: bytes) -> bytes:
    if not payload:
        raise ConnectionError_(PROTOCOL_ERROR, "a padded frame without its pad length")
    pad = payload[0]
    if pad >= len(payload):
        raise ConnectionError_(PROTOCOL_ERROR, "padding longer than its frame")
    return payload[1 : len(payload) - pad]
