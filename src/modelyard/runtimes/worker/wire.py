"""The worker's wire format: framed messages over a Unix socket pair, arrays beside them.

A frame is 8 bytes (header length, payload length, little-endian u32), a JSON header, then
the payload: the raw bytes of the small arrays the header describes, back to back. An array
larger than `SHM_THRESHOLD` bytes never enters the socket; it goes through shared memory:

- a **ring** (`Ring`): each direction of each worker has one shared-memory arena of
  `RING_BYTES`. The sender copies the array in at its head; the receiver, reading frames in
  order, copies it out and moves the tail (a word in the arena) past it. No system call, no
  page fault after the first lap: two memory copies per array.
- a **file**, for an array larger than half the ring or one that finds the ring full: the
  sender writes it into a fresh POSIX shared-memory file (/dev/shm) and sends its path; the
  receiver maps it copy-on-write, unlinks it at once (the mapping keeps it alive until the
  array is freed) and wraps it without copying.

Arrays are never pickled. BYTES tensors travel in the KServe binary form (u32 length before
each element).

    header {"op": ..., "id": ..., "a": [[name, dtype, shape, where], ...], ...}
    where:  an int (bytes in the payload) | [start, size] (in the ring) | a path (a file)

The header is JSON, so a worker (which runs model code) can never make the server run code
by what it sends.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import mmap
import os
import socket
import struct
import tempfile
from asyncio import StreamReader
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import orjson

from modelyard.errors import (
    Code,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    ModelyardError,
    NotFound,
    ResourceExhausted,
    Unavailable,
    Unimplemented,
)
from modelyard.runtimes.base import RequestArrays, ResponseArrays
from modelyard.spec.config import DynamicBatching, ModelConfig, TensorSpec, VersionPolicy
from modelyard.tensors import from_binary, to_binary

Arrays = dict[str, np.ndarray]
Header = dict[str, Any]

#: Arrays larger than this (bytes) go through shared memory; smaller ones inline.
SHM_THRESHOLD = 64 * 1024
#: The arena of each direction of each worker (memory is taken as it is first used).
RING_BYTES = 32 * 1024 * 1024
_RING_HEADER = 64
SHM_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
_PREFIX = struct.Struct("<II")
_names = itertools.count()


def shm_prefix(tag: str) -> str:
    """The path prefix of the shared-memory files one side of one worker writes (the server
    side's tag names the server and the worker, the worker side's its own pid)."""
    return os.path.join(SHM_DIR, f"modelyard-{tag}-")


def sweep(prefix: str) -> None:
    """Remove files left by a side that died before the other read them."""
    for path in glob.glob(glob.escape(prefix) + "*"):
        with contextlib.suppress(OSError):
            os.unlink(path)


# ---- frames ---------------------------------------------------------------------------------


class Ring:
    """One direction's shared arena. The sender owns `head` (a count of bytes ever placed);
    the receiver writes `tail` (bytes ever taken) into the arena's first word."""

    def __init__(self, path: str, create: bool = False) -> None:
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        fd = os.open(path, flags, 0o600)
        try:
            if create:
                os.ftruncate(fd, _RING_HEADER + RING_BYTES)
            self._mm = mmap.mmap(fd, _RING_HEADER + RING_BYTES)
        finally:
            os.close(fd)
        self._tail = np.frombuffer(self._mm, dtype=np.uint64, count=1)
        self._data = np.frombuffer(self._mm, dtype=np.uint8, offset=_RING_HEADER)
        self._head = 0

    def put(self, data: memoryview) -> list[int] | None:
        """Copy `data` in (sender); its [start, size], or None when it does not fit now."""
        size = data.nbytes
        offset = self._head % RING_BYTES
        start = self._head if offset + size <= RING_BYTES else self._head + RING_BYTES - offset
        if size > RING_BYTES // 2 or start + size - int(self._tail[0]) > RING_BYTES:
            return None
        offset = start % RING_BYTES
        self._data[offset : offset + size] = np.frombuffer(data, dtype=np.uint8)
        self._head = start + size
        return [start, size]

    def take(self, start: int, size: int) -> np.ndarray:
        """Copy an array's bytes out (receiver, in frame order) and free their room."""
        offset = start % RING_BYTES
        out = self._data[offset : offset + size].copy()
        self._tail[0] = start + size
        return out


@dataclass
class Shm:
    """One side's shared memory: the ring it writes, the ring it reads, and the path prefix
    of the files it writes for arrays the ring cannot take."""

    prefix: str
    out: Ring | None = None
    into: Ring | None = None


def encode(header: Header, arrays: Arrays | None = None, shm: Shm | None = None) -> bytes:
    """One frame: `header`, with `arrays` described in it and carried beside it."""
    payload: list[bytes | memoryview] = []
    if arrays is not None:
        header["a"] = [_put(name, a, payload, shm) for name, a in arrays.items()]
    head = orjson.dumps(header, option=orjson.OPT_SERIALIZE_NUMPY)
    size = sum(len(p) for p in payload)
    return b"".join([_PREFIX.pack(len(head), size), head, *payload])


def decode(head: bytes, payload: bytes, shm: Shm | None = None) -> tuple[Header, Arrays | None]:
    header: Header = orjson.loads(head)
    specs = header.pop("a", None)
    if specs is None:
        return header, None
    arrays: Arrays = {}
    offset = 0
    view = memoryview(payload)
    for name, dtype, shape, where in specs:
        if isinstance(where, str):
            data: Any = _map(where)
        elif isinstance(where, list):
            if shm is None or shm.into is None:
                raise ConnectionError("an array came through a ring this side does not read")
            data = shm.into.take(*where)
        else:
            data, offset = view[offset : offset + where], offset + where
        arrays[name] = _array(name, dtype, shape, data)
    return header, arrays


async def read(reader: StreamReader, shm: Shm | None = None) -> tuple[Header, Arrays | None]:
    """The next frame (asyncio.IncompleteReadError at end of stream)."""
    head_len, size = _PREFIX.unpack(await reader.readexactly(_PREFIX.size))
    body = await reader.readexactly(head_len + size)
    return decode(body[:head_len], body[head_len:], shm)


def read_blocking(sock: socket.socket) -> tuple[Header, Arrays | None]:
    """The next frame from a blocking socket, without arrays in shared memory
    (ConnectionError at end of stream)."""
    head_len, size = _PREFIX.unpack(_exactly(sock, _PREFIX.size))
    body = _exactly(sock, head_len + size)
    return decode(body[:head_len], body[head_len:])


def _exactly(sock: socket.socket, count: int) -> bytes:
    chunks, left = [], count
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise ConnectionError("the other side closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# ---- arrays ---------------------------------------------------------------------------------


def _put(
    name: str, array: np.ndarray, payload: list[bytes | memoryview], shm: Shm | None
) -> list[Any]:
    shape = list(array.shape)
    if array.dtype.kind in "OSU":
        dtype, data = "BYTES", memoryview(to_binary(array))
    else:
        array = np.ascontiguousarray(array)
        if array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("<"))
        dtype, data = array.dtype.str, memoryview(array.reshape(-1).data).cast("B")
    if data.nbytes > SHM_THRESHOLD and shm is not None:
        where = shm.out.put(data) if shm.out is not None else None
        return [name, dtype, shape, where or _write_shm(data, shm.prefix)]
    payload.append(data)
    return [name, dtype, shape, data.nbytes]


def _write_shm(data: memoryview, prefix: str) -> str:
    path = f"{prefix}{next(_names)}"
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        written = 0
        while written < data.nbytes:
            written += os.write(fd, data[written:])
    finally:
        os.close(fd)
    return path


def _map(path: str) -> mmap.mmap:
    """Map a shared-memory file copy-on-write and unlink it (the mapping keeps it alive)."""
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        return mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)
        os.unlink(path)


def _array(name: str, dtype: str, shape: list[int], data: Any) -> np.ndarray:
    if dtype == "BYTES":
        return from_binary(name, "BYTES", shape, memoryview(data))
    return np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape)


# ---- errors and configs ---------------------------------------------------------------------

_ERRORS: dict[str, type[ModelyardError]] = {
    Code.INVALID_ARGUMENT: InvalidArgument,
    Code.FAILED_PRECONDITION: FailedPrecondition,
    Code.NOT_FOUND: NotFound,
    Code.UNAVAILABLE: Unavailable,
    Code.RESOURCE_EXHAUSTED: ResourceExhausted,
    Code.DEADLINE_EXCEEDED: DeadlineExceeded,
    Code.UNIMPLEMENTED: Unimplemented,
}


def error_header(exc: BaseException) -> Header:
    """What a failure sends: a modelyard error keeps its code, anything else is INTERNAL."""
    if isinstance(exc, ModelyardError):
        return {"code": exc.code.value, "msg": exc.message}
    return {"code": Code.INTERNAL.value, "msg": repr(exc)}


def error_from(header: Header) -> ModelyardError:
    return _ERRORS.get(header.get("code", ""), Internal)(str(header.get("msg", "")))


# ---- what travels beside the arrays (Triton's Python backend) -------------------------------


def request_header(inputs: Arrays) -> Header:
    """Header fields for a request's id, parameters and requested outputs (RequestArrays)."""
    if isinstance(inputs, RequestArrays):
        return {"rq": {"id": inputs.id, "p": inputs.parameters, "o": inputs.outputs}}
    return {}


def request_from(header: Header, arrays: Arrays) -> Arrays:
    rq = header.get("rq")
    if rq is None:
        return arrays
    return RequestArrays(arrays, rq["id"], rq["p"], rq["o"])


def response_header(outputs: Arrays) -> Header:
    """Header fields for the parameters a model set on its response (ResponseArrays)."""
    if isinstance(outputs, ResponseArrays) and outputs.parameters:
        return {"rp": outputs.parameters}
    return {}


def response_from(header: Header, arrays: Arrays) -> Arrays:
    rp = header.get("rp")
    return ResponseArrays(arrays, rp) if rp else arrays


def pack_many(parts: list[Arrays]) -> tuple[list[Header], Arrays]:
    """A list of requests (`Runtime.infer_many`) as one frame: each request's array names and
    fields in the header, its arrays named `INDEX/NAME` beside it."""
    specs: list[Header] = []
    arrays: Arrays = {}
    for index, part in enumerate(parts):
        specs.append({"n": list(part), **request_header(part)})
        arrays.update((f"{index}/{name}", array) for name, array in part.items())
    return specs, arrays


def unpack_many(specs: list[Header], arrays: Arrays) -> list[Arrays]:
    return [
        request_from(spec, {name: arrays[f"{index}/{name}"] for name in spec["n"]})
        for index, spec in enumerate(specs)
    ]


def pack_results(results: list[Arrays | ModelyardError]) -> tuple[list[Header], Arrays]:
    """`infer_many`'s answers as one frame: each request's outputs, or the error that fails
    that request alone."""
    specs: list[Header] = []
    arrays: Arrays = {}
    for index, result in enumerate(results):
        if isinstance(result, BaseException):
            specs.append(error_header(result))
            continue
        specs.append({"n": list(result), **response_header(result)})
        arrays.update((f"{index}/{name}", array) for name, array in result.items())
    return specs, arrays


def unpack_results(specs: list[Header], arrays: Arrays) -> list[Arrays | ModelyardError]:
    return [
        error_from(spec)
        if "code" in spec
        else response_from(spec, {name: arrays[f"{index}/{name}"] for name in spec["n"]})
        for index, spec in enumerate(specs)
    ]


def config_to_wire(config: ModelConfig) -> Header:
    return asdict(config)


def config_from_wire(data: Header) -> ModelConfig:
    fields = dict(data)
    fields["inputs"] = [TensorSpec(**t) for t in fields["inputs"]]
    fields["outputs"] = [TensorSpec(**t) for t in fields["outputs"]]
    fields["version_policy"] = VersionPolicy(**fields["version_policy"])
    if fields["dynamic_batching"] is not None:
        fields["dynamic_batching"] = DynamicBatching(**fields["dynamic_batching"])
    return ModelConfig(**fields)


def specs_from_wire(data: list[Header]) -> list[TensorSpec]:
    return [TensorSpec(**t) for t in data]
