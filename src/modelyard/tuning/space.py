"""What `modelyard tune` may change for each runtime (its knobs and their ladders), the
configurations one step away from a given one, and a model config with one candidate's
settings pinned (so the advisor leaves them as they are)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from modelyard.advisor.hardware import Hardware
from modelyard.advisor.tuned import TUNED_RUNTIMES
from modelyard.spec.config import DynamicBatching, ModelConfig, TensorSpec
from modelyard.tensors import numpy_dtype

#: Runtimes the search knows the knobs of.
TUNABLE = TUNED_RUNTIMES
DELAY = "dynamic_batching.max_queue_delay_us"
INSTANCES = "instance_count"
#: The booster parameter that sets its threads.
BOOSTER_THREADS = {"xgboost": "parameters.nthread", "lightgbm": "parameters.num_threads"}

Settings = dict[str, Any]


@dataclass(frozen=True)
class Knob:
    key: str  # a setting as the rules write it
    values: tuple[int, ...]  # the ladder, ascending: a step moves to a neighbour


def knobs(runtime: str, hw: Hardware, batched: bool) -> list[Knob]:
    """The knobs of `runtime` on this machine; the batching delay only for batched models."""
    physical, cores = max(1, hw.physical_cores), max(1, hw.cores)
    threads = tuple(range(1, min(physical, 8) + 1))
    instances = tuple(range(1, min(cores, 4) + 1))
    out: list[Knob] = []
    if runtime in ("onnx", "pytorch", "tensorflow"):
        out += [Knob(INSTANCES, instances), Knob("parameters.intra_op_thread_count", threads)]
    elif runtime == "openvino":  # instances are infer requests; threads are for all of them
        out += [Knob(INSTANCES, instances), Knob("parameters.INFERENCE_NUM_THREADS", threads)]
    elif runtime == "sklearn":
        out += [Knob(INSTANCES, instances[:2])]
    elif runtime in BOOSTER_THREADS:
        out += [Knob(INSTANCES, instances), Knob(BOOSTER_THREADS[runtime], threads)]
    if batched:
        out.append(Knob(DELAY, (0, 500, 2000)))
    return out


def neighbours(current: Settings, space: list[Knob]) -> list[Settings]:
    """Every configuration one step from `current` along one knob."""
    found = []
    for knob in space:
        value = int(current.get(knob.key, knob.values[0]))
        ladder = sorted({*knob.values, value})
        at = ladder.index(value)
        for step in (at - 1, at + 1):
            if 0 <= step < len(ladder):
                found.append({**current, knob.key: ladder[step]})
    return found


def start_from(rule_settings: Settings, space: list[Knob]) -> Settings:
    """The rules' pick, restricted to the knobs searched (their starting point)."""
    out: Settings = {}
    for knob in space:
        value = rule_settings.get(knob.key, knob.values[0])
        out[knob.key] = int(value) if str(value).lstrip("-").isdigit() else knob.values[0]
    return out


def key_of(settings: Settings) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, str(v)) for k, v in settings.items()))


def pinned_config(config: ModelConfig, settings: Settings) -> ModelConfig:
    """`config` with `settings` set as a model's own config would set them (so the advisor
    and any tuned config leave them alone), and no background tuning."""
    out = config.replace(
        reasons=dict(config.reasons),
        parameters={**config.parameters, "tune": "off"},
        dynamic_batching=DynamicBatching(**vars(config.dynamic_batching))
        if config.dynamic_batching is not None
        else None,
    )
    for key, value in settings.items():
        if key.startswith("parameters."):
            out.parameters[key.removeprefix("parameters.")] = str(value)
        elif key.startswith("dynamic_batching."):
            out.dynamic_batching = out.dynamic_batching or DynamicBatching()
            setattr(out.dynamic_batching, key.removeprefix("dynamic_batching."), int(value))
            out.reasons["dynamic_batching"] = "modelyard tune"
        elif key == INSTANCES:
            out.instance_count = int(value)
            out.reasons["instances"] = "modelyard tune"
        else:
            setattr(out, key, int(value))
            out.reasons[key] = "modelyard tune"
    return out


def sample_inputs(config: ModelConfig) -> dict[str, np.ndarray]:
    """One request of one row for a loaded model's (completed) config: its required inputs,
    variable dimensions as 1, floats drawn from a fixed seed."""
    rng = np.random.default_rng(0)
    return {
        spec.name: _array(spec, config.max_batch_size > 0, rng)
        for spec in config.inputs
        if not spec.optional
    }


def _array(spec: TensorSpec, batched: bool, rng: np.random.Generator) -> np.ndarray:
    shape = [1, *spec.dims] if batched else list(spec.dims)
    shape = [1 if d < 0 else d for d in shape]
    if spec.datatype == "BYTES":
        return np.full(shape, b"x", dtype=object)
    dtype = numpy_dtype(spec.datatype)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    return np.zeros(shape, dtype=dtype)
