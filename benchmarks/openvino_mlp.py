"""The benchmark MLP (benchmarks/mlp.py: the same weights) converted to OpenVINO IR with
`openvino.convert_model`, and each runtime's in-process limit: rows/s through modelyard's
runtime `infer` at batch 1 and 64, beside onnxruntime on the ONNX file. The IR runs with each
performance hint (LATENCY, THROUGHPUT); the row `torch_mlp.py` has for PyTorch, for IR.

    .venv/bin/python benchmarks/openvino_mlp.py [--seconds 3] [--threads 0] [--out runs/ov_mlp]

Prints one table (rows/s per runtime and batch) and checks the IR's answers against
onnxruntime's first. Needs the `openvino` and `onnx` extras.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import mlp
import numpy as np

from modelyard.runtimes.base import Runtime
from modelyard.runtimes.onnx import OnnxRuntime
from modelyard.runtimes.openvino import OpenVinoRuntime
from modelyard.spec.config import ModelConfig
from modelyard.tuning.convert import convert_onnx, rows_per_second

BATCHES = (1, 64)


def build(folder: Path) -> dict[str, Path]:
    """mlp.onnx and mlp.xml (+ mlp.bin, FP32 weights) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx = mlp.build(folder / "mlp.onnx")
    return {"onnx": onnx, "ir": convert_onnx(onnx, folder / "mlp.xml")}


def load(kind: str, path: Path, threads: int) -> Runtime:
    """onnxruntime ("onnx") or OpenVINO with a hint ("ir LATENCY", "ir THROUGHPUT")."""
    config = ModelConfig(name="mlp", max_batch_size=256)
    if kind == "onnx":
        config.parameters["intra_op_thread_count"] = str(threads)
        runtime: Runtime = OnnxRuntime(path, config)
    else:
        config.parameters["PERFORMANCE_HINT"] = kind.split()[1]
        config.parameters["INFERENCE_NUM_THREADS"] = str(threads)
        runtime = OpenVinoRuntime(path, config)
    runtime.load()
    return runtime


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=0, help="0: one per core")
    parser.add_argument("--out", type=Path, default=Path("runs/ov_mlp"))
    args = parser.parse_args(argv)
    files = build(args.out)
    runtimes = {"onnx": load("onnx", files["onnx"], args.threads)}
    for hint in ("LATENCY", "THROUGHPUT"):
        runtimes[f"ir {hint}"] = load(f"ir {hint}", files["ir"], args.threads)
    probe = np.random.default_rng(1).random((8, mlp.WIDTHS[0]), dtype=np.float32)
    want = runtimes["onnx"].infer({"x": probe})["y"]
    for kind, runtime in runtimes.items():
        got = runtime.infer({"x": probe})["y"]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=kind)
    print(f"| runtime | {' | '.join(f'batch {b} rows/s' for b in BATCHES)} |")
    print(f"|---|{'---|' * len(BATCHES)}")
    for kind, runtime in runtimes.items():
        rows = np.random.default_rng(0).random((max(BATCHES), mlp.WIDTHS[0]), dtype=np.float32)
        cells = [rows_per_second(runtime, {"x": rows[:b]}, b, args.seconds) for b in BATCHES]
        print(f"| {kind} | {' | '.join(f'{c:,.0f}' for c in cells)} |")


if __name__ == "__main__":
    main()
