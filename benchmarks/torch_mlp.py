"""The benchmark MLP (benchmarks/mlp.py: the same weights) as TorchScript and as a torch.export
program, and each runtime's in-process limit: rows/s through modelyard's runtime `infer` at
batch 1 and 64, beside onnxruntime on the ONNX file.

    .venv/bin/python benchmarks/torch_mlp.py [--seconds 3] [--threads 0] [--out runs/torch_mlp]

Prints one table (rows/s per runtime and batch) and checks every runtime's answers against
onnxruntime's first. Needs the `pytorch` and `onnx` extras.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
import warnings
from pathlib import Path

# torch's OpenMP spin bounded before it loads, as `import modelyard` bounds it for the server
os.environ.setdefault("GOMP_SPINCOUNT", "2000")

import mlp
import numpy as np
import torch

from modelyard.runtimes.base import Runtime
from modelyard.runtimes.onnx import OnnxRuntime
from modelyard.runtimes.pytorch import PyTorchRuntime
from modelyard.spec.config import ModelConfig, TensorSpec

BATCHES = (1, 64)


def torch_mlp() -> torch.nn.Sequential:
    """benchmarks/mlp.py's network with its weights, drawn from the same seed in the same order."""
    rng = np.random.default_rng(mlp.SEED)
    layers: list[torch.nn.Module] = []
    for fan_in, fan_out in itertools.pairwise(mlp.WIDTHS):
        w = (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        b = (rng.standard_normal(fan_out) * 0.01).astype(np.float32)
        linear = torch.nn.Linear(fan_in, fan_out)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w.T.copy()))
            linear.bias.copy_(torch.from_numpy(b))
        layers += [linear, torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1]).eval()


def build(folder: Path) -> dict[str, Path]:
    """mlp.onnx, mlp.pt (TorchScript) and mlp.pt2 (torch.export, dynamic batch) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"onnx": mlp.build(folder / "mlp.onnx"), "torchscript": folder / "mlp.pt"}
    files["torch.export"] = folder / "mlp.pt2"
    module = torch_mlp()
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(module).save(str(files["torchscript"]))  # type: ignore[no-untyped-call]
    batch = torch.export.Dim("batch", max=4096)
    example = (torch.zeros(2, mlp.WIDTHS[0]),)
    program = torch.export.export(module, example, dynamic_shapes=({0: batch},))
    torch.export.save(program, files["torch.export"])
    return files


def load(kind: str, path: Path, threads: int) -> Runtime:
    config = ModelConfig(name="mlp", max_batch_size=256)
    config.parameters["intra_op_thread_count"] = str(threads)
    if kind == "torchscript":
        config.inputs = [TensorSpec("INPUT__0", "FP32", [mlp.WIDTHS[0]])]
        config.outputs = [TensorSpec("OUTPUT__0", "FP32", [mlp.WIDTHS[-1]])]
    runtime: Runtime = (OnnxRuntime if kind == "onnx" else PyTorchRuntime)(path, config)
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
    parser.add_argument("--out", type=Path, default=Path("runs/torch_mlp"))
    args = parser.parse_args(argv)
    files = build(args.out)
    names = {"onnx": "x", "torchscript": "INPUT__0", "torch.export": "input"}
    runtimes = {kind: load(kind, path, args.threads) for kind, path in files.items()}
    probe = np.random.default_rng(1).random((8, mlp.WIDTHS[0]), dtype=np.float32)
    want = next(iter(runtimes["onnx"].infer({"x": probe}).values()))
    for kind, runtime in runtimes.items():
        got = next(iter(runtime.infer({names[kind]: probe}).values()))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=kind)
    print(f"| runtime | {' | '.join(f'batch {b} rows/s' for b in BATCHES)} |")
    print(f"|---|{'---|' * len(BATCHES)}")
    for kind, runtime in runtimes.items():
        cells = [rows_per_second(runtime, names[kind], b, args.seconds) for b in BATCHES]
        print(f"| {kind} | {' | '.join(f'{c:,.0f}' for c in cells)} |")


if __name__ == "__main__":
    main()
