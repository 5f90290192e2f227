"""The worker's wire format: every datatype survives a round trip, small arrays inline and large
ones through shared memory that the receiver cleans up, and errors keep their codes."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest

from modelyard.errors import (
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    ModelLoadError,
    ModelyardError,
    Unimplemented,
)
from modelyard.runtimes import RequestArrays, ResponseArrays
from modelyard.runtimes.worker import execution_timeout, wire

ARRAYS: dict[str, np.ndarray] = {
    "fp32": np.arange(12, dtype=np.float32).reshape(3, 4),
    "fp16": np.array([1.5, -2.0], dtype=np.float16),
    "bool": np.array([[True, False]]),
    "int64_big_endian": np.array([1, 2, 3], dtype=">i8"),
    "strided": np.arange(20, dtype=np.int32).reshape(4, 5)[:, ::2],
    "scalar": np.array(7.0),
    "empty": np.zeros((0, 3), dtype=np.float32),
    "bytes": np.array([b"a", b"", "\u00e9".encode()], dtype=object),
    "text": np.array(["x", "yz"]),
}


def _round_trip(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.sendall(wire.encode({"op": "infer", "id": 1}, arrays))
        header, decoded = wire.read_blocking(theirs)
    assert header == {"op": "infer", "id": 1}
    assert decoded is not None
    return decoded


@pytest.fixture
def pair(tmp_path: Path) -> tuple[wire.Shm, wire.Shm]:
    """A sender's and a receiver's shared memory, one ring between them."""
    path = str(tmp_path / "ring")
    sender = wire.Shm(wire.shm_prefix(f"test{os.getpid()}"), out=wire.Ring(path, create=True))
    return sender, wire.Shm("", into=wire.Ring(path))


def _send(
    sender: wire.Shm, receiver: wire.Shm, arrays: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    frame = wire.encode({"op": "result"}, arrays, sender)
    head_len = int.from_bytes(frame[:4], "little")
    _, decoded = wire.decode(frame[8 : 8 + head_len], frame[8 + head_len :], receiver)
    assert decoded is not None
    return decoded


def test_every_kind_of_array_survives_a_round_trip() -> None:
    decoded = _round_trip(ARRAYS)
    for name, array in ARRAYS.items():
        got = decoded[name]
        assert got.shape == array.shape, name
        if array.dtype.kind in "OU":
            expected = [v if isinstance(v, bytes) else v.encode() for v in array.reshape(-1)]
            assert list(got.reshape(-1)) == expected
        else:
            np.testing.assert_array_equal(got, array)
            assert got.dtype == array.dtype.newbyteorder("=")


def _files(prefix: str) -> list[str]:
    return [p for p in os.listdir(wire.SHM_DIR) if p.startswith(os.path.basename(prefix))]


def test_large_arrays_cross_in_the_ring_and_wrap_around_it(
    pair: tuple[wire.Shm, wire.Shm],
) -> None:
    sender, receiver = pair
    rng = np.random.default_rng(1)
    small = np.ones(4, dtype=np.float32)
    for _ in range(3 * wire.RING_BYTES // (3 << 20)):  # 3 MiB at a time, three laps
        big = rng.random((3 << 20) // 8)
        decoded = _send(sender, receiver, {"big": big, "small": small})
        np.testing.assert_array_equal(decoded["big"], big)
        np.testing.assert_array_equal(decoded["small"], small)
        decoded["big"][0] = -1.0  # the receiver owns its copy
    assert not _files(sender.prefix)


def test_what_the_ring_cannot_take_crosses_in_a_file_unlinked_on_arrival(
    pair: tuple[wire.Shm, wire.Shm],
) -> None:
    sender, receiver = pair
    held = [np.full(wire.RING_BYTES * 2 // 5, i, dtype=np.uint8) for i in range(3)]
    frame = wire.encode({"op": "result"}, {f"a{i}": a for i, a in enumerate(held)}, sender)
    assert len(frame) < wire.SHM_THRESHOLD  # none of them is in the frame
    assert len(_files(sender.prefix)) == 1  # two took the ring, it was full for the third
    head_len = int.from_bytes(frame[:4], "little")
    _, decoded = wire.decode(frame[8 : 8 + head_len], frame[8 + head_len :], receiver)
    assert decoded is not None
    for i, array in enumerate(held):
        np.testing.assert_array_equal(decoded[f"a{i}"], array)
    decoded["a2"][0] = 7  # a file is mapped copy-on-write: the receiver may write
    assert not _files(sender.prefix)
    too_big = np.zeros(wire.RING_BYTES, dtype=np.uint8)  # over half the ring: a file
    np.testing.assert_array_equal(_send(sender, receiver, {"x": too_big})["x"], too_big)


def test_sweep_removes_what_a_dead_side_left() -> None:
    shm = wire.Shm(wire.shm_prefix(f"sweep{os.getpid()}"))
    wire.encode({"op": "x"}, {"big": np.zeros(wire.SHM_THRESHOLD + 1, dtype=np.uint8)}, shm)
    assert _files(shm.prefix)
    wire.sweep(shm.prefix)
    assert not _files(shm.prefix)


def test_errors_keep_their_code() -> None:
    header = wire.error_header(DeadlineExceeded("too slow"))
    assert isinstance(wire.error_from(header), DeadlineExceeded)
    assert str(wire.error_from(header)) == "too slow"
    other = wire.error_from(wire.error_header(ValueError("boom")))
    assert isinstance(other, Internal) and "boom" in str(other)
    assert isinstance(wire.error_from(wire.error_header(InvalidArgument("x"))), InvalidArgument)


def test_a_closed_socket_ends_the_read() -> None:
    ours, theirs = socket.socketpair()
    ours.close()
    with theirs, pytest.raises(ConnectionError):
        wire.read_blocking(theirs)


@pytest.mark.parametrize(("value", "seconds"), [(None, None), ("0", None), ("2.5", 2.5)])
def test_execution_timeout_reads_seconds(value: str | None, seconds: float | None) -> None:
    assert execution_timeout(value) == seconds


@pytest.mark.parametrize("value", ["soon", "-1", "nan"])
def test_a_bad_execution_timeout_is_a_load_error(value: str) -> None:
    with pytest.raises(ModelLoadError, match="execution_timeout_s must be seconds"):
        execution_timeout(value)


def test_a_list_of_requests_and_its_answers_cross_in_one_frame_each() -> None:
    parts: list[dict[str, np.ndarray]] = [
        RequestArrays({"x": np.array([1.0], np.float32)}, "a", {"k": 1}, ["y"]),
        RequestArrays({"x": np.array([2.0, 3.0], np.float32)}, "b", {}, []),
        {"x": np.array([4.0], np.float32)},  # plain arrays (no id or parameters)
    ]
    specs, arrays = wire.pack_many(parts)
    header = {"op": "many", "id": 1, "reqs": specs}
    decoded, received = wire.decode(*_split(wire.encode(header, arrays)))
    back = wire.unpack_many(decoded["reqs"], received or {})
    assert [type(p) for p in back] == [RequestArrays, RequestArrays, dict]
    first, second = back[0], back[1]
    assert isinstance(first, RequestArrays) and isinstance(second, RequestArrays)
    assert (first.id, first.parameters, first.outputs) == ("a", {"k": 1}, ["y"])
    assert second.id == "b"
    np.testing.assert_array_equal(second["x"], [2.0, 3.0])

    results: list[dict[str, np.ndarray] | ModelyardError] = [
        ResponseArrays({"y": np.array([2.0], np.float32)}, {"seen": "a"}),
        Unimplemented("not this one"),
        {"y": np.array([8.0], np.float32)},
    ]
    specs, arrays = wire.pack_results(results)
    decoded, received = wire.decode(*_split(wire.encode({"op": "result", "res": specs}, arrays)))
    answers = wire.unpack_results(decoded["res"], received or {})
    assert isinstance(answers[0], ResponseArrays) and answers[0].parameters == {"seen": "a"}
    assert isinstance(answers[1], Unimplemented) and answers[1].message == "not this one"
    assert not isinstance(answers[2], ModelyardError)
    np.testing.assert_array_equal(answers[2]["y"], [8.0])


def _split(frame: bytes) -> tuple[bytes, bytes]:
    head = int.from_bytes(frame[:4], "little")
    return frame[8 : 8 + head], frame[8 + head :]
