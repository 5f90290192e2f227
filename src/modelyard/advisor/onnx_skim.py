"""Skim an ONNX file's protobuf without loading it: the graph's inputs and outputs, the
initializers' shapes and types (not their bytes), the operator types and the opset.

The file is memory-mapped and walked at the protobuf wire level, skipping every tensor's
data, so a multi-gigabyte model costs a few milliseconds and no memory. Field numbers are
those of onnx.proto (ModelProto.graph = 7, GraphProto.initializer = 5, ...).
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from modelyard.errors import InvalidArgument

# TensorProto.DataType -> (v2 datatype, bytes per element)
ONNX_DTYPES: dict[int, tuple[str, float]] = {
    1: ("FP32", 4),
    2: ("UINT8", 1),
    3: ("INT8", 1),
    4: ("UINT16", 2),
    5: ("INT16", 2),
    6: ("INT32", 4),
    7: ("INT64", 8),
    8: ("BYTES", 8),
    9: ("BOOL", 1),
    10: ("FP16", 2),
    11: ("FP64", 8),
    12: ("UINT32", 4),
    13: ("UINT64", 8),
    14: ("COMPLEX64", 8),
    15: ("COMPLEX128", 16),
    16: ("BF16", 2),
    17: ("FP8", 1),
    18: ("FP8", 1),
    19: ("FP8", 1),
    20: ("FP8", 1),
    21: ("UINT4", 0.5),
    22: ("INT4", 0.5),
    23: ("FP4", 0.5),
}

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
Span = tuple[int, int]


@dataclass
class OnnxTensor:
    name: str
    datatype: str
    shape: list[int | str]  # ints, or a symbolic dimension's name


@dataclass
class OnnxSummary:
    inputs: list[OnnxTensor] = field(default_factory=list)
    outputs: list[OnnxTensor] = field(default_factory=list)
    parameters: int = 0
    weight_bytes: float = 0.0
    weight_dtypes: dict[str, int] = field(default_factory=dict)  # datatype -> elements
    op_types: set[str] = field(default_factory=set)
    opset: int = 0
    producer: str = ""


def skim(path: Path) -> OnnxSummary:
    """Summarise the ONNX model at `path`; InvalidArgument when it does not parse."""
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        try:
            return _model(buf, (0, len(buf)))
        except (IndexError, UnicodeDecodeError) as exc:
            raise InvalidArgument(f"{path.name} is not a readable ONNX file: {exc}") from exc


def _model(buf: mmap.mmap, span: Span) -> OnnxSummary:
    summary = OnnxSummary()
    graph: Span | None = None
    for number, value in _fields(buf, span):
        if number == 7 and isinstance(value, tuple):
            graph = value
        elif number == 2 and isinstance(value, tuple):
            summary.producer = _text(buf, value)
        elif number == 8 and isinstance(value, tuple):
            summary.opset = max(summary.opset, _opset(buf, value))
    if graph is None:
        raise InvalidArgument("the file holds no ONNX graph")
    _graph(buf, graph, summary)
    return summary


def _graph(buf: mmap.mmap, span: Span, summary: OnnxSummary) -> None:
    initializers: set[str] = set()
    inputs: list[OnnxTensor] = []
    for number, value in _fields(buf, span):
        if not isinstance(value, tuple):
            continue
        if number == 1:
            summary.op_types.add(_node_op(buf, value))
        elif number == 5:
            initializers.add(_initializer(buf, value, summary))
        elif number == 11:
            inputs.append(_value_info(buf, value))
        elif number == 12:
            summary.outputs.append(_value_info(buf, value))
    # Older exporters list initializers among the inputs too; they are not request inputs.
    summary.inputs = [t for t in inputs if t.name not in initializers]


def _initializer(buf: mmap.mmap, span: Span, summary: OnnxSummary) -> str:
    dims: list[int] = []
    dtype, name = 0, ""
    for number, value in _fields(buf, span):
        if number == 1:
            dims += _ints(buf, value)
        elif number == 2 and isinstance(value, int):
            dtype = value
        elif number == 8 and isinstance(value, tuple):
            name = _text(buf, value)
    elements = 1
    for dim in dims:
        elements *= dim
    datatype, size = ONNX_DTYPES.get(dtype, ("FP32", 4))
    summary.parameters += elements
    summary.weight_bytes += elements * size
    summary.weight_dtypes[datatype] = summary.weight_dtypes.get(datatype, 0) + elements
    return name


def _node_op(buf: mmap.mmap, span: Span) -> str:
    for number, value in _fields(buf, span):
        if number == 4 and isinstance(value, tuple):
            return _text(buf, value)
    return ""


def _opset(buf: mmap.mmap, span: Span) -> int:
    domain, version = "", 0
    for number, value in _fields(buf, span):
        if number == 1 and isinstance(value, tuple):
            domain = _text(buf, value)
        elif number == 2 and isinstance(value, int):
            version = value
    return version if domain in ("", "ai.onnx") else 0


def _value_info(buf: mmap.mmap, span: Span) -> OnnxTensor:
    tensor = OnnxTensor("", "FP32", [])
    for number, value in _fields(buf, span):
        if number == 1 and isinstance(value, tuple):
            tensor.name = _text(buf, value)
        elif number == 2 and isinstance(value, tuple):
            _tensor_type(buf, value, tensor)
    return tensor


def _tensor_type(buf: mmap.mmap, type_span: Span, tensor: OnnxTensor) -> None:
    for number, value in _fields(buf, type_span):
        if number != 1 or not isinstance(value, tuple):
            continue  # sequences, maps (sklearn's ZipMap) and optionals: no tensor type
        for inner, item in _fields(buf, value):
            if inner == 1 and isinstance(item, int):
                tensor.datatype = ONNX_DTYPES.get(item, ("FP32", 4))[0]
            elif inner == 2 and isinstance(item, tuple):
                tensor.shape = [
                    _dimension(buf, d)
                    for n, d in _fields(buf, item)
                    if n == 1 and isinstance(d, tuple)
                ]


def _dimension(buf: mmap.mmap, span: Span) -> int | str:
    for number, value in _fields(buf, span):
        if number == 1 and isinstance(value, int):
            return value
        if number == 2 and isinstance(value, tuple):
            return _text(buf, value) or "?"
    return "?"


# ---- protobuf wire format --------------------------------------------------------------


def _fields(buf: mmap.mmap, span: Span) -> Iterator[tuple[int, int | Span]]:
    """(field number, value) pairs of one message: ints for varints and fixed-width values,
    (start, end) spans for length-delimited ones (sub-messages, strings, packed data)."""
    pos, end = span
    while pos < end:
        key, pos = _varint(buf, pos)
        wire = key & 7
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
            yield key >> 3, value
        elif wire == _BYTES:
            length, pos = _varint(buf, pos)
            yield key >> 3, (pos, pos + length)
            pos += length
        elif wire in (_FIXED64, _FIXED32):
            width = 8 if wire == _FIXED64 else 4
            yield key >> 3, int.from_bytes(buf[pos : pos + width], "little")
            pos += width
        else:
            raise InvalidArgument(f"unsupported protobuf wire type {wire}")


def _varint(buf: mmap.mmap, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _ints(buf: mmap.mmap, value: int | Span) -> list[int]:
    """A repeated int64 field's values, packed or not."""
    if isinstance(value, int):
        return [value]
    out, pos = [], value[0]
    while pos < value[1]:
        item, pos = _varint(buf, pos)
        out.append(item)
    return out


def _text(buf: mmap.mmap, span: Span) -> str:
    return bytes(buf[span[0] : span[1]]).decode("utf-8")
