"""The advisor's conversion offers, measured rather than guessed: an ONNX model converted to
OpenVINO IR (`openvino.convert_model`), a PyTorch model (TorchScript or a torch.export program)
exported to ONNX (`torch.onnx.export`). The model and its conversion are loaded as the server
loads them (`load_version`, the advisor's settings for the goal) and each runtime's `infer` is
timed in-process at batch 1 and 64 (batch 1 only for a model without a batch dimension). The
rules `onnx-openvino-ir` and `torch-onnx` point here; `modelyard tune` prints the figures when
the target's library is installed.
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.errors import InvalidArgument
from modelyard.repository.loader import Loaded, load_version
from modelyard.repository.scan import ModelSource, read_entry
from modelyard.runtimes import Runtime
from modelyard.tuning.space import sample_inputs

BATCHES = (1, 64)
#: A conversion is offered only when it is at least this much faster at some batch.
MIN_GAIN = 0.10
#: ONNX opset of an exported PyTorch model.
OPSET = 17


@dataclass(frozen=True)
class Target:
    """What a runtime's models can be converted to, and how."""

    runtime: str
    label: str
    suffix: str
    how: str
    needs: tuple[str, ...]  # modules the conversion and the target runtime import
    convert: Callable[[Loaded, Path], None]

    @property
    def installed(self) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in self.needs)


@dataclass(frozen=True)
class Conversion:
    """Rows/s per batch size for the model on its runtime (`before`) and converted (`after`)."""

    source: str
    target: str
    label: str
    how: str
    before: dict[int, float]
    after: dict[int, float]

    def ratio(self, batch: int) -> float:
        return self.after[batch] / self.before[batch]

    @property
    def worth_it(self) -> bool:
        """Whether the conversion is faster by MIN_GAIN at some measured batch size."""
        return any(self.ratio(b) >= 1 + MIN_GAIN for b in self.before)

    def describe(self) -> str:
        figures = ", ".join(
            f"{self.ratio(b):.2f}x at batch {b} ({self.after[b]:,.0f} against "
            f"{self.before[b]:,.0f} rows/s)"
            for b in self.before
        )
        verdict = (
            f"convert it ({self.how})"
            if self.worth_it
            else f"keep {self.source} ({self.label} is not {MIN_GAIN:.0%} faster at any batch)"
        )
        return f"{self.label} on {self.target} against {self.source} here: {figures}; {verdict}"

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.source,
            "to": self.target,
            "rows_per_s": {
                self.source: {str(b): v for b, v in self.before.items()},
                self.target: {str(b): v for b, v in self.after.items()},
            },
            "worth_it": self.worth_it,
            "how": self.how,
        }


def convert_onnx(onnx: Path, xml: Path) -> Path:
    """The ONNX model at `onnx` saved as OpenVINO IR at `xml` (+ `.bin`), weights kept in
    their own precision (OpenVINO's default would compress them to FP16)."""
    import openvino as ov

    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.convert_model(onnx), xml, compress_to_fp16=False)
    return xml


def _to_ir(loaded: Loaded, out: Path) -> None:
    convert_onnx(loaded.runtime.path, out)


def export_torch(loaded: Loaded, out: Path) -> None:
    """A loaded PyTorch model (TorchScript or a torch.export program) exported to ONNX at
    `out` by tracing it (the TorchScript exporter), with the config's input and output names
    and a dynamic batch dimension when it batches."""
    import torch

    from modelyard.runtimes.pytorch import PyTorchRuntime

    runtime = loaded.runtime
    if not isinstance(runtime, PyTorchRuntime):
        raise InvalidArgument(f"{runtime.path.name} is not served by the pytorch runtime")
    module, inputs, outputs = runtime.traceable()
    sample = sample_inputs(loaded.config)
    args = tuple(torch.from_numpy(sample[name]) for name in inputs)
    batch = {name: {0: "batch"} for name in inputs + outputs}
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated; tracing warns
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(out),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=batch if loaded.config.max_batch_size > 0 else None,
            opset_version=OPSET,
            dynamo=False,
        )


#: A runtime's conversion offer.
TARGETS = {
    "onnx": Target(
        "openvino",
        "OpenVINO IR",
        ".xml",
        "openvino.convert_model, then openvino.save_model to model.xml",
        ("openvino",),
        _to_ir,
    ),
    "pytorch": Target(
        "onnx",
        "ONNX",
        ".onnx",
        "torch.onnx.export(model, example, 'model.onnx', dynamo=False) with a dynamic batch axis",
        ("onnx", "onnxruntime"),
        export_torch,
    ),
}


def conversion_for(runtime: str) -> Target | None:
    """The conversion offered for models of `runtime`, when its libraries are installed."""
    target = TARGETS.get(runtime)
    return target if target is not None and target.installed else None


def compare(
    source: ModelSource, version: int, goal: str = "latency", seconds: float = 0.5
) -> Conversion:
    """Convert one version to its runtime's target and measure both, `seconds` per runtime
    and batch."""
    with tempfile.TemporaryDirectory(prefix="modelyard-convert-") as tmp:
        loaded = load_version(source, version, False, goal=goal)
        try:
            runtime = loaded.config.runtime or ""
            target = TARGETS.get(runtime)
            if target is None:
                raise InvalidArgument(f"no conversion is offered for {runtime} models")
            before = _measure(loaded, seconds)  # first: tracing leaves torch's state changed
            out = Path(tmp) / f"{source.name}{target.suffix}"
            target.convert(loaded, out)
        finally:
            loaded.runtime.unload()
        converted = read_entry(out)
        assert converted is not None, "a converted model is a bare model file"
        into = load_version(converted, 1, False, goal=goal)
        try:
            after = _measure(into, seconds)
        finally:
            into.runtime.unload()
    return Conversion(runtime, target.runtime, target.label, target.how, before, after)


def _measure(loaded: Loaded, seconds: float) -> dict[int, float]:
    one = sample_inputs(loaded.config)
    batches = BATCHES if loaded.config.max_batch_size > 0 else BATCHES[:1]
    return {b: rows_per_second(loaded.runtime, _rows(one, b), b, seconds) for b in batches}


def _rows(one: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    return {name: np.repeat(array, batch, axis=0) for name, array in one.items()}


def rows_per_second(
    runtime: Runtime, inputs: dict[str, np.ndarray], rows: int, seconds: float
) -> float:
    """Rows/s of back-to-back `infer` calls on `inputs` (`rows` rows each) for `seconds`,
    after one warm-up call."""
    runtime.infer(inputs)
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        runtime.infer(inputs)
        done += rows
    return done / elapsed
