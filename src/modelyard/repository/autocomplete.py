"""Fill in what a config leaves out from what the artifact declares, as Triton's
auto-complete does, and say where each setting came from."""

from __future__ import annotations

import dataclasses

from modelyard.errors import ModelLoadError
from modelyard.spec.config import ModelConfig, TensorSpec

#: max_batch_size given to a model whose every input and output has a dynamic first dimension.
DEFAULT_MAX_BATCH_SIZE = 256


def complete(
    config: ModelConfig,
    signature: tuple[list[TensorSpec], list[TensorSpec]] | None,
    artifact: str,
    named_inputs: bool = True,
    declared_max_batch_size: int | None = None,
) -> ModelConfig:
    """The config with inputs, outputs and max_batch_size filled in from the signature (and
    the max_batch_size the model declares itself, when it does)."""
    if signature is None:
        if not config.inputs or not config.outputs:
            raise ModelLoadError(
                f"model {config.name!r}: {artifact} does not declare its inputs and outputs; "
                "list them in config.pbtxt or model.yaml"
            )
        return config
    sig_inputs, sig_outputs = signature
    if named_inputs:
        _check_names(config, config.inputs, sig_inputs, "input", artifact)
    _check_names(config, config.outputs, sig_outputs, "output", artifact)
    out = config.replace(reasons=dict(config.reasons))
    if "max_batch_size" not in config.reasons and declared_max_batch_size is not None:
        out.max_batch_size = declared_max_batch_size
        out.reasons["max_batch_size"] = f"declared by {artifact} (auto_complete_config)"
    elif "max_batch_size" not in config.reasons and _batchable(sig_inputs + sig_outputs):
        out.max_batch_size = DEFAULT_MAX_BATCH_SIZE
        out.reasons["max_batch_size"] = (
            f"every input and output of {artifact} has a dynamic first dimension "
            f"(default {DEFAULT_MAX_BATCH_SIZE})"
        )
    strip = 1 if out.max_batch_size > 0 else 0
    if not config.inputs:
        out.inputs = [dataclasses.replace(t, dims=t.dims[strip:]) for t in sig_inputs]
        out.reasons["input"] = f"read from {artifact}"
    if not config.outputs:
        out.outputs = [dataclasses.replace(t, dims=t.dims[strip:]) for t in sig_outputs]
        out.reasons["output"] = f"read from {artifact}"
    return out


def _batchable(specs: list[TensorSpec]) -> bool:
    return bool(specs) and all(s.dims and s.dims[0] == -1 for s in specs)


def _check_names(
    config: ModelConfig,
    declared: list[TensorSpec],
    actual: list[TensorSpec],
    kind: str,
    artifact: str,
) -> None:
    known = {t.name for t in actual}
    for spec in declared:
        if spec.name not in known:
            raise ModelLoadError(
                f"model {config.name!r}: config declares {kind} {spec.name!r} but {artifact} "
                f"has {kind}s {sorted(known)}"
            )
