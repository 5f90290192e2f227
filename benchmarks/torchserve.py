"""TorchServe itself against modelyard serving the same archive through TorchServe's API: the
benchmark MLP (benchmarks/torch_mlp.py) as TorchScript in one `.mar` with one handler, each
server answering `POST /predictions/mlp` with a JSON row, closed-loop load from wrk. Target
`modelyard-kserve` serves the same TorchScript file on modelyard's PyTorch runtime instead
(no handler: KServe v2 JSON, one row per request, the advisor's settings for throughput), what
a team moving off TorchServe gets when it also moves its clients.

    .venv/bin/python benchmarks/torchserve.py [--concurrency 1,64] [--seconds 20] [--warmup 5]
        [--targets modelyard,modelyard-kserve,torchserve] [--batch-size 64] [--max-batch-delay 5]

TorchServe (`torchserve` + `torch-model-archiver`, Java 17 on the PATH) is installed once into
benchmarks/.work/venvs/torchserve with the same torch as this venv (`--torch` names the
requirement: on a machine without a GPU, point pip at the CPU wheels through its own
configuration, PIP_INDEX_URL / PIP_EXTRA_INDEX_URL, first). Both servers read the same archive
(batchSize / maxBatchDelay in its model-config.yaml); TorchServe runs its default workers
(one per core), modelyard the archive in one worker process. Results: the table, and
benchmarks/.work/results/torchserve-STAMP.{txt,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import load
import mlp
import procs
import torch
import torch_mlp

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / ".work"
TARGETS = ("modelyard", "modelyard-kserve", "torchserve")

#: The handler both servers run: each request a JSON {"x": [row]}, one forward per batch.
HANDLER = """
import json
import torch


class MLPHandler:
    def initialize(self, context):
        folder = context.system_properties["model_dir"]
        self.model = torch.jit.load(f"{folder}/{context.manifest['model']['serializedFile']}")

    def handle(self, data, context):
        rows = []
        for item in data:
            value = item.get("body") or item.get("data")
            if isinstance(value, (bytes, bytearray)):
                value = json.loads(value)
            rows.append(value["x"])
        with torch.inference_mode():
            scores = self.model(torch.tensor(rows, dtype=torch.float32))
        return [{"scores": row} for row in scores.tolist()]
"""


def build_archive(folder: Path, batch_size: int, delay_ms: int) -> Path:
    """mlp.mar in `folder/store`: the TorchScript MLP, the handler and its batch settings."""
    source = folder / "src"
    files = torch_mlp.build(source)
    (source / "mlp_handler.py").write_text(HANDLER)
    config = source / "model-config.yaml"
    config.write_text(f"batchSize: {batch_size}\nmaxBatchDelay: {delay_ms}\n")
    store = folder / "store"
    store.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "model_archiver.model_packaging", "--model-name", "mlp"]
    command += ["--version", "1.0", "--serialized-file", str(files["torchscript"])]
    command += ["--handler", str(source / "mlp_handler.py"), "--config-file", str(config)]
    command += ["--export-path", str(store), "--force"]
    subprocess.run(command, check=True, capture_output=True)
    return store / "mlp.mar"


@contextmanager
def modelyard(store: Path, log: Path) -> Iterator[str]:
    port = procs.free_port()
    argv = [sys.executable, "-m", "modelyard", "serve", str(store), "--model-control-mode"]
    argv += ["none", "--http-port", str(procs.free_port()), "--grpc-port", str(procs.free_port())]
    argv += ["--torchserve-port", str(port), "--log-level", "warning"]
    url = f"http://127.0.0.1:{port}"
    with procs.serving(argv, dict(os.environ), ROOT, log, f"{url}/ping"):
        yield url


@contextmanager
def modelyard_kserve(folder: Path, log: Path) -> Iterator[str]:
    """`modelyard serve` of the archive's TorchScript file on the PyTorch runtime."""
    repo = folder / "kserve-repo"
    model = repo / "mlp"
    model.mkdir(parents=True, exist_ok=True)
    (model / "model.pt").write_bytes((folder / "src" / "mlp.pt").read_bytes())
    width_in, width_out = mlp.WIDTHS[0], mlp.WIDTHS[-1]
    (model / "model.yaml").write_text(
        "max_batch_size: 256\n"
        f"inputs:\n  - {{name: INPUT__0, datatype: FP32, shape: [{width_in}]}}\n"
        f"outputs:\n  - {{name: OUTPUT__0, datatype: FP32, shape: [{width_out}]}}\n"
    )
    port = procs.free_port()
    argv = [sys.executable, "-m", "modelyard", "serve", str(repo), "--goal", "throughput"]
    argv += ["--http-port", str(port), "--grpc-port", str(procs.free_port())]
    argv += ["--log-level", "warning"]
    url = f"http://127.0.0.1:{port}"
    with procs.serving(argv, dict(os.environ), ROOT, log, f"{url}/v2/health/ready"):
        yield url


def kserve_body() -> bytes:
    row = [0.01 * i for i in range(mlp.WIDTHS[0])]
    tensor = {"name": "INPUT__0", "shape": [1, len(row)], "datatype": "FP32", "data": row}
    return json.dumps({"inputs": [tensor]}).encode()


@contextmanager
def torchserve(store: Path, log: Path, torch_requirement: str) -> Iterator[str]:
    # TorchServe's workers import numpy and yaml, which its package does not declare (its
    # install guide installs them beside it)
    requirements = ["torchserve==0.12.0", "torch-model-archiver==0.12.0", torch_requirement]
    requirements += ["pyyaml", "numpy"]
    venv = procs.ensure_venv(WORK, "torchserve", procs.python(11), requirements)
    port, management, metrics = procs.free_port(), procs.free_port(), procs.free_port()
    config = Path(tempfile.mkdtemp(dir=WORK)) / "config.properties"
    config.write_text(
        f"inference_address=http://127.0.0.1:{port}\n"
        f"management_address=http://127.0.0.1:{management}\n"
        f"metrics_address=http://127.0.0.1:{metrics}\n"
        "disable_token_authorization=true\n"
    )
    argv = [str(venv / "bin" / "torchserve"), "--start", "--foreground", "--ncs"]
    argv += ["--model-store", str(store), "--models", "mlp=mlp.mar", "--ts-config", str(config)]
    process = procs.start(argv, procs.private_env(WORK, "torchserve"), WORK, log)
    try:
        url = f"http://127.0.0.1:{port}"
        procs.wait_http(f"{url}/ping", timeout=300)
        _wait_model(url)
        yield url
    finally:
        procs.stop(process, grace=15)


def _wait_model(url: str) -> None:
    """TorchServe answers /ping before its workers have loaded the model."""
    import httpx

    body = {"x": [0.0] * mlp.WIDTHS[0]}
    for _ in range(300):
        if httpx.post(f"{url}/predictions/mlp", json=body, timeout=30).status_code == 200:
            return
        time.sleep(0.5)
    raise TimeoutError("TorchServe never answered a prediction")


def check(url: str) -> None:
    """Both answer the same scores for the same row (the handler and model are the same)."""
    import httpx

    row = [0.01 * i for i in range(mlp.WIDTHS[0])]
    got = httpx.post(f"{url}/predictions/mlp", json={"x": row}, timeout=30).json()["scores"]
    with torch.inference_mode():
        want = torch_mlp.torch_mlp()(torch.tensor([row])).tolist()[0]
    if max(abs(a - b) for a, b in zip(got, want, strict=True)) > 1e-4:
        raise RuntimeError(f"{url} answered {got[:4]}..., torch {want[:4]}...")


def measure(
    url: str, concurrency: list[int], warmup: int, seconds: int, kserve: bool = False
) -> dict[int, load.Cell]:
    row = [0.01 * i for i in range(mlp.WIDTHS[0])]
    if kserve:
        script = load.lua_script(WORK / "torchserve", "kserve", kserve_body())
        target = f"{url}/v2/models/mlp/infer"
    else:
        script = load.lua_script(WORK / "torchserve", "row", json.dumps({"x": row}).encode())
        target = f"{url}/predictions/mlp"
    return {c: load.wrk(target, script, c, warmup, seconds) for c in concurrency}


def check_kserve(url: str) -> None:
    """modelyard's PyTorch runtime answers torch's scores for the row."""
    import httpx

    answer = httpx.post(f"{url}/v2/models/mlp/infer", content=kserve_body(), timeout=30)
    answer.raise_for_status()
    got = answer.json()["outputs"][0]["data"]
    row = [0.01 * i for i in range(mlp.WIDTHS[0])]
    with torch.inference_mode():
        want = torch_mlp.torch_mlp()(torch.tensor([row])).tolist()[0]
    if max(abs(a - b) for a, b in zip(got, want, strict=True)) > 1e-4:
        raise RuntimeError(f"{url} answered {got[:4]}..., torch {want[:4]}...")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", default="1,64")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-batch-delay", type=int, default=5, help="milliseconds")
    parser.add_argument("--torch", default=f"torch=={torch.__version__.split('+')[0]}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    concurrency = [int(c) for c in args.concurrency.split(",")]
    targets = [t for t in args.targets.split(",") if t]
    unknown = set(targets) - set(TARGETS)
    if unknown:
        raise SystemExit(f"unknown targets {sorted(unknown)}; known: {', '.join(TARGETS)}")
    WORK.mkdir(parents=True, exist_ok=True)
    store = build_archive(WORK / "torchserve", args.batch_size, args.max_batch_delay).parent
    results: dict[str, dict[int, load.Cell]] = {}
    for target in targets:
        log = WORK / "logs" / f"torchserve-{target}.log"
        kserve = target == "modelyard-kserve"
        if kserve:
            server = modelyard_kserve(WORK / "torchserve", log)
        elif target == "modelyard":
            server = modelyard(store, log)
        else:
            server = torchserve(store, log, args.torch)
        with server as url:
            (check_kserve if kserve else check)(url)
            results[target] = measure(url, concurrency, args.warmup, args.seconds, kserve)
        for c, cell in results[target].items():
            print(
                f"{target:>16} c={c:<4} {cell.rps:10.0f} req/s  p50 {cell.p50_ms:.2f} ms",
                flush=True,
            )
    text = _table(results, args)
    print(text)
    raw = {t: {c: vars(cell) for c, cell in cells.items()} for t, cells in results.items()}
    procs.save_results(WORK, "torchserve", text, {"args": vars(args), "results": raw})


def _table(results: dict[str, dict[int, load.Cell]], args: argparse.Namespace) -> str:
    lines = [
        f"POST /predictions/mlp, benchmark MLP as TorchScript in one .mar (batchSize "
        f"{args.batch_size}, maxBatchDelay {args.max_batch_delay} ms), {args.seconds} s per cell",
        f"{'target':>16} {'c':>5} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}",
    ]
    for target, cells in results.items():
        for c, cell in cells.items():
            lines.append(
                f"{target:>16} {c:>5} {cell.rps:>10.0f} {cell.p50_ms:>8.2f} {cell.p99_ms:>8.2f} "
                f"{cell.errors:>7}"
            )
    for ours in ("modelyard", "modelyard-kserve"):
        if {ours, "torchserve"} <= results.keys():
            for c in results[ours]:
                if c in results["torchserve"]:
                    ratio = results[ours][c].rps / max(results["torchserve"][c].rps, 1e-9)
                    lines.append(f"{ours} / torchserve at c={c}: {ratio:.2f}x")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
