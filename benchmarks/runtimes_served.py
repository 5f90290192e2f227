"""Every CPU runtime of issue 13 on the benchmark MLP (benchmarks/mlp.py: the same weights), as
the issue asks: in-process rows/s at batch 1 and 64 per runtime, then each served by one
`modelyard serve` (bare files, every setting the advisor's for --goal) and driven with wrk at
c=64 (one JSON row per request, KServe v2), beside the HTTP floor (benchmarks/apps/raw_asgi.py,
a constant answer). Each runtime's composed limit is 1/(1/floor@c + 1/in-process@64), as
docs/benchmarks.md defines it for ONNX; the goal is served >= 30% of it.

    .venv/bin/python benchmarks/runtimes_served.py [--seconds 10] [--warmup 3] [--concurrency 64]
        [--runtimes onnx,torchscript,torch.export,savedmodel,ir] [--goal throughput]

Needs wrk on the PATH and the onnx, pytorch, tensorflow and openvino extras (a runtime whose
extra is missing is skipped, saying so). Results: the table, and
benchmarks/.work/results/runtimes-served-STAMP.{txt,json}.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import httpx
import load
import mlp
import numpy as np
import procs

from modelyard.repository.loader import load_version
from modelyard.repository.scan import read_entry
from modelyard.tuning.convert import rows_per_second

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / ".work"
BATCHES = (1, 64)
#: runtime label -> (file in the repository, the extras' module it needs)
FORMATS = {
    "onnx": ("mlp_onnx.onnx", "onnxruntime"),
    "torchscript": ("mlp_torchscript", "torch"),
    "torch.export": ("mlp_export.pt2", "torch"),
    "savedmodel": ("mlp_tf.savedmodel", "tensorflow"),
    "ir": ("mlp_ir.xml", "openvino"),
}
#: The TorchScript model's tensors, as Triton's pytorch_libtorch names them.
TORCHSCRIPT_YAML = f"""max_batch_size: 256
inputs:
  - {{name: INPUT__0, datatype: FP32, shape: [{mlp.WIDTHS[0]}]}}
outputs:
  - {{name: OUTPUT__0, datatype: FP32, shape: [{mlp.WIDTHS[-1]}]}}
"""


def build(repo: Path, wanted: list[str]) -> dict[str, Path]:
    """The MLP in every wanted format, as bare entries of one repository."""
    repo.mkdir(parents=True, exist_ok=True)
    built: dict[str, Path] = {}
    scratch = WORK / "scratch" / "runtimes-served"
    for kind in wanted:
        name, module = FORMATS[kind]
        if importlib.util.find_spec(module) is None:
            print(f"{kind}: skipped ({module} is not installed)")
            continue
        target = repo / name
        if kind == "onnx":
            mlp.build(target)
        elif kind in ("torchscript", "torch.export"):
            import torch_mlp

            files = torch_mlp.build(scratch / "torch")
            if kind == "torch.export":  # the program's signature names its tensors
                shutil.copy(files["torch.export"], target)
            else:  # TorchScript declares none: a folder with model.yaml, Triton's names
                target = repo / "mlp_torchscript"
                target.mkdir()
                shutil.copy(files["torchscript"], target / "model.pt")
                (target / "model.yaml").write_text(TORCHSCRIPT_YAML)
        elif kind == "savedmodel":
            import tf_mlp

            files = tf_mlp.build(scratch / "tf")
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(files["savedmodel"], target)
        else:
            import openvino_mlp

            files = openvino_mlp.build(scratch / "ov")
            shutil.copy(files["ir"], target)
            shutil.copy(files["ir"].with_suffix(".bin"), target.with_suffix(".bin"))
        built[kind] = target
    return built


def in_process(path: Path, goal: str, seconds: float) -> dict[int, float]:
    """Rows/s of the runtime's own `infer`, loaded as the server loads it (the advisor's
    settings for `goal`), at each batch size."""
    source = read_entry(path)
    assert source is not None, path
    loaded = load_version(source, max(source.versions), False, goal=goal)
    try:
        [spec] = loaded.config.inputs
        rows = np.asarray(mlp.rows(max(BATCHES)), dtype=np.float32)
        return {
            b: rows_per_second(loaded.runtime, {spec.name: rows[:b]}, b, seconds) for b in BATCHES
        }
    finally:
        loaded.runtime.unload()


def body(url: str, model: str) -> bytes:
    """One row as a KServe v2 JSON request for `model` (its input's name from its metadata)."""
    meta = httpx.get(f"{url}/v2/models/{model}", timeout=30).json()
    [tensor] = meta["inputs"]
    request = {
        "inputs": [
            {"name": tensor["name"], "shape": [1, 256], "datatype": "FP32", "data": mlp.rows(1)}
        ]
    }
    return json.dumps(request).encode()


def check(url: str, model: str, request: bytes, want: np.ndarray) -> None:
    answer = httpx.post(f"{url}/v2/models/{model}/infer", content=request, timeout=30)
    answer.raise_for_status()
    [output] = answer.json()["outputs"]
    np.testing.assert_allclose(np.asarray(output["data"]), want.ravel(), rtol=1e-3, atol=1e-3)


def floor_rps(args: argparse.Namespace, scripts: Path) -> load.Cell:
    port = procs.free_port()
    env = {
        **procs.private_env(WORK, "floor"),
        "BENCH_MODE": "floor",
        "BENCH_PORT": str(port),
        "BENCH_MODEL": "",
    }
    argv = [sys.executable, str(ROOT / "benchmarks" / "apps" / "raw_asgi.py")]
    process = procs.start(argv, env, ROOT, WORK / "logs" / "runtimes-served-floor.log")
    try:
        procs.wait_http(f"http://127.0.0.1:{port}/v2/health/ready")
        script = load.lua_script(scripts, "floor", body_floor())
        url = f"http://127.0.0.1:{port}/v2/models/mlp/infer"
        return load.wrk(url, script, args.concurrency, args.warmup, args.seconds)
    finally:
        procs.stop(process)


def body_floor() -> bytes:
    row = {"inputs": [{"name": "x", "shape": [1, 256], "datatype": "FP32", "data": mlp.rows(1)}]}
    return json.dumps(row).encode()


def served(
    args: argparse.Namespace, repo: Path, built: dict[str, Path], scripts: Path
) -> dict[str, load.Cell]:
    port, grpc = procs.free_port(), procs.free_port()
    argv = [
        *(sys.executable, "-m", "modelyard", "serve", str(repo)),
        *("--http-port", str(port), "--grpc-port", str(grpc), "--goal", args.goal),
    ]
    env = procs.private_env(WORK, "modelyard-runtimes")
    process = procs.start(argv, env, ROOT, WORK / "logs" / "runtimes-served-modelyard.log")
    url = f"http://127.0.0.1:{port}"
    want = mlp.reference(mlp.session(repo / FORMATS["onnx"][0]), np.asarray(mlp.rows(1)))
    cells = {}
    try:
        procs.wait_http(f"{url}/v2/health/ready", timeout=300)
        for kind, path in built.items():
            model = path.name.split(".")[0]
            request = body(url, model)
            check(url, model, request, want)
            script = load.lua_script(scripts, model, request)
            infer = f"{url}/v2/models/{model}/infer"
            cells[kind] = load.wrk(infer, script, args.concurrency, args.warmup, args.seconds)
            print(f"  {kind}: {cells[kind].rps:,.0f} req/s at c={args.concurrency}")
    finally:
        procs.stop(process)
    return cells


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--inprocess-seconds", type=float, default=3.0)
    parser.add_argument("--runtimes", default=",".join(FORMATS))
    parser.add_argument("--goal", default="throughput", choices=("latency", "throughput"))
    args = parser.parse_args(argv)
    repo = WORK / "runtimes-served" / "repo"
    shutil.rmtree(repo, ignore_errors=True)
    built = build(repo, args.runtimes.split(","))
    if "onnx" not in built:
        built = {"onnx": build(repo, ["onnx"])["onnx"], **built}  # the reference answer
    limits = {}
    for kind, path in built.items():
        limits[kind] = in_process(path, args.goal, args.inprocess_seconds)
        print(
            f"{kind}: in-process "
            + ", ".join(f"{v:,.0f} rows/s at batch {b}" for b, v in limits[kind].items())
        )
    scripts = WORK / "runtimes-served" / "lua"
    floor = floor_rps(args, scripts)
    print(f"floor: {floor.rps:,.0f} req/s at c={args.concurrency}")
    cells = served(args, repo, built, scripts)
    text = report(args, limits, floor, cells)
    print(text)
    raw: dict[str, Any] = {
        "args": vars(args),
        "floor": floor.__dict__,
        "in_process": {k: {str(b): v for b, v in d.items()} for k, d in limits.items()},
        "served": {k: c.__dict__ for k, c in cells.items()},
    }
    procs.save_results(WORK, "runtimes-served", text, raw)


def report(
    args: argparse.Namespace,
    limits: dict[str, dict[int, float]],
    floor: load.Cell,
    cells: dict[str, load.Cell],
) -> str:
    c = args.concurrency
    lines = [
        f"benchmark MLP ({'-'.join(map(str, mlp.WIDTHS))}), goal {args.goal}; "
        f"floor {floor.rps:,.0f} req/s at c={c}",
        f"| runtime | in-process batch 1 rows/s | batch 64 rows/s | served req/s c={c} "
        f"| p99 ms | composed limit | share |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, cell in cells.items():
        at1, at64 = limits[kind][1], limits[kind][64]
        composed = 1 / (1 / floor.rps + 1 / at64)
        lines.append(
            f"| {kind} | {at1:,.0f} | {at64:,.0f} | {cell.rps:,.0f} | {cell.p99_ms:.1f} "
            f"| {composed:,.0f} | {cell.rps / composed:.0%} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
