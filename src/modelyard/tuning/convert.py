"""The advisor's offer to convert an ONNX model to OpenVINO IR, measured rather than guessed:
the model converted with `openvino.convert_model`, both loaded as the server loads them
(`load_version`, the advisor's settings for the goal), and each runtime's `infer` timed
in-process at batch 1 and 64 (batch 1 only for a model without a batch dimension). The
rule `onnx-openvino-ir` points here; `modelyard tune` prints the figures for ONNX models
when OpenVINO is installed.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.repository.loader import load_version
from modelyard.repository.scan import ModelSource, read_entry
from modelyard.runtimes import Runtime
from modelyard.tuning.space import sample_inputs

BATCHES = (1, 64)
#: A conversion is offered only when IR is at least this much faster at some batch.
MIN_GAIN = 0.10


@dataclass(frozen=True)
class Conversion:
    """Rows/s per batch size for the ONNX model on onnxruntime and its IR on OpenVINO."""

    onnx: dict[int, float]
    ir: dict[int, float]

    def ratio(self, batch: int) -> float:
        return self.ir[batch] / self.onnx[batch]

    @property
    def worth_it(self) -> bool:
        """Whether IR is faster by MIN_GAIN at some measured batch size."""
        return any(self.ratio(b) >= 1 + MIN_GAIN for b in self.onnx)

    def describe(self) -> str:
        figures = ", ".join(
            f"{self.ratio(b):.2f}x at batch {b} ({self.ir[b]:,.0f} against {self.onnx[b]:,.0f} "
            "rows/s)"
            for b in self.onnx
        )
        verdict = (
            "convert it (openvino.convert_model, then openvino.save_model to model.xml)"
            if self.worth_it
            else f"keep ONNX (IR is not {MIN_GAIN:.0%} faster at any batch)"
        )
        return f"OpenVINO IR against onnxruntime here: {figures}; {verdict}"

    def to_json(self) -> dict[str, Any]:
        return {
            "onnx_rows_per_s": {str(b): v for b, v in self.onnx.items()},
            "ir_rows_per_s": {str(b): v for b, v in self.ir.items()},
            "worth_it": self.worth_it,
        }


def convert_onnx(onnx: Path, xml: Path) -> Path:
    """The ONNX model at `onnx` saved as OpenVINO IR at `xml` (+ `.bin`), weights kept in
    their own precision (OpenVINO's default would compress them to FP16)."""
    import openvino as ov

    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.convert_model(onnx), xml, compress_to_fp16=False)
    return xml


def compare_ir(
    source: ModelSource, version: int, goal: str = "latency", seconds: float = 0.5
) -> Conversion:
    """Convert one ONNX version to IR and measure both, `seconds` per runtime and batch."""
    with tempfile.TemporaryDirectory(prefix="modelyard-ir-") as tmp:
        xml = convert_onnx(source.versions[version], Path(tmp) / f"{source.name}.xml")
        converted = read_entry(xml)
        assert converted is not None, "a saved IR is a bare model file"
        onnx_rows = _measure(source, version, goal, seconds)
        ir_rows = _measure(converted, 1, goal, seconds)
    return Conversion(onnx_rows, ir_rows)


def _measure(source: ModelSource, version: int, goal: str, seconds: float) -> dict[int, float]:
    loaded = load_version(source, version, False, goal=goal)
    try:
        one = sample_inputs(loaded.config)
        batches = BATCHES if loaded.config.max_batch_size > 0 else BATCHES[:1]
        return {b: rows_per_second(loaded.runtime, _rows(one, b), b, seconds) for b in batches}
    finally:
        loaded.runtime.unload()


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
