"""The benchmark MLP (benchmarks/mlp.py: the same weights) as a TensorFlow SavedModel exported
from Keras, and the runtime's in-process limit: rows/s through modelyard's runtime `infer` at
batch 1 and 64, beside onnxruntime on the ONNX file (the sibling of torch_mlp.py).

    .venv/bin/python benchmarks/tf_mlp.py [--seconds 3] [--threads 0] [--out runs/tf_mlp]

Prints one table (rows/s per runtime and batch) and checks the SavedModel's answers against
onnxruntime's first. Needs the `tensorflow` and `onnx` extras.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import mlp
import numpy as np

from modelyard.runtimes.base import Runtime
from modelyard.runtimes.onnx import OnnxRuntime
from modelyard.runtimes.tensorflow import TensorFlowRuntime
from modelyard.spec.config import ModelConfig

BATCHES = (1, 64)
NAMES = {"onnx": "x", "savedmodel": "x"}


def keras_mlp() -> Any:
    """benchmarks/mlp.py's network with its weights, drawn from the same seed in the same order."""
    rng = np.random.default_rng(mlp.SEED)
    inputs = keras.Input(shape=(mlp.WIDTHS[0],), name="x")
    current, pairs = inputs, list(itertools.pairwise(mlp.WIDTHS))
    layers = []
    for index, (fan_in, fan_out) in enumerate(pairs):
        w = (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        b = (rng.standard_normal(fan_out) * 0.01).astype(np.float32)
        last = index == len(pairs) - 1
        layer = keras.layers.Dense(fan_out, activation=None if last else "relu")
        current = layer(current)
        layers.append((layer, w, b))
    model = keras.Model(inputs, current)
    for layer, w, b in layers:
        layer.set_weights([w, b])
    return model


def build(folder: Path) -> dict[str, Path]:
    """mlp.onnx and mlp.savedmodel/ (Keras `model.export`, dynamic batch) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"onnx": mlp.build(folder / "mlp.onnx"), "savedmodel": folder / "mlp.savedmodel"}
    if not (files["savedmodel"] / "saved_model.pb").exists():
        keras_mlp().export(str(files["savedmodel"]), verbose=False)
    return files


def load(kind: str, path: Path, threads: int) -> Runtime:
    config = ModelConfig(name="mlp", max_batch_size=256)
    config.parameters["intra_op_thread_count"] = str(threads)
    if kind == "savedmodel":
        config.parameters["inter_op_thread_count"] = "1"
        runtime: Runtime = TensorFlowRuntime(path / "saved_model.pb", config)
    else:
        runtime = OnnxRuntime(path, config)
    runtime.load()
    return runtime


def rows_per_second(runtime: Runtime, name: str, batch: int, seconds: float) -> float:
    rows = np.random.default_rng(0).random((batch, mlp.WIDTHS[0]), dtype=np.float32)
    runtime.infer({name: rows})  # warm up
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        runtime.infer({name: rows})
        done += batch
    return done / elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=0, help="0: one per core")
    parser.add_argument("--out", type=Path, default=Path("runs/tf_mlp"))
    args = parser.parse_args(argv)
    files = build(args.out)
    runtimes = {kind: load(kind, path, args.threads) for kind, path in files.items()}
    probe = np.random.default_rng(1).random((8, mlp.WIDTHS[0]), dtype=np.float32)
    want = next(iter(runtimes["onnx"].infer({"x": probe}).values()))
    for kind, runtime in runtimes.items():
        got = next(iter(runtime.infer({NAMES[kind]: probe}).values()))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=kind)
    print(f"| runtime | {' | '.join(f'batch {b} rows/s' for b in BATCHES)} |")
    print(f"|---|{'---|' * len(BATCHES)}")
    for kind, runtime in runtimes.items():
        cells = [rows_per_second(runtime, NAMES[kind], b, args.seconds) for b in BATCHES]
        print(f"| {kind} | {' | '.join(f'{c:,.0f}' for c in cells)} |")


if __name__ == "__main__":
    main()
