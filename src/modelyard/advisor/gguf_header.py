"""Read a GGUF file's header — metadata and tensor descriptions — without touching the
tensor data, so a 40 GB model is inspected in milliseconds and a header-only file (as the
tests write) reads like the real thing.

Layout (little-endian): magic ``GGUF``, version u32, tensor count u64, metadata count u64,
then metadata (key string, value type u32, value) and tensor infos (name string, n_dims u32,
dims u64 x n_dims, ggml type u32, offset u64). Strings are a u64 length and UTF-8 bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from modelyard.errors import InvalidArgument

MAGIC = b"GGUF"
#: Arrays longer than this (token lists, merges) are kept as their length only.
KEEP_ARRAY_ITEMS = 64

# ggml tensor type id -> (name, elements per block, bytes per block).
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
}

# general.file_type -> the quantization name users know (Q4_K_M, ...).
FILE_TYPES: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4_MOE",
}

# metadata value type id -> struct format of a scalar
_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    ggml_type: int

    @property
    def elements(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count

    @property
    def nbytes(self) -> int:
        _, block, size = GGML_TYPES.get(self.ggml_type, ("?", 1, 4))
        return -(-self.elements // block) * size


@dataclass
class GGUFHeader:
    version: int
    metadata: dict[str, Any] = field(default_factory=dict)
    tensors: list[TensorInfo] = field(default_factory=list)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    def arch_value(self, key: str) -> Any:
        """`{architecture}.{key}`, e.g. arch_value("context_length")."""
        return self.metadata.get(f"{self.architecture}.{key}")

    @property
    def parameters(self) -> int:
        return sum(t.elements for t in self.tensors)

    @property
    def weight_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    @property
    def quantization(self) -> str:
        file_type = self.metadata.get("general.file_type")
        if isinstance(file_type, int) and file_type in FILE_TYPES:
            return FILE_TYPES[file_type]
        return self._dominant_type()

    def _dominant_type(self) -> str:
        totals: dict[str, int] = {}
        for tensor in self.tensors:
            name = GGML_TYPES.get(tensor.ggml_type, ("unknown", 1, 1))[0]
            totals[name] = totals.get(name, 0) + tensor.nbytes
        return max(totals, key=lambda k: totals[k]) if totals else "unknown"


def is_gguf(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == MAGIC


def read_header(path: Path) -> GGUFHeader:
    """The header of the GGUF file at `path`; InvalidArgument when it is not one."""
    with path.open("rb") as f:
        try:
            return _Reader(f).header()
        except (struct.error, UnicodeDecodeError, EOFError) as exc:
            raise InvalidArgument(f"{path.name} is not a readable GGUF file: {exc}") from exc


class _Reader:
    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream

    def header(self) -> GGUFHeader:
        if self.stream.read(4) != MAGIC:
            raise InvalidArgument("not a GGUF file (no GGUF magic)")
        version = self._scalar("<I")
        if version not in (2, 3):
            raise InvalidArgument(f"GGUF version {version} is not supported (2 and 3 are)")
        n_tensors, n_kv = self._scalar("<Q"), self._scalar("<Q")
        header = GGUFHeader(version)
        for _ in range(n_kv):
            key = self._string()
            header.metadata[key] = self._value(self._scalar("<I"))
        header.tensors = [self._tensor_info() for _ in range(n_tensors)]
        return header

    def _read(self, size: int) -> bytes:
        data = self.stream.read(size)
        if len(data) != size:
            raise EOFError("the file ends inside its header")
        return data

    def _scalar(self, fmt: str) -> Any:
        return struct.unpack(fmt, self._read(struct.calcsize(fmt)))[0]

    def _string(self) -> str:
        return self._read(self._scalar("<Q")).decode("utf-8")

    def _value(self, kind: int) -> Any:
        if kind == _STRING:
            return self._string()
        if kind == _ARRAY:
            return self._array()
        if kind not in _SCALARS:
            raise InvalidArgument(f"unknown GGUF metadata type {kind}")
        return self._scalar(_SCALARS[kind])

    def _array(self) -> Any:
        kind, count = self._scalar("<I"), self._scalar("<Q")
        if count > KEEP_ARRAY_ITEMS:
            self._skip_items(kind, count)
            return ArrayLength(count)
        return [self._value(kind) for _ in range(count)]

    def _skip_items(self, kind: int, count: int) -> None:
        if kind in _SCALARS:
            self.stream.seek(struct.calcsize(_SCALARS[kind]) * count, 1)
            return
        skip: Callable[[], Any] = self._skip_string if kind == _STRING else self._array
        for _ in range(count):
            skip()

    def _skip_string(self) -> None:
        self.stream.seek(self._scalar("<Q"), 1)

    def _tensor_info(self) -> TensorInfo:
        name = self._string()
        shape = tuple(self._scalar("<Q") for _ in range(self._scalar("<I")))
        ggml_type = self._scalar("<I")
        self._scalar("<Q")  # offset into the data section: not needed
        return TensorInfo(name, shape, ggml_type)


class ArrayLength(int):
    """A long metadata array (tokens, merges) kept only as its length."""
