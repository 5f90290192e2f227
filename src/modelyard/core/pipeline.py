"""Pipelines (Triton ensembles, model.yaml pipelines, OVMS DAGs): checked against their step
models when they load, and run as a DAG for each request.

A pipeline is served like any model (`ServedModel` with `pipeline` set, no runtime and no
batcher of its own). `run` starts every step whose input tensors are ready, as a task, and
each finished step makes its outputs ready for the next: two steps that read one tensor run
side by side. Each step is a request to its model through the data plane's own path (lease,
validate, that model's batcher), so concurrent pipeline requests batch in every step. The
first step that fails cancels the others and its error reaches the client, in the step
model's error class, prefixed with the step (`ensemble E step 2 (model M): ...`).

`resolve` completes a pipeline's config when it loads: tensors written without a type take
their step's, and a step output feeding an input of another datatype or shape is refused,
naming the step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np

from modelyard.errors import Internal, ModelLoadError, ModelyardError
from modelyard.spec.config import ModelConfig, TensorSpec
from modelyard.spec.pipeline import PipelineSpec, Step

Arrays = dict[str, np.ndarray]
#: Runs one step: (its index, the step, its model's inputs) -> its model's outputs.
StepCall = Callable[[int, Step, Arrays], Awaitable[Arrays]]


# ---- running ---------------------------------------------------------------------------------


async def run(spec: PipelineSpec, inputs: Arrays, call: StepCall) -> Arrays:
    """Every step, each as soon as its inputs are ready; all the tensors at the end."""
    tensors = dict(inputs)
    produced = spec.produced()
    pending = list(range(len(spec.steps)))
    running: dict[asyncio.Task[Arrays], int] = {}
    try:
        while pending or running:
            ready = [i for i in pending if _ready(spec.steps[i], tensors, produced)]
            if len(ready) == 1 and not running:
                # the only step that can run now (a chain's next step): awaited in place,
                # without a task of its own (most of a short step's overhead)
                index = ready[0]
                pending.remove(index)
                step = spec.steps[index]
                args = {k: tensors[t] for k, t in step.inputs.items() if t in tensors}
                outputs = await call(index, step, args)
                for model_output, tensor in step.outputs.items():
                    tensors[tensor] = outputs[model_output]
                continue
            for index in ready:
                pending.remove(index)
                step = spec.steps[index]
                args = {k: tensors[t] for k, t in step.inputs.items() if t in tensors}
                running[asyncio.ensure_future(call(index, step, args))] = index
            if not running:
                names = ", ".join(spec.steps[i].describe(i) for i in pending)
                raise Internal(f"pipeline steps never got their inputs: {names}")
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            _collect(spec, [(running.pop(t), t) for t in done], tensors)
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running)
    return tensors


def _collect(
    spec: PipelineSpec, finished: list[tuple[int, asyncio.Task[Arrays]]], tensors: Arrays
) -> None:
    """Add the outputs of finished steps; raise the first error (every one is read, so none
    is left unretrieved)."""
    errors = [e for _, task in finished if (e := task.exception()) is not None]
    if errors:
        raise errors[0]
    for index, task in finished:
        outputs = task.result()
        for model_output, tensor in spec.steps[index].outputs.items():
            tensors[tensor] = outputs[model_output]


def _ready(step: Step, tensors: Arrays, produced: dict[str, int]) -> bool:
    """All its tensors are here (a pipeline input the request left out is not waited for)."""
    return all(t in tensors or t not in produced for t in step.inputs.values())


def uses(spec: PipelineSpec | None) -> list[str]:
    """The models a pipeline runs (none for a single model)."""
    return spec.models if spec is not None else []


def step_error(pipeline: str, index: int, step: Step, exc: ModelyardError) -> ModelyardError:
    """The step's error, in its class (so its status), saying which step failed."""
    error = type(exc)(f"ensemble {pipeline!r} {step.describe(index)}: {exc.message}")
    return error


# ---- checking at load ------------------------------------------------------------------------


def resolve(config: ModelConfig, steps: list[ModelConfig]) -> ModelConfig:
    """The pipeline's config completed from its steps' (loaded, completed) configs, one per
    step in order; refuses tensors of the wrong name, type or shape, naming the step."""
    assert config.pipeline is not None
    spec = config.pipeline
    batched = config.max_batch_size > 0
    # every pipeline tensor's datatype and full shape (batch dimension included)
    known: dict[str, tuple[str, list[int]]] = {
        t.name: (t.datatype, ([-1] if batched else []) + t.dims)
        for t in config.inputs
        if t.datatype
    }
    for index, (step, model) in enumerate(zip(spec.steps, steps, strict=True)):
        where = f"{config.name!r} {step.describe(index)}"
        _check_names(where, step, model)
        if batched and model.max_batch_size < config.max_batch_size:
            raise ModelLoadError(
                f"ensemble {where}: the ensemble takes batches of up to "
                f"{config.max_batch_size} rows but the model only {model.max_batch_size}; "
                "lower the ensemble's max_batch_size"
            )
        for model_input, tensor in step.inputs.items():
            want = _full(model, _spec(model.inputs, model_input))
            if tensor not in known:
                known[tensor] = want
            else:
                _check_match(where, tensor, known[tensor], want, f"its input {model_input!r}")
        for model_output, tensor in step.outputs.items():
            known[tensor] = _full(model, _spec(model.outputs, model_output))
    out = config.replace(reasons=dict(config.reasons))
    out.inputs = [_typed(t, known, batched, config.name) for t in config.inputs]
    out.outputs = [_typed(t, known, batched, config.name) for t in config.outputs]
    if not out.platform:
        out.platform = "ensemble"
    return out


def _check_names(where: str, step: Step, model: ModelConfig) -> None:
    inputs = {t.name for t in model.inputs}
    outputs = {t.name for t in model.outputs}
    for name in step.inputs:
        if name not in inputs:
            raise ModelLoadError(
                f"ensemble {where}: the model has no input {name!r}; its inputs are "
                f"{sorted(inputs)}"
            )
    for name in step.outputs:
        if name not in outputs:
            raise ModelLoadError(
                f"ensemble {where}: the model has no output {name!r}; its outputs are "
                f"{sorted(outputs)}"
            )
    missing = [t.name for t in model.inputs if t.name not in step.inputs and not t.optional]
    if missing:
        raise ModelLoadError(f"ensemble {where}: nothing is mapped to its inputs {missing}")


def _spec(tensors: list[TensorSpec], name: str) -> TensorSpec:
    return next(t for t in tensors if t.name == name)


def _full(model: ModelConfig, spec: TensorSpec) -> tuple[str, list[int]]:
    return spec.datatype, ([-1] if model.max_batch_size > 0 else []) + spec.dims


def _check_match(
    where: str, tensor: str, have: tuple[str, list[int]], want: tuple[str, list[int]], what: str
) -> None:
    if have[0] != want[0]:
        raise ModelLoadError(
            f"ensemble {where}: tensor {tensor!r} is {have[0]} but {what} takes {want[0]}"
        )
    same_rank = len(have[1]) == len(want[1])
    if not same_rank or any(
        a != b and -1 not in (a, b) for a, b in zip(have[1], want[1], strict=True)
    ):
        raise ModelLoadError(
            f"ensemble {where}: tensor {tensor!r} has shape {have[1]} but {what} takes "
            f"{want[1]} (-1: any size)"
        )


def _typed(
    spec: TensorSpec, known: dict[str, tuple[str, list[int]]], batched: bool, name: str
) -> TensorSpec:
    """A pipeline tensor with its datatype and dims (without the batch one when batched)."""
    datatype, shape = known.get(spec.name, (spec.datatype, spec.dims))
    if not datatype:
        raise ModelLoadError(f"ensemble {name!r}: no step reads or writes tensor {spec.name!r}")
    if spec.datatype and spec.datatype != datatype:
        raise ModelLoadError(
            f"ensemble {name!r}: tensor {spec.name!r} is declared {spec.datatype} but its "
            f"step makes it {datatype}"
        )
    if spec.datatype:  # declared: keep the declared dims
        return spec
    dims = shape[1:] if batched and shape else shape
    return TensorSpec(spec.name, datatype, list(dims), spec.optional)
