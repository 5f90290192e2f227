from __future__ import annotations

import numpy as np
import pytest

from modelyard import tensors
from modelyard.errors import InvalidArgument


@pytest.mark.parametrize("datatype", [d for d in tensors.DATATYPES if d != "BYTES"])
def test_binary_round_trip_every_numeric_type(datatype: str) -> None:
    dtype = tensors.numpy_dtype(datatype)
    array = (np.arange(6) % 2 == 0) if datatype == "BOOL" else np.arange(6).astype(dtype)
    array = array.reshape(2, 3)
    back = tensors.from_binary("x", datatype, [2, 3], tensors.to_binary(array))
    np.testing.assert_array_equal(back, array)
    assert tensors.datatype_of(back) == datatype


def test_bytes_binary_round_trip() -> None:
    array = np.array([b"a", b"", "ü".encode()], dtype=object)
    encoded = tensors.to_binary(array)
    assert encoded[:4] == b"\x01\x00\x00\x00"
    assert tensors.from_binary("t", "BYTES", [3], encoded).tolist() == array.tolist()


def test_json_nested_and_flat_data() -> None:
    flat = tensors.from_json("x", "INT32", [2, 2], [1, 2, 3, 4])
    nested = tensors.from_json("x", "INT32", [2, 2], [[1, 2], [3, 4]])
    np.testing.assert_array_equal(flat, nested)
    assert tensors.to_json(flat) == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("datatype", "shape", "data", "fragment"),
    [
        ("FP32", [3], [1, 2], "needs 3 elements"),
        ("BOOL", [1], [1], "true/false"),
        ("INT8", [1], [1000], "does not fit"),
        ("BYTES", [1], [1], "must be strings"),
        ("NOPE", [1], [1], "unknown datatype"),
    ],
)
def test_json_errors_say_what_to_fix(
    datatype: str, shape: list[int], data: list[object], fragment: str
) -> None:
    with pytest.raises(InvalidArgument, match=fragment):
        tensors.from_json("x", datatype, shape, data)


def test_binary_size_mismatch() -> None:
    with pytest.raises(InvalidArgument, match="needs 16 bytes but 12"):
        tensors.from_binary("x", "FP32", [4], b"\x00" * 12)
    with pytest.raises(InvalidArgument, match="needs 2 elements but 1"):
        tensors.from_binary("t", "BYTES", [2], b"\x01\x00\x00\x00a")
    with pytest.raises(InvalidArgument, match="length prefix"):
        tensors.from_binary("t", "BYTES", [1], b"\x01\x00")


def test_bf16_when_ml_dtypes_present() -> None:
    pytest.importorskip("ml_dtypes")
    array = tensors.from_json("x", "BF16", [2], [1.5, -2.0])
    assert tensors.datatype_of(array) == "BF16"
    assert tensors.to_json(array) == [1.5, -2.0]
