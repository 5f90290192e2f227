"""Skim an ONNX file's protobuf without loading it: the graph's inputs and outputs, the
initializers' shapes and types (not their bytes), the operator types and the opset.

The file is memory-mapped and walked at the protobuf wire level, skipping every tensor's
data, so a multi-gigabyte model costs a few milliseconds and no memory. Field numbers are
those of onnx.proto (ModelProto.graph = 7, GraphProto.initializer = 5, ...).
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass, field
from pathlib import Path

from modelyard.advisor.protowire import Span, fields, ints, text
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
    for number, value in fields(buf, span):
        if number == 7 and isinstance(value, tuple):
            graph = value
        elif number == 2 and isinstance(value, tuple):
            summary.producer = text(buf, value)
        elif number == 8 and isinstance(value, tuple):
            summary.opset = max(summary.opset, _opset(buf, value))
    if graph is None:
        raise InvalidArgument("the file holds no ONNX graph")
    _graph(buf, graph, summary)
    return summary


def _graph(buf: mmap.mmap, span: Span, summary: OnnxSummary) -> None:
    initializers: set[str] = set()
    inputs: list[OnnxTensor] = []
    for number, value in fields(buf, span):
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
    for number, value in fields(buf, span):
        if number == 1:
            dims += ints(buf, value)
        elif number == 2 and isinstance(value, int):
            dtype = value
        elif number == 8 and isinstance(value, tuple):
            name = text(buf, value)
    elements = 1
    for dim in dims:
        elements *= dim
    datatype, size = ONNX_DTYPES.get(dtype, ("FP32", 4))
    summary.parameters += elements
    summary.weight_bytes += elements * size
    summary.weight_dtypes[datatype] = summary.weight_dtypes.get(datatype, 0) + elements
    return name


def _node_op(buf: mmap.mmap, span: Span) -> str:
    for number, value in fields(buf, span):
        if number == 4 and isinstance(value, tuple):
            return text(buf, value)
    return ""


def _opset(buf: mmap.mmap, span: Span) -> int:
    domain, version = "", 0
    for number, value in fields(buf, span):
        if number == 1 and isinstance(value, tuple):
            domain = text(buf, value)
        elif number == 2 and isinstance(value, int):
            version = value
    return version if domain in ("", "ai.onnx") else 0


def _value_info(buf: mmap.mmap, span: Span) -> OnnxTensor:
    tensor = OnnxTensor("", "FP32", [])
    for number, value in fields(buf, span):
        if number == 1 and isinstance(value, tuple):
            tensor.name = text(buf, value)
        elif number == 2 and isinstance(value, tuple):
            _tensor_type(buf, value, tensor)
    return tensor


def _tensor_type(buf: mmap.mmap, type_span: Span, tensor: OnnxTensor) -> None:
    for number, value in fields(buf, type_span):
        if number != 1 or not isinstance(value, tuple):
            continue  # sequences, maps (sklearn's ZipMap) and optionals: no tensor type
        for inner, item in fields(buf, value):
            if inner == 1 and isinstance(item, int):
                tensor.datatype = ONNX_DTYPES.get(item, ("FP32", 4))[0]
            elif inner == 2 and isinstance(item, tuple):
                tensor.shape = [
                    _dimension(buf, d)
                    for n, d in fields(buf, item)
                    if n == 1 and isinstance(d, tuple)
                ]


def _dimension(buf: mmap.mmap, span: Span) -> int | str:
    for number, value in fields(buf, span):
        if number == 1 and isinstance(value, int):
            return value
        if number == 2 and isinstance(value, tuple):
            return text(buf, value) or "?"
    return "?"
