"""Check a request's tensors against the model's config before any model work is done."""

from __future__ import annotations

import numpy as np

from modelyard.core.classification import top_k
from modelyard.core.types import RequestedOutput
from modelyard.errors import Internal, InvalidArgument
from modelyard.repository.config import ModelConfig, TensorSpec
from modelyard.tensors import as_bytes_array, datatype_of


def check_inputs(config: ModelConfig, inputs: dict[str, np.ndarray]) -> int:
    """Validate names, datatypes and shapes; return the batch size (1 for unbatched models)."""
    specs = {s.name: s for s in config.inputs}
    for name in inputs:
        if name not in specs:
            raise InvalidArgument(
                f"model {config.name!r} has no input {name!r}; its inputs are {sorted(specs)}"
            )
    batch = 1
    for spec in config.inputs:
        array = inputs.get(spec.name)
        if array is None:
            if spec.optional:
                continue
            raise InvalidArgument(
                f"missing input {spec.name!r} ({spec.datatype} {_shape_text(config, spec)})"
            )
        _check_datatype(spec, array)
        batch = _check_shape(config, spec, array, batch)
    return batch


def _check_datatype(spec: TensorSpec, array: np.ndarray) -> None:
    got = datatype_of(array)
    if got != spec.datatype:
        raise InvalidArgument(f"input {spec.name!r} must be {spec.datatype}, got {got}")


def _check_shape(config: ModelConfig, spec: TensorSpec, array: np.ndarray, batch: int) -> int:
    shape = list(array.shape)
    dims = spec.dims
    if config.max_batch_size > 0:
        if not shape:
            raise InvalidArgument(f"input {spec.name!r} needs a batch dimension first")
        if shape[0] > config.max_batch_size:
            raise InvalidArgument(
                f"input {spec.name!r} has batch size {shape[0]}, over the model's max_batch_size "
                f"{config.max_batch_size}; split the request"
            )
        if batch > 1 and shape[0] != batch and shape[0] != 1:
            raise InvalidArgument(f"inputs disagree on the batch size ({batch} vs {shape[0]})")
        batch = max(batch, shape[0])
        shape = shape[1:]
    if len(shape) != len(dims) or any(d != -1 and d != s for d, s in zip(dims, shape, strict=True)):
        raise InvalidArgument(
            f"input {spec.name!r} has shape {list(array.shape)}, expected "
            f"{_shape_text(config, spec)} (-1: any size)"
        )
    return batch


def _shape_text(config: ModelConfig, spec: TensorSpec) -> list[int]:
    return [-1, *spec.dims] if config.max_batch_size > 0 else spec.dims


def check_requested(config: ModelConfig, requested: list[RequestedOutput] | None) -> None:
    if not requested:
        return
    known = {s.name for s in config.outputs}
    for output in requested:
        if output.name not in known:
            raise InvalidArgument(
                f"model {config.name!r} has no output {output.name!r}; its outputs are "
                f"{sorted(known)}"
            )


def select_outputs(
    config: ModelConfig, results: dict[str, np.ndarray], requested: list[RequestedOutput] | None
) -> dict[str, np.ndarray]:
    """The requested outputs (all declared ones by default), BYTES normalised to bytes."""
    wanted = requested or [RequestedOutput(s.name) for s in config.outputs]
    specs = {s.name: s for s in config.outputs}
    out = {}
    for output in wanted:
        array = results.get(output.name)
        if array is None:
            raise Internal(f"model {config.name!r} did not produce its output {output.name!r}")
        if specs[output.name].datatype == "BYTES" and array.dtype.kind in "US":
            array = as_bytes_array(array)
        k = output.parameters.get("classification")
        if k is not None:
            array = top_k(output.name, array, k, config.max_batch_size > 0)
        out[output.name] = array
    return out
