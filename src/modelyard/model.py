"""The user-facing contract for Python models.

A `model.py` in a repository defines one subclass of `Model`::

    class Echo(modelyard.Model):
        def load(self) -> None:
            self.prefix = self.parameters.get("prefix", "")

        def predict(self, inputs):
            return {"text": inputs["text"]}

`predict` may also be a generator that yields several output dicts; over gRPC's
ModelStreamInfer each one is sent as soon as it is produced. Inputs and outputs are
declared in the model's config (config.pbtxt or model.yaml).

A model may call the other models of the server through `self.models` (composition): from an
`async def predict` with `await self.models.infer("mlp", {"x": x})` (or `generate`, `embed`,
`infer_stream`), from a plain `predict` with `self.models.blocking(self.models.infer(...))`.
The calls go through the server's queues, batchers and statistics like a client's.

By default a Python model runs in its own worker process, so that a crash (a segfault,
`os._exit`) or a hang takes down only that process, which the server restarts; set the model
parameter `isolation: thread` to run it in the server process instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from modelyard.spec.calls import ModelCalls

Outputs = dict[str, np.ndarray]
T = TypeVar("T")


class Model:
    """Subclass and override `predict` (and `load` when there is something to load)."""

    def __init__(self, name: str, version: int, path: Path, parameters: Mapping[str, str]) -> None:
        self.name = name
        self.version = version
        #: The version folder holding model.py and any files it reads.
        self.path = path
        self.parameters = dict(parameters)
        #: The other models of the server, for composition (see the module's docstring).
        self.models: ModelCalls = _Unconnected()

    def load(self) -> None:
        """Read weights or other files; called once on a worker thread before serving."""

    def predict(self, inputs: dict[str, np.ndarray]) -> Outputs | Iterator[Outputs]:
        """Map named input arrays to named output arrays (or yield several such dicts). May
        be `async def` (then awaited on an event loop; it may await `self.models` calls)."""
        raise NotImplementedError(f"{type(self).__name__} must define predict()")

    def unload(self) -> None:
        """Free resources when the model is unloaded."""


class _Unconnected:
    """`self.models` of a model no server runs."""

    def _refuse(self) -> RuntimeError:
        return RuntimeError("self.models is available when a modelyard server runs the model")

    async def infer(self, model: str, inputs: Outputs, **options: Any) -> Outputs:
        raise self._refuse()

    def infer_stream(self, model: str, inputs: Outputs, **options: Any) -> AsyncIterator[Outputs]:
        raise self._refuse()

    async def generate(self, model: str, prompt: str, **sampling: Any) -> str:
        raise self._refuse()

    async def embed(self, model: str, texts: Sequence[str]) -> list[list[float]]:
        raise self._refuse()

    def blocking(self, call: Awaitable[T]) -> T:
        raise self._refuse()
