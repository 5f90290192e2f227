"""HPACK's Huffman code (RFC 7541, Appendix B), decoding only.

The code is canonical: codes of one length are consecutive, in symbol order, and shorter codes
come first. So the table is just each symbol's code length (256 bytes + EOS), written here as
runs of (count, length); the codes follow from them.
"""

from __future__ import annotations

# fmt: off
_RUNS = (
    (1, 13), (1, 23), (7, 28), (1, 24), (1, 30), (2, 28), (1, 30), (8, 28), (1, 30), (9, 28),
    (1, 6), (2, 10), (1, 12), (1, 13), (1, 6), (1, 8), (1, 11), (2, 10), (1, 8), (1, 11),
    (1, 8), (3, 6), (3, 5), (7, 6), (1, 7), (1, 8), (1, 15), (1, 6), (1, 12), (1, 10),
    (1, 13), (1, 6), (22, 7), (1, 8), (1, 7), (1, 8), (1, 13), (1, 19), (1, 13), (1, 14),
    (1, 6), (1, 15), (1, 5), (1, 6), (1, 5), (1, 6), (1, 5), (3, 6), (1, 5), (2, 7), (3, 6),
    (1, 5), (1, 6), (1, 7), (1, 6), (2, 5), (1, 6), (5, 7), (1, 15), (1, 11), (1, 14),
    (1, 13), (1, 28), (1, 20), (1, 22), (2, 20), (3, 22), (1, 23), (1, 22), (5, 23), (1, 24),
    (1, 23), (2, 24), (1, 22), (1, 23), (1, 24), (4, 23), (1, 21), (1, 22), (1, 23), (1, 22),
    (2, 23), (1, 24), (1, 22), (1, 21), (1, 20), (2, 22), (2, 23), (1, 21), (1, 23), (2, 22),
    (1, 24), (1, 21), (1, 22), (2, 23), (2, 21), (1, 22), (1, 21), (1, 23), (1, 22), (2, 23),
    (1, 20), (3, 22), (1, 23), (2, 22), (1, 23), (2, 26), (1, 20), (1, 19), (1, 22), (1, 23),
    (1, 22), (1, 25), (3, 26), (2, 27), (1, 26), (1, 24), (1, 25), (1, 19), (1, 21), (1, 26),
    (2, 27), (1, 26), (1, 27), (1, 24), (2, 21), (2, 26), (1, 28), (3, 27), (1, 20), (1, 24),
    (1, 20), (1, 21), (1, 22), (2, 21), (1, 23), (2, 22), (2, 25), (2, 24), (1, 26), (1, 23),
    (1, 26), (1, 27), (2, 26), (5, 27), (1, 28), (5, 27), (1, 26), (1, 30),
)
# fmt: on
LENGTHS = tuple(length for count, length in _RUNS for _ in range(count))
EOS = 256


class HPACKError(ValueError):
    """A header block that does not decode: a connection error (COMPRESSION_ERROR)."""


def _codes() -> dict[tuple[int, int], int]:
    """(length, code) -> symbol, assigning canonical codes."""
    table: dict[tuple[int, int], int] = {}
    code, previous = 0, 0
    for length, symbol in sorted((length, symbol) for symbol, length in enumerate(LENGTHS)):
        code <<= length - previous
        table[(length, code)] = symbol
        code, previous = code + 1, length
    return table


CODES = _codes()


def huffman_decode(data: bytes) -> bytes:
    """Decode a Huffman-coded header string; padding must be at most 7 one-bits (EOS's
    prefix), as the RFC requires."""
    out = bytearray()
    code = length = 0
    for byte in data:
        for shift in range(7, -1, -1):
            code = code << 1 | (byte >> shift) & 1
            length += 1
            symbol = CODES.get((length, code))
            if symbol is not None:
                if symbol == EOS:
                    raise HPACKError("a Huffman string contains EOS")
                out.append(symbol)
                code = length = 0
    if length > 7 or code != (1 << length) - 1:
        raise HPACKError("a Huffman string is not padded with EOS's prefix")
    return bytes(out)
