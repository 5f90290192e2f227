"""Check a request's tensors against the model's config before any model work is done.

A `Contract` is built once per loaded model version from its config, so the per-request checks
are a few comparisons against precomputed dtypes and shapes; the messages are only composed when
a check fails.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelyard.core.classification import top_k
from modelyard.core.types import RequestedOutput
from modelyard.errors import Internal, InvalidArgument
from modelyard.spec.config import ModelConfig, TensorSpec
from modelyard.tensors import as_bytes_array, datatype_of, numpy_dtype


class _Input:
    __slots__ = ("dims", "dtype", "exact", "spec")

    def __init__(self, spec: TensorSpec) -> None:
        self.spec = spec
        self.dtype: np.dtype[Any] | None = (
            None if spec.datatype == "BYTES" else numpy_dtype(spec.datatype)
        )
        self.dims = tuple(spec.dims)
        self.exact = -1 not in spec.dims  # the shape must equal dims (no wildcard to match)


class Contract:
    """The tensors a model version takes and gives, from its config."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.batched = config.max_batch_size > 0
        self._inputs = [_Input(s) for s in config.inputs]
        self._input_names = {s.name for s in config.inputs}
        self._outputs = {s.name: s for s in config.outputs}
        self._default_outputs = [RequestedOutput(s.name) for s in config.outputs]

    # ---- inputs ----------------------------------------------------------------------------

    def check(self, inputs: dict[str, np.ndarray]) -> int:
        """Validate names, datatypes and shapes; return the batch size (1 for unbatched
        models)."""
        for name in inputs:
            if name not in self._input_names:
                raise InvalidArgument(
                    f"model {self.config.name!r} has no input {name!r}; its inputs are "
                    f"{sorted(self._input_names)}"
                )
        batch = 1
        for expected in self._inputs:
            array = inputs.get(expected.spec.name)
            if array is None:
                if expected.spec.optional:
                    continue
                raise InvalidArgument(
                    f"missing input {expected.spec.name!r} ({expected.spec.datatype} "
                    f"{self._shape_text(expected.spec)})"
                )
            if expected.dtype is None or array.dtype != expected.dtype:
                self._check_datatype(expected.spec, array)
            batch = self._check_shape(expected, array, batch)
        return batch

    def _check_datatype(self, spec: TensorSpec, array: np.ndarray) -> None:
        got = datatype_of(array)
        if got != spec.datatype:
            raise InvalidArgument(f"input {spec.name!r} must be {spec.datatype}, got {got}")

    def _check_shape(self, expected: _Input, array: np.ndarray, batch: int) -> int:
        shape = array.shape
        if self.batched:
            if not shape:
                raise InvalidArgument(f"input {expected.spec.name!r} needs a batch dimension first")
            rows = shape[0]
            if rows > self.config.max_batch_size:
                raise InvalidArgument(
                    f"input {expected.spec.name!r} has batch size {rows}, over the model's "
                    f"max_batch_size {self.config.max_batch_size}; split the request"
                )
            if batch > 1 and rows != batch and rows != 1:
                raise InvalidArgument(f"inputs disagree on the batch size ({batch} vs {rows})")
            batch = max(batch, rows)
            shape = shape[1:]
        if shape != expected.dims and (expected.exact or not _matches(expected.dims, shape)):
            raise InvalidArgument(
                f"input {expected.spec.name!r} has shape {list(array.shape)}, expected "
                f"{self._shape_text(expected.spec)} (-1: any size)"
            )
        return batch

    def _shape_text(self, spec: TensorSpec) -> list[int]:
        return [-1, *spec.dims] if self.batched else spec.dims

    # ---- outputs ---------------------------------------------------------------------------

    def check_requested(self, requested: list[RequestedOutput] | None) -> None:
        for output in requested or ():
            if output.name not in self._outputs:
                raise InvalidArgument(
                    f"model {self.config.name!r} has no output {output.name!r}; its outputs are "
                    f"{sorted(self._outputs)}"
                )

    def select(
        self, results: dict[str, np.ndarray], requested: list[RequestedOutput] | None
    ) -> dict[str, np.ndarray]:
        """The requested outputs (all declared ones by default), BYTES normalised to bytes."""
        out = {}
        for output in requested or self._default_outputs:
            array = results.get(output.name)
            if array is None:
                raise Internal(
                    f"model {self.config.name!r} did not produce its output {output.name!r}"
                )
            if array.dtype.kind in "US" and self._outputs[output.name].datatype == "BYTES":
                array = as_bytes_array(array)
            if output.parameters:
                k = output.parameters.get("classification")
                if k is not None:
                    array = top_k(output.name, array, k, self.batched)
            out[output.name] = array
        return out


def _matches(dims: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    return len(shape) == len(dims) and all(d in (-1, s) for d, s in zip(dims, shape, strict=True))
