"""KServe v2 datatypes <-> numpy, and the JSON and binary-data codecs for tensors.

BYTES tensors are numpy object arrays of `bytes`; on the wire (binary extension, gRPC raw
contents) each element is a 4-byte little-endian length followed by its bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from modelyard.errors import InvalidArgument

try:  # bfloat16 comes with ml_dtypes (a dependency of onnx); without it BF16 is refused.
    from ml_dtypes import bfloat16 as _bf16

    _BF16: np.dtype[Any] | None = np.dtype(_bf16)
except ImportError:  # pragma: no cover - depends on the install
    _BF16 = None

_NUMERIC: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
if _BF16 is not None:
    _NUMERIC["BF16"] = _BF16

DATATYPES: tuple[str, ...] = (*_NUMERIC, "BYTES")
_BY_DTYPE: dict[np.dtype[Any], str] = {dt: name for name, dt in _NUMERIC.items()}


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    """The numpy dtype for a v2 datatype name (object for BYTES)."""
    if datatype == "BYTES":
        return np.dtype(object)
    try:
        return _NUMERIC[datatype]
    except KeyError:
        raise InvalidArgument(
            f"unknown datatype {datatype!r}; use one of {', '.join(DATATYPES)}"
        ) from None


def datatype_of(array: np.ndarray) -> str:
    """The v2 datatype name of a numpy array."""
    kind = array.dtype.kind
    if kind in "OSU":
        return "BYTES"
    try:
        return _BY_DTYPE[array.dtype]
    except KeyError:
        raise InvalidArgument(f"numpy dtype {array.dtype} has no KServe v2 datatype") from None


def element_count(shape: Sequence[int]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def check_shape(shape: Any) -> list[int]:
    if type(shape) is list:
        for dim in shape:
            if type(dim) is not int or dim < 0:  # bool is not int here, as it must not be
                break
        else:
            return shape
    raise InvalidArgument(f"shape must be a list of non-negative integers, got {shape!r}")


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    if data and isinstance(data[0], list):
        flat: list[Any] = []
        for row in data:
            flat.extend(_flatten(row))
        return flat
    return data


def _to_bytes(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    raise InvalidArgument(f"BYTES elements must be strings, got {type(item).__name__}")


def from_json(name: str, datatype: str, shape: list[int], data: Any) -> np.ndarray:
    """Decode a JSON `data` field (flat or nested, row-major) into an array of `shape`."""
    dtype = numpy_dtype(datatype)
    flat = (
        data if type(data) is list and (not data or type(data[0]) is not list) else _flatten(data)
    )
    expected = element_count(shape)
    if len(flat) != expected:
        raise InvalidArgument(
            f"input {name!r}: shape {shape} needs {expected} elements but data has {len(flat)}"
        )
    if datatype == "BYTES":
        array = np.empty(len(flat), dtype=object)
        array[:] = [_to_bytes(item) for item in flat]
        return array.reshape(shape)
    if datatype == "BOOL" and not all(isinstance(v, bool) for v in flat):
        raise InvalidArgument(f"input {name!r}: BOOL data must be true/false")
    try:
        return np.asarray(flat, dtype=dtype).reshape(shape)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidArgument(
            f"input {name!r}: data does not fit datatype {datatype}: {exc}"
        ) from exc


def to_json(array: np.ndarray) -> list[Any]:
    """Flatten an array into JSON-able data (BYTES as UTF-8 strings where they decode)."""
    if array.dtype.kind in "OSU":
        return [_json_text(item) for item in array.reshape(-1)]
    if _BF16 is not None and array.dtype == _BF16:
        array = array.astype(np.float32)
    result: list[Any] = array.reshape(-1).tolist()
    return result


def _json_text(item: Any) -> Any:
    if isinstance(item, bytes):
        try:
            return item.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgument(
                "a BYTES output is not UTF-8 text; ask for it as binary data "
                '(output parameter "binary_data": true)'
            ) from None
    return item if isinstance(item, str) else str(item)


def from_binary(
    name: str, datatype: str, shape: list[int], buffer: bytes | memoryview
) -> np.ndarray:
    """Decode raw little-endian tensor bytes (binary extension, gRPC raw contents)."""
    count = element_count(shape)
    if datatype == "BYTES":
        return _bytes_from_binary(name, shape, count, memoryview(buffer))
    dtype = numpy_dtype(datatype)
    if len(buffer) != count * dtype.itemsize:
        raise InvalidArgument(
            f"input {name!r}: shape {shape} of {datatype} needs {count * dtype.itemsize} bytes "
            f"but {len(buffer)} were sent"
        )
    return np.frombuffer(buffer, dtype=dtype.newbyteorder("<")).reshape(shape)


def _bytes_from_binary(name: str, shape: list[int], count: int, view: memoryview) -> np.ndarray:
    items: list[bytes] = []
    offset, end = 0, len(view)
    while offset < end:
        if offset + 4 > end:
            raise InvalidArgument(f"input {name!r}: BYTES data ends inside a length prefix")
        (length,) = struct.unpack_from("<I", view, offset)
        offset += 4
        if offset + length > end:
            raise InvalidArgument(f"input {name!r}: BYTES element runs past the end of its data")
        items.append(bytes(view[offset : offset + length]))
        offset += length
    if len(items) != count:
        raise InvalidArgument(
            f"input {name!r}: shape {shape} needs {count} elements but {len(items)} were sent"
        )
    array = np.empty(count, dtype=object)
    array[:] = items
    return array.reshape(shape)


def to_binary(array: np.ndarray) -> bytes:
    """Encode an array as raw little-endian bytes (BYTES: length-prefixed elements)."""
    if array.dtype.kind in "OSU":
        parts = []
        for item in array.reshape(-1):
            data = item if isinstance(item, bytes) else str(item).encode("utf-8")
            parts.append(struct.pack("<I", len(data)))
            parts.append(data)
        return b"".join(parts)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return np.ascontiguousarray(array).tobytes()


def as_bytes_array(array: np.ndarray) -> np.ndarray:
    """Normalise a text/bytes array (numpy `U`/`S`/object of str) to an object array of bytes."""
    out = np.empty(array.shape, dtype=object)
    out.reshape(-1)[:] = [
        _to_bytes(item) if not isinstance(item, bytes) else item for item in array.reshape(-1)
    ]
    return out


#: OpenVINO element type names -> KServe datatypes (the IR's `element_type` spelling).
OV_TYPES = {
    "boolean": "BOOL",
    "u8": "UINT8",
    "u16": "UINT16",
    "u32": "UINT32",
    "u64": "UINT64",
    "i8": "INT8",
    "i16": "INT16",
    "i32": "INT32",
    "i64": "INT64",
    "f16": "FP16",
    "f32": "FP32",
    "f64": "FP64",
    "bf16": "BF16",
}
