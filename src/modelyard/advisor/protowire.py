"""Protobuf's wire format, read field by field without generated classes: what the advisor
uses to skim ONNX graphs and TensorFlow SavedModels (and their checkpoint indexes) without
importing their libraries. Length-delimited values come back as spans into the buffer, so a
message's large fields (weights, graph bodies) are skipped, never copied."""

from __future__ import annotations

import mmap
from collections.abc import Iterator

from modelyard.errors import InvalidArgument

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
#: (start, end) of a length-delimited value in the buffer
Span = tuple[int, int]
Buffer = bytes | mmap.mmap


def fields(buf: Buffer, span: Span) -> Iterator[tuple[int, int | Span]]:
    """(field number, value) pairs of one message: ints for varints and fixed-width values,
    (start, end) spans for length-delimited ones (sub-messages, strings, packed data)."""
    pos, end = span
    while pos < end:
        key, pos = varint(buf, pos)
        wire = key & 7
        if wire == _VARINT:
            value, pos = varint(buf, pos)
            yield key >> 3, value
        elif wire == _BYTES:
            length, pos = varint(buf, pos)
            yield key >> 3, (pos, pos + length)
            pos += length
        elif wire in (_FIXED64, _FIXED32):
            width = 8 if wire == _FIXED64 else 4
            yield key >> 3, int.from_bytes(buf[pos : pos + width], "little")
            pos += width
        else:
            raise InvalidArgument(f"unsupported protobuf wire type {wire}")


def varint(buf: Buffer, pos: int) -> tuple[int, int]:
    """The varint at `pos` and the position after it."""
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def signed(value: int) -> int:
    """An int64 field's value: negative numbers travel as 10-byte two's complement varints."""
    return value - (1 << 64) if value >= 1 << 63 else value


def ints(buf: Buffer, value: int | Span) -> list[int]:
    """A repeated int64 field's values, packed or not."""
    if isinstance(value, int):
        return [value]
    out, pos = [], value[0]
    while pos < value[1]:
        item, pos = varint(buf, pos)
        out.append(item)
    return out


def text(buf: Buffer, span: Span) -> str:
    return bytes(buf[span[0] : span[1]]).decode("utf-8")
