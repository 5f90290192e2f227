"""HPACK (RFC 7541): the header decoder an HTTP/2 server needs, and the literal encoding of the
few headers it sends.

Requests are decoded in full: indexed fields, literals with or without indexing, the dynamic
table with its size updates, Huffman-coded strings. Responses only ever use literals without
indexing and without Huffman coding, so the client's table for our headers stays empty and
every header block we send is a constant or one literal.
"""

from __future__ import annotations

from collections import deque

from modelyard.fronts.h2.huffman import HPACKError, huffman_decode

STATIC_TABLE: tuple[tuple[str, str], ...] = (
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
)
ENTRY_OVERHEAD = 32  # bytes the table counts per entry beyond its name and value
Header = tuple[str, str]

__all__ = ["STATIC_TABLE", "Decoder", "HPACKError", "Header", "encode_literal"]


class Decoder:
    """One connection's decoding context: its dynamic table, newest entry first."""

    def __init__(self, max_size: int = 4096) -> None:
        self.max_size = max_size  # what our SETTINGS_HEADER_TABLE_SIZE allows
        self.size_limit = max_size  # the encoder's current choice, <= max_size
        self.size = 0
        self.table: deque[Header] = deque()

    def decode(self, block: bytes) -> list[Header]:
        headers: list[Header] = []
        pos, end = 0, len(block)
        while pos < end:
            first = block[pos]
            if first & 0x80:  # indexed field
                index, pos = _integer(block, pos, 7)
                headers.append(self._entry(index))
            elif first & 0x40:  # literal, added to the table
                header, pos = self._literal(block, pos, 6)
                self._add(header)
                headers.append(header)
            elif first & 0x20:  # dynamic table size update
                size, pos = _integer(block, pos, 5)
                if size > self.max_size:
                    raise HPACKError(f"table size {size} over the limit of {self.max_size}")
                self.size_limit = size
                self._evict(0)
            else:  # literal without indexing / never indexed
                header, pos = self._literal(block, pos, 4)
                headers.append(header)
        return headers

    def _entry(self, index: int) -> Header:
        if 0 < index <= len(STATIC_TABLE):
            return STATIC_TABLE[index - 1]
        dynamic = index - len(STATIC_TABLE) - 1
        if index == 0 or dynamic >= len(self.table):
            raise HPACKError(f"header index {index} is not in the table")
        return self.table[dynamic]

    def _literal(self, block: bytes, pos: int, prefix: int) -> tuple[Header, int]:
        index, pos = _integer(block, pos, prefix)
        if index:
            name = self._entry(index)[0]
        else:
            name, pos = _string(block, pos)
        value, pos = _string(block, pos)
        return (name, value), pos

    def _add(self, header: Header) -> None:
        size = len(header[0]) + len(header[1]) + ENTRY_OVERHEAD
        self._evict(size)
        if size <= self.size_limit:
            self.table.appendleft(header)
            self.size += size

    def _evict(self, room: int) -> None:
        while self.table and self.size + room > self.size_limit:
            name, value = self.table.pop()
            self.size -= len(name) + len(value) + ENTRY_OVERHEAD


def _integer(block: bytes, pos: int, prefix: int) -> tuple[int, int]:
    mask = (1 << prefix) - 1
    try:
        value = block[pos] & mask
        pos += 1
        if value < mask:
            return value, pos
        shift = 0
        while True:
            byte = block[pos]
            pos += 1
            value += (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value, pos
            if shift > 28:
                raise HPACKError("an integer in a header block is too large")
    except IndexError:
        raise HPACKError("a header block ends inside an integer") from None


def _string(block: bytes, pos: int) -> tuple[str, int]:
    if pos >= len(block):
        raise HPACKError("a header block ends before a string")
    huffman = block[pos] & 0x80
    length, pos = _integer(block, pos, 7)
    end = pos + length
    if end > len(block):
        raise HPACKError("a header string runs past its block")
    raw = block[pos:end]
    text = huffman_decode(raw) if huffman else raw
    return text.decode("latin-1"), end


def encode_literal(name: str, value: str) -> bytes:
    """One header as a literal without indexing, new name, no Huffman coding."""
    key, data = name.encode("latin-1"), value.encode("latin-1")
    return b"\x00" + _encode_integer(len(key), 7) + key + _encode_integer(len(data), 7) + data


def _encode_integer(value: int, prefix: int) -> bytes:
    mask = (1 << prefix) - 1
    if value < mask:
        return bytes([value])
    out = bytearray([mask])
    value -= mask
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
