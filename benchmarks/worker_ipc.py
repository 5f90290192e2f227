"""What the worker process costs: an echo Python model in the server (`isolation: thread`)
against the same model in its worker process (the default), over KServe v2 HTTP with the
binary extension, side by side in one server, runs interleaved.

    python benchmarks/worker_ipc.py [--seconds 5] [--rounds 2]

c=1: latency of sequential requests (p50, p99); c=16: requests per second of 16 concurrent
clients. Payloads: 16 bytes (inline in the socket frame) and 1 MiB (through shared memory).

Then the same echo without HTTP, runtime to runtime in this process: a worker thread's
`PythonRuntime.infer` (what the batcher does for `isolation: thread`) against
`WorkerRuntime.infer_async` (a round trip to the worker process), sequentially.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from procs import free_port

ECHO = """\
import modelyard


class Echo(modelyard.Model):
    def predict(self, inputs):
        return {"y": inputs["x"]}
"""

YAML = """\
runtime: python
instances: {instances}
inputs: [{{name: x, datatype: FP32, shape: [-1]}}]
outputs: [{{name: y, datatype: FP32, shape: [-1]}}]
parameters: {{isolation: {isolation}}}
"""


def repository(root: Path) -> None:
    for isolation in ("thread", "process"):
        folder = root / f"echo_{isolation}"
        folder.mkdir(parents=True)
        (folder / "model.py").write_text(ECHO)
        (folder / "model.yaml").write_text(YAML.format(isolation=isolation, instances=2))


def body(elements: int) -> tuple[bytes, dict[str, str]]:
    raw = np.arange(elements, dtype=np.float32).tobytes()
    header = {
        "inputs": [
            {
                "name": "x",
                "datatype": "FP32",
                "shape": [elements],
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
    }
    head = json.dumps(header).encode()
    return head + raw, {"Inference-Header-Content-Length": str(len(head))}


async def latency(
    client: httpx.AsyncClient, url: str, payload: bytes, headers: dict[str, str], seconds: float
) -> tuple[float, float]:
    times = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        start = time.perf_counter()
        response = await client.post(url, content=payload, headers=headers)
        times.append(time.perf_counter() - start)
        response.raise_for_status()
    times.sort()
    return statistics.median(times) * 1e3, times[int(len(times) * 0.99)] * 1e3


async def throughput(
    client: httpx.AsyncClient,
    url: str,
    payload: bytes,
    headers: dict[str, str],
    seconds: float,
    concurrency: int,
) -> float:
    count = 0
    until = time.monotonic() + seconds

    async def one_client() -> None:
        nonlocal count
        while time.monotonic() < until:
            response = await client.post(url, content=payload, headers=headers)
            response.raise_for_status()
            count += 1

    start = time.monotonic()
    await asyncio.gather(*[one_client() for _ in range(concurrency)])
    return count / (time.monotonic() - start)


async def measure(base: str, seconds: float, rounds: int) -> dict[str, dict[str, list[float]]]:
    results: dict[str, dict[str, list[float]]] = {}
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        for _ in range(rounds):
            for size, elements in (("16 B", 4), ("1 MiB", 262_144)):
                payload, headers = body(elements)
                for isolation in ("thread", "process"):
                    url = f"/v2/models/echo_{isolation}/infer"
                    p50, p99 = await latency(client, url, payload, headers, seconds)
                    rps = await throughput(client, url, payload, headers, seconds, 16)
                    row = results.setdefault(f"{size} {isolation}", {})
                    for key, value in (("p50_ms", p50), ("p99_ms", p99), ("c16_rps", rps)):
                        row.setdefault(key, []).append(value)
    return results


async def direct(root: Path, count: int) -> list[tuple[str, float, float]]:
    from modelyard.runtimes.python import PythonRuntime
    from modelyard.runtimes.worker import WorkerRuntime
    from modelyard.spec.config import ModelConfig, TensorSpec

    path = root / "echo_thread" / "model.py"
    config = ModelConfig(
        "echo",
        "python",
        inputs=[TensorSpec("x", "FP32", [-1])],
        outputs=[TensorSpec("y", "FP32", [-1])],
    )
    worker, local = WorkerRuntime(path, config, "python"), PythonRuntime(path, config)
    worker.load()
    local.load()
    worker.serve()
    loop = asyncio.get_running_loop()
    rows = []
    try:
        for size, elements in (("16 B", 4), ("1 MiB", 262_144)):
            inputs = {"x": np.ones(elements, dtype=np.float32)}
            for isolation in ("thread", "process"):
                times = []
                for _ in range(count):
                    start = time.perf_counter()
                    if isolation == "thread":
                        await loop.run_in_executor(None, local.infer, inputs)
                    else:
                        await worker.infer_async(inputs)
                    times.append(time.perf_counter() - start)
                times = sorted(times[count // 10 :])  # the first tenth warms up
                p50, p99 = statistics.median(times), times[int(len(times) * 0.99)]
                rows.append((f"{size} {isolation}", p50 * 1e6, p99 * 1e6))
    finally:
        await asyncio.to_thread(worker.unload)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        root = Path(work) / "repo"
        repository(root)
        port = free_port()
        command = [
            sys.executable,
            "-m",
            "modelyard",
            "serve",
            str(root),
            "--http-port",
            str(port),
            "--grpc-port",
            str(free_port()),
            "--log-level",
            "warning",
        ]
        server = subprocess.Popen(command)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/v2/health/ready").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not start")
                time.sleep(0.1)
            results = asyncio.run(measure(base, args.seconds, args.rounds))
        finally:
            server.terminate()
            server.wait(30)
        rows = asyncio.run(direct(root, 2000))
    print(f"{'payload / isolation':24} {'c=1 p50 ms':>11} {'c=1 p99 ms':>11} {'c=16 req/s':>11}")
    for name, row in results.items():
        p50, p99, rps = (statistics.median(row[k]) for k in ("p50_ms", "p99_ms", "c16_rps"))
        print(f"{name:24} {p50:11.2f} {p99:11.2f} {rps:11.0f}")
    print(f"\n{'runtime to runtime':24} {'p50 us':>11} {'p99 us':>11}")
    for name, p50_us, p99_us in rows:
        print(f"{name:24} {p50_us:11.0f} {p99_us:11.0f}")


if __name__ == "__main__":
    main()
