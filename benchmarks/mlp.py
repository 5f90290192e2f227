"""The benchmark's model: an ONNX MLP built with the onnx helper API, and onnxruntime's own limit.

`x` float32 [batch, 256] -> Gemm 1024 -> Relu -> Gemm 1024 -> Relu -> Gemm 10 -> `y`, weights
drawn from a fixed seed, so every run and every server sees the same bytes.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

WIDTHS = (256, 1024, 1024, 10)
SEED = 20261128


def build(path: Path) -> Path:
    """Write the model to `path` (once; the bytes are the same on every run)."""
    if path.exists():
        return path
    rng = np.random.default_rng(SEED)
    nodes, weights = [], []
    current = "x"
    for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(WIDTHS)):
        w = (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        b = (rng.standard_normal(fan_out) * 0.01).astype(np.float32)
        weights += [
            numpy_helper.from_array(w, f"w{layer}"),
            numpy_helper.from_array(b, f"b{layer}"),
        ]
        last = layer == len(WIDTHS) - 2
        out = "y" if last else f"h{layer}"
        nodes.append(helper.make_node("Gemm", [current, f"w{layer}", f"b{layer}"], [out]))
        if not last:
            nodes.append(helper.make_node("Relu", [out], [f"r{layer}"]))
            out = f"r{layer}"
        current = out
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", WIDTHS[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", WIDTHS[-1]])],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime the peers' venvs may pick
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def session(path: Path, threads: int = 0) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def reference(sess: ort.InferenceSession, rows: np.ndarray) -> np.ndarray:
    return np.asarray(sess.run(None, {"x": rows.astype(np.float32)})[0])


def rows_per_second(sess: ort.InferenceSession, batch: int, seconds: float) -> float:
    """Rows/s of back-to-back `run` calls on one batch, after a short warm-up."""
    x = np.random.default_rng(batch).standard_normal((batch, WIDTHS[0])).astype(np.float32)
    feed = {"x": x}
    for _ in range(20):
        sess.run(None, feed)
    runs, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        sess.run(None, feed)
        runs += 1
    return batch * runs / elapsed


def limits(path: Path, batches: list[int], seconds: float) -> dict[int, float]:
    sess = session(path)
    return {batch: rows_per_second(sess, batch, seconds) for batch in batches}


def rows(count: int) -> list[list[float]]:
    """Rows as a client would send them: 256 floats, 6 decimals (the same ones every run)."""
    rng = np.random.default_rng(7)
    return [[round(float(v), 6) for v in rng.standard_normal(256)] for _ in range(count)]
