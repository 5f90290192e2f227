"""Every CPU runtime of issue 13 on the benchmark MLP (benchmarks/mlp.py: the same weights), as
the issue asks: in-process rows/s at batch 1 and 64 per runtime, then each served by one
`modelyard serve` (bare files, every setting the advisor's for --goal, by default the server's
own: latency) and driven with wrk at c=64 (one JSON row per request, KServe v2), beside the
HTTP floor (benchmarks/apps/raw_asgi.py, a constant answer). Each runtime's composed limit is
1/(1/floor@c + 1/in-process@64), as docs/benchmarks.md defines it for ONNX; the goal is served
>= 30% of it. The floor and the runtimes are driven in turn, `--rounds` times, each share
taken against its own round's floor; the table gives the medians and every round's share.

    .venv/bin/python benchmarks/runtimes_served.py [--seconds 10] [--warmup 3] [--concurrency 64]
        [--rounds 3] [--runtimes onnx,torchscript,torch.export,savedmodel,ir] [--goal latency]

Needs wrk on the PATH and the onnx, pytorch, tensorflow and openvino extras (a runtime whose
extra is missing is skipped, saying so). Results: the table, and
benchmarks/.work/results/runtimes-served-STAMP.{txt,json}.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import statistics
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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


def body_floor() -> bytes:
    row = {"inputs": [{"name": "x", "shape": [1, 256], "datatype": "FP32", "data": mlp.rows(1)}]}
    return json.dumps(row).encode()


@contextmanager
def floor_server(scripts: Path) -> Iterator[tuple[str, Path]]:
    """The HTTP floor (a constant answer), running: its infer URL and wrk script."""
    port = procs.free_port()
    env = {
        **procs.private_env(WORK, "floor"),
        "BENCH_MODE": "floor",
        "BENCH_PORT": str(port),
        "BENCH_MODEL": "",
    }
    argv = [sys.executable, str(ROOT / "benchmarks" / "apps" / "raw_asgi.py")]
    url = f"http://127.0.0.1:{port}"
    log = WORK / "logs" / "runtimes-served-floor.log"
    with procs.serving(argv, env, ROOT, log, f"{url}/v2/health/ready"):
        yield f"{url}/v2/models/mlp/infer", load.lua_script(scripts, "floor", body_floor())


@contextmanager
def modelyard_server(
    args: argparse.Namespace, repo: Path, built: dict[str, Path], scripts: Path
) -> Iterator[dict[str, tuple[str, Path]]]:
    """One `modelyard serve` over every built format, running, each answer checked against
    onnxruntime's: per runtime, the infer URL and wrk script."""
    port, grpc = procs.free_port(), procs.free_port()
    argv = [
        *(sys.executable, "-m", "modelyard", "serve", str(repo)),
        *("--http-port", str(port), "--grpc-port", str(grpc), "--goal", args.goal),
    ]
    env = procs.private_env(WORK, "modelyard-runtimes")
    url = f"http://127.0.0.1:{port}"
    log = WORK / "logs" / "runtimes-served-modelyard.log"
    want = mlp.reference(mlp.session(repo / FORMATS["onnx"][0]), np.asarray(mlp.rows(1)))
    with procs.serving(argv, env, ROOT, log, f"{url}/v2/health/ready", timeout=300):
        targets = {}
        for kind, path in built.items():
            model = path.name.split(".")[0]
            request = body(url, model)
            check(url, model, request, want)
            script = load.lua_script(scripts, model, request)
            targets[kind] = (f"{url}/v2/models/{model}/infer", script)
        yield targets


def rounds(
    args: argparse.Namespace, repo: Path, built: dict[str, Path], scripts: Path
) -> list[dict[str, load.Cell]]:
    """`--rounds` passes; each drives the floor, then every runtime, so each runtime is compared
    with a floor measured minutes, not a quarter of an hour, from it (this machine's speed
    drifts: the floor alone gave 13.4k, 18.3k and 21.3k req/s in one run)."""
    timing = (args.concurrency, args.warmup, args.seconds)
    passes = []
    with (
        floor_server(scripts) as (floor_url, floor_script),
        modelyard_server(args, repo, built, scripts) as targets,
    ):
        for n in range(args.rounds):
            cells = {"floor": load.wrk(floor_url, floor_script, *timing)}
            print(f"round {n + 1}: floor {cells['floor'].rps:,.0f} req/s", flush=True)
            for kind, (url, script) in targets.items():
                cells[kind] = load.wrk(url, script, *timing)
                print(f"  {kind}: {cells[kind].rps:,.0f} req/s", flush=True)
            passes.append(cells)
    return passes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--inprocess-seconds", type=float, default=3.0)
    parser.add_argument("--runtimes", default=",".join(FORMATS))
    parser.add_argument("--goal", default="latency", choices=("latency", "throughput"))
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
    passes = rounds(args, repo, built, WORK / "runtimes-served" / "lua")
    text = report(args, limits, passes)
    print(text)
    raw: dict[str, Any] = {
        "args": vars(args),
        "in_process": {k: {str(b): v for b, v in d.items()} for k, d in limits.items()},
        "rounds": [{k: c.__dict__ for k, c in cells.items()} for cells in passes],
    }
    procs.save_results(WORK, "runtimes-served", text, raw)


def report(
    args: argparse.Namespace,
    limits: dict[str, dict[int, float]],
    passes: list[dict[str, load.Cell]],
) -> str:
    """Per runtime: the in-process rates, and over the rounds the median served req/s, p99 and
    share of the composed limit (each round's share against that round's floor), with the
    shares' range."""
    c = args.concurrency
    floors = [cells["floor"].rps for cells in passes]
    lines = [
        f"benchmark MLP ({'-'.join(map(str, mlp.WIDTHS))}), goal {args.goal}, c={c}, "
        f"{len(passes)} rounds; floor {min(floors):,.0f}-{max(floors):,.0f} req/s",
        "| runtime | in-process batch 1 rows/s | batch 64 rows/s | served req/s (median) "
        "| p99 ms (median) | composed limit (median) | share (median) | shares |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for kind in limits:
        at1, at64 = limits[kind][1], limits[kind][64]
        served = [cells[kind] for cells in passes]
        composed = [1 / (1 / cells["floor"].rps + 1 / at64) for cells in passes]
        shares = [cell.rps / limit for cell, limit in zip(served, composed, strict=True)]
        lines.append(
            f"| {kind} | {at1:,.0f} | {at64:,.0f} "
            f"| {statistics.median(cell.rps for cell in served):,.0f} "
            f"| {statistics.median(cell.p99_ms for cell in served):.1f} "
            f"| {statistics.median(composed):,.0f} | {statistics.median(shares):.0%} "
            f"| {', '.join(f'{share:.0%}' for share in shares)} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
