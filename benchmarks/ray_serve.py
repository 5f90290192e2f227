"""modelyard on Ray Serve against plain modelyard and a hand-written Ray Serve app (issue 15).

Same MLP and load as benchmarks/serving.py (benchmarks/mlp.py's model, one KServe v2 JSON row
per request, `wrk -t1 -c64`), one target at a time on this machine:

  plain       `modelyard serve` (its own process, no Ray)
  ray-1       modelyard on Ray Serve, 1 replica: the ingress's own port (past Ray's proxy)
  ray-2       the same with 2 replicas (model.yaml `instances: 2`)
  ray-1-proxy ray-1 through Ray's HTTP proxy instead
  hand        a hand-written Ray Serve deployment: Starlette request -> JSON -> `@serve.batch`
              onnxruntime -> JSON, through Ray's HTTP proxy (what a Ray user writes first;
              benchmarks/apps/ray_app.py is the peer run's version of it, on a bare row)

Goals (issue 15): ray-1 >= 5x hand, and >= 50% of plain. Run on a quiet machine:

    python benchmarks/ray_serve.py --seconds 20 --out runs/ray_serve.json
    python benchmarks/ray_serve.py --seconds 2 --warmup 1 --targets plain,ray-1   # a check

`--grpc`: the same row over KServe v2 gRPC instead (grpc_load.py, not wrk): plain's gRPC port,
the ingress's own gRPC port (ray-1, ray-2), Ray's gRPC proxy (ray-1-proxy); hand has none.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load
import mlp
import procs

TARGETS = ("plain", "ray-1", "ray-2", "ray-1-proxy", "hand")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/modelyard-ray-bench"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--grpc", action="store_true", help="KServe v2 gRPC, not HTTP")
    args = parser.parse_args()
    model = mlp.build(args.scratch / "mlp.onnx")
    row = np.random.default_rng(0).standard_normal(mlp.WIDTHS[0]).round(4).tolist()
    body = json.dumps(
        {"inputs": [{"name": "x", "shape": [1, len(row)], "datatype": "FP32", "data": row}]}
    ).encode()
    script = load.lua_script(args.scratch, "row", body)
    row_file = args.scratch / "row.f32"
    row_file.write_bytes(np.asarray(row, "<f4").tobytes())
    results: dict[str, Any] = {}
    for target in args.targets.split(","):
        if args.grpc and target == "hand":
            print("hand         (no gRPC)", flush=True)
            continue
        with _serving(target, model, args.scratch) as (url, grpc_port):
            _check(url, body)
            if args.grpc:
                cell = load.grpc(grpc_port, row_file, args.concurrency, args.warmup, args.seconds)
            else:
                cell = load.wrk(url, script, args.concurrency, args.warmup, args.seconds)
        results[target] = cell.__dict__
        print(
            f"{target:12} {cell.rps:9.0f} req/s  p50 {cell.p50_ms:7.2f} ms  "
            f"p99 {cell.p99_ms:7.2f} ms  errors {cell.errors}",
            flush=True,
        )
    _goals(results)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


def _goals(results: dict[str, Any]) -> None:
    rps = {name: cell["rps"] for name, cell in results.items()}
    if "ray-1" in rps and "hand" in rps:
        print(f"ray-1 / hand  = {rps['ray-1'] / rps['hand']:.2f}x (goal >= 5x)")
    if "ray-1" in rps and "plain" in rps:
        print(f"ray-1 / plain = {rps['ray-1'] / rps['plain']:.0%} (goal >= 50%)")


def _check(url: str, body: bytes) -> None:
    answer = httpx.post(url, content=body, timeout=30)
    answer.raise_for_status()


@contextmanager
def _serving(target: str, model: Path, scratch: Path) -> Iterator[tuple[str, int]]:
    """The target's KServe infer URL and its gRPC port."""
    if target == "plain":
        with _plain(model, scratch) as served:
            yield served
        return
    import ray
    from ray import serve
    from ray.serve.config import gRPCOptions

    from modelyard.ray.grpc_service import SERVICER_FUNCTION

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        proxy, own, grpc_proxy, grpc_own = (procs.free_port() for _ in range(4))
        serve.start(
            http_options={"host": "127.0.0.1", "port": proxy},
            grpc_options=gRPCOptions(port=grpc_proxy, grpc_servicer_functions=[SERVICER_FUNCTION]),
        )
        if target == "hand":
            serve.run(_hand_app(model), name="hand", route_prefix="/")
            yield f"http://127.0.0.1:{proxy}/v2/models/mlp/infer", 0
            return
        from modelyard.ray import build_app

        repository = _repository(model, scratch, 2 if target == "ray-2" else 1)
        args = {"repository": str(repository), "port": own, "grpc_port": grpc_own}
        serve.run(build_app(args), name="modelyard")
        port, grpc_port = (proxy, grpc_proxy) if target.endswith("-proxy") else (own, grpc_own)
        yield f"http://127.0.0.1:{port}/v2/models/mlp/infer", grpc_port
    finally:
        serve.shutdown()
        ray.shutdown()


@contextmanager
def _plain(model: Path, scratch: Path) -> Iterator[tuple[str, int]]:
    port, grpc_port = procs.free_port(), procs.free_port()
    repository = _repository(model, scratch, 1)
    command = [
        sys.executable,
        "-m",
        "modelyard",
        "serve",
        str(repository),
        "--http-port",
        str(port),
        "--grpc-port",
        str(grpc_port),
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        yield f"{url}/v2/models/mlp/infer", grpc_port
    finally:
        process.terminate()
        process.wait(30)


def _repository(model: Path, scratch: Path, instances: int) -> Path:
    folder = scratch / f"repo-{instances}" / "mlp"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "model.onnx"
    if not target.exists():
        target.symlink_to(model)
    (folder / "model.yaml").write_text(f"instances: {instances}\n")
    return folder.parent


def _hand_app(model: Path) -> Any:
    """What a Ray Serve user writes by hand: JSON in, `@serve.batch`, JSON out."""
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    @serve.deployment(max_ongoing_requests=1024, logging_config={"enable_access_log": False})
    class HandMLP:
        def __init__(self, path: str) -> None:
            self.session = mlp.session(Path(path))

        @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.0)
        async def predict(self, rows: list[np.ndarray]) -> list[np.ndarray]:
            batch = np.concatenate(rows)
            return list(mlp.reference(self.session, batch)[:, None, :])

        async def __call__(self, request: Request) -> JSONResponse:
            tensor = (await request.json())["inputs"][0]
            x = np.asarray(tensor["data"], np.float32).reshape(tensor["shape"])
            y = await self.predict(x)
            out = {
                "name": "y",
                "shape": list(y.shape),
                "datatype": "FP32",
                "data": y.reshape(-1).tolist(),
            }
            return JSONResponse({"model_name": "mlp", "outputs": [out]})

    return HandMLP.bind(str(model))


if __name__ == "__main__":
    main()
