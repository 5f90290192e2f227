"""HPACK (RFC 7541): the header decoder an HTTP/2 server needs, and a small encoder for the
few headers it sends.

Requests are decoded in full: indexed fields, literals with or without indexing, the dynamic
table with its size updates, Huffman-coded strings. Responses repeat a handful of fields
(`content-type`, `grpc-status: 0`, ...): the encoder adds those to the client's table the first
time and sends one-byte references after that, which spares the client parsing them again for
every call; every other field goes as a literal without indexing, without Huffman coding.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

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
KNOWN_BLOCKS = 64  # header blocks remembered per connection while the table stays the same
Header = tuple[str, str]

__all__ = ["STATIC_TABLE", "Decoder", "Encoder", "HPACKError", "Header", "encode_literal"]


class Decoder:
    """One connection's decoding context: its dynamic table, newest entry first.

    A client repeating a call sends the same block again and again, all references to the
    table; such a block means the same headers until the table changes, so it is decoded once
    (`known`, emptied whenever the table changes)."""

    def __init__(self, max_size: int = 4096) -> None:
        self.max_size = max_size  # what our SETTINGS_HEADER_TABLE_SIZE allows
        self.size_limit = max_size  # the encoder's current choice, <= max_size
        self.size = 0
        self.table: deque[Header] = deque()
        self.version = 0  # counts the table's changes
        self.known: dict[bytes, tuple[Header, ...]] = {}

    def decode(self, block: bytes) -> tuple[Header, ...]:
        if (headers := self.known.get(block)) is not None:
            return headers
        version = self.version
        headers = tuple(self._fields(block))
        if self.version != version:
            self.known.clear()
        elif len(self.known) < KNOWN_BLOCKS:
            self.known[block] = headers
        return headers

    def _fields(self, block: bytes) -> Iterator[Header]:
        pos, end = 0, len(block)
        while pos < end:
            first = block[pos]
            if first & 0x80:  # indexed field
                index, pos = _integer(block, pos, 7)
                yield self._entry(index)
            elif first & 0x40:  # literal, added to the table
                header, pos = self._literal(block, pos, 6)
                self._add(header)
                yield header
            elif first & 0x20:  # dynamic table size update
                size, pos = _integer(block, pos, 5)
                if size > self.max_size:
                    raise HPACKError(f"table size {size} over the limit of {self.max_size}")
                self.size_limit = size
                self._evict(0)
                self.version += 1
            else:  # literal without indexing / never indexed
                header, pos = self._literal(block, pos, 4)
                yield header

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
        self.version += 1
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


class Encoder:
    """One connection's encoding context. Fields in `indexable` enter the client's table the
    first time they are sent (never more than `limit` bytes of them, so nothing is evicted) and
    are references after that; a block made only of references is built once."""

    def __init__(self, indexable: frozenset[Header], limit: int = 4096) -> None:
        self.indexable = indexable
        self.limit = limit
        self.inserted: list[Header] = []  # oldest first
        self.size = 0
        self.prefix = b""  # table size updates owed at the start of the next block
        self.known: dict[tuple[Header, ...], bytes] = {}

    def encode(self, fields: tuple[Header, ...]) -> bytes:
        if (block := self.known.get(fields)) is not None:
            return block
        count = len(self.inserted)
        block = self.prefix + b"".join(self._field(field) for field in fields)
        self.prefix = b""
        if len(self.inserted) != count:
            self.known.clear()  # references to older entries now carry other numbers
        elif all(field in self.inserted or field in STATIC_INDEX for field in fields):
            self.known[fields] = block
        return block

    def _field(self, field: Header) -> bytes:
        if (index := STATIC_INDEX.get(field)) is not None:
            return bytes((0x80 | index,))
        if field in self.inserted:
            newest_first = len(self.inserted) - self.inserted.index(field)
            return _encode_integer(len(STATIC_TABLE) + newest_first, 7, 0x80)
        size = len(field[0]) + len(field[1]) + ENTRY_OVERHEAD
        if field in self.indexable and self.size + size <= self.limit:
            self.inserted.append(field)
            self.size += size
            return b"\x40" + encode_literal(*field)[1:]  # literal with incremental indexing
        return encode_literal(*field)

    def resize(self, limit: int) -> None:
        """The client's SETTINGS_HEADER_TABLE_SIZE. A smaller table than ours: empty it with a
        size update and start again within the new size."""
        if limit >= self.limit:
            return
        self.prefix = _encode_integer(0, 5, 0x20) + _encode_integer(limit, 5, 0x20)
        self.limit, self.inserted, self.size = limit, [], 0
        self.known.clear()


STATIC_INDEX = {field: index for index, field in enumerate(STATIC_TABLE, 1) if field[1]}


def encode_literal(name: str, value: str) -> bytes:
    """One header as a literal without indexing, new name, no Huffman coding."""
    key, data = name.encode("latin-1"), value.encode("latin-1")
    return b"\x00" + _encode_integer(len(key), 7) + key + _encode_integer(len(data), 7) + data


def _encode_integer(value: int, prefix: int, flags: int = 0) -> bytes:
    mask = (1 << prefix) - 1
    if value < mask:
        return bytes([flags | value])
    out = bytearray([flags | mask])
    value -= mask
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
