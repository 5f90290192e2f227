"""The tensors a run sends: synthetic ones from the model's metadata (each -1 dimension becomes
1, the leading one `--batch`; random data of the right dtype; BYTES as short strings), or the
inputs of a KServe v2 JSON request file. A few different requests are made and sent in turn."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from modelyard import tensors
from modelyard.bench.options import BenchError
from modelyard.errors import ModelyardError

VARIANTS = 16  # distinct synthetic requests, sent round-robin
_WORDS = ("red", "green", "blue", "model", "yard", "hello", "world", "fast", "small", "text")


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    array: np.ndarray

    @property
    def shape(self) -> list[int]:
        return [int(d) for d in self.array.shape]


Request = list[Tensor]


def synthetic(metadata: dict[str, Any], batch: int, seed: int, max_tokens: int) -> list[Request]:
    rng = np.random.default_rng(seed)
    specs = metadata.get("inputs") or []
    if not specs:
        raise BenchError(f"model {metadata.get('name')!r} lists no inputs; give --input FILE")
    return [[_tensor(spec, batch, rng, max_tokens) for spec in specs] for _ in range(VARIANTS)]


def _tensor(spec: dict[str, Any], batch: int, rng: np.random.Generator, max_tokens: int) -> Tensor:
    name, datatype = str(spec["name"]), str(spec["datatype"])
    dims = [int(d) for d in spec.get("shape") or []]
    shape = [(batch if i == 0 else 1) if d < 0 else d for i, d in enumerate(dims)]
    if name == "sampling_parameters" and datatype == "BYTES":  # a text generator's options
        value = orjson.dumps({"max_tokens": max_tokens, "ignore_eos": True})
        return Tensor(name, datatype, np.full(shape, value, dtype=object))
    return Tensor(name, datatype, _random(datatype, shape, rng))


def _random(datatype: str, shape: list[int], rng: np.random.Generator) -> np.ndarray:
    if datatype == "BYTES":
        count = int(np.prod(shape)) if shape else 1
        words = [
            " ".join(rng.choice(_WORDS, size=int(rng.integers(1, 6)))).encode()
            for _ in range(count)
        ]
        return np.array(words, dtype=object).reshape(shape)
    dtype = tensors.numpy_dtype(datatype)
    if datatype == "BOOL":
        return rng.integers(0, 2, size=shape).astype(bool)
    if dtype.kind in "iu":
        return rng.integers(0, 10, size=shape).astype(dtype)
    return rng.standard_normal(size=shape).astype(dtype)


def from_file(path: Path) -> tuple[list[Request], bytes]:
    """The file's inputs as tensors, and its bytes (sent as they are over HTTP)."""
    raw = path.read_bytes()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BenchError(f"--input {path} is not JSON: {exc}") from None
    items = body.get("inputs") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise BenchError(
            f"--input {path} is not a KServe v2 request: it needs "
            '{"inputs": [{"name", "datatype", "shape", "data"}, ...]}'
        )
    try:
        request = [_from_json(item) for item in items]
    except (ModelyardError, KeyError, TypeError) as exc:
        raise BenchError(f"--input {path}: {_message(exc)}") from None
    return [request], raw


def _from_json(item: dict[str, Any]) -> Tensor:
    name, datatype = str(item["name"]), str(item["datatype"])
    shape = tensors.check_shape(item["shape"])
    return Tensor(name, datatype, tensors.from_json(name, datatype, shape, item["data"]))


def _message(exc: Exception) -> str:
    if isinstance(exc, ModelyardError):
        return exc.message
    if isinstance(exc, KeyError):
        return f"an input lacks {exc.args[0]!r}"
    return str(exc)


def json_body(request: Request) -> bytes:
    """A KServe v2 JSON request body."""
    inputs = [
        {
            "name": t.name,
            "datatype": t.datatype,
            "shape": t.shape,
            "data": tensors.to_json(t.array),
        }
        for t in request
    ]
    return orjson.dumps({"inputs": inputs})
