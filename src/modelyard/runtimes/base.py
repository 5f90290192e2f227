"""The one seam every runtime plugs into.

A runtime is built for one model version (its artifact path and config), loads it, reports
the signature it can read from the artifact, and runs `infer` on a worker thread. It knows
nothing about HTTP or gRPC; library errors are translated into `modelyard.errors` here.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np

from modelyard.spec.config import ModelConfig, TensorSpec

Arrays = dict[str, np.ndarray]


class Runtime(abc.ABC):
    """Load one model artifact and run inferences on it (called from worker threads)."""

    name: ClassVar[str]
    #: Artifact file suffixes this runtime reads, used to find the file in a version folder.
    suffixes: ClassVar[tuple[str, ...]] = ()
    #: The file name Triton would look for in a version folder.
    default_filename: ClassVar[str] = ""
    #: Whether the artifact is pickle-based (needs --trust-pickle).
    pickle_based: ClassVar[bool] = False
    #: False when the artifact takes one unnamed input (sklearn, boosters): any name will do.
    named_inputs: ClassVar[bool] = True
    #: True when `infer` is a library call whose time follows its input size (no user code
    #: waiting on I/O or locks), so a short one may run on the event loop thread while the
    #: model is idle (see core/batcher.py).
    inline_safe: ClassVar[bool] = False

    def __init__(self, path: Path, config: ModelConfig) -> None:
        self.path = path
        self.config = config

    @abc.abstractmethod
    def load(self) -> None:
        """Read the artifact; raise `ModelLoadError` saying what is wrong."""

    def signature(self) -> tuple[list[TensorSpec], list[TensorSpec]] | None:
        """Inputs and outputs with full shapes (batch included) as the artifact declares them,
        or None when the artifact does not say (then the config must)."""
        return None

    @abc.abstractmethod
    def infer(self, inputs: Arrays) -> Arrays:
        """Run one inference; inputs are already validated against the config."""

    def infer_stream(self, inputs: Arrays) -> Iterator[Arrays]:
        """Several responses for one request (decoupled models); by default just one."""
        yield self.infer(inputs)

    def unload(self) -> None:  # noqa: B027 - optional hook
        """Free what `load` took."""
