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
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

Outputs = dict[str, np.ndarray]


class Model:
    """Subclass and override `predict` (and `load` when there is something to load)."""

    def __init__(self, name: str, version: int, path: Path, parameters: Mapping[str, str]) -> None:
        self.name = name
        self.version = version
        #: The version folder holding model.py and any files it reads.
        self.path = path
        self.parameters = dict(parameters)

    def load(self) -> None:
        """Read weights or other files; called once on a worker thread before serving."""

    def predict(self, inputs: dict[str, np.ndarray]) -> Outputs | Iterator[Outputs]:
        """Map named input arrays to named output arrays (or yield several such dicts)."""
        raise NotImplementedError(f"{type(self).__name__} must define predict()")

    def unload(self) -> None:
        """Free resources when the model is unloaded."""
