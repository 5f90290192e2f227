"""Cold start as a scaled-to-zero replica sees it: from `modelyard serve` to ready, then each
model's first answer, on the demo repository (or the given ones).

    .venv/bin/python benchmarks/cold_start.py [--repeats 3] [--mode none] [REPO ...]

Each start is a fresh process on free ports. Ready is polled every 5 ms on /v2/health/ready (the
readiness probe's path); then every model gets one KServe v2 infer request built from its
metadata (zeros, "hello" for BYTES inputs: a GGUF model answers `text_input` too), timed
from the process start. What a pod adds on top (image pull, scheduling, volume mount, the
kubelet's probe period) is the cluster's and is not measured here; docs/kubernetes.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import time

import httpx

ZERO: dict[str, object] = {"BYTES": "hello", "BOOL": False}
#: a text generator's optional JSON tensor (Triton's vLLM-backend tensors): one token is enough
SAMPLING = {"sampling_parameters": '{"max_tokens": 1}'}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _request(metadata: dict[str, object]) -> dict[str, object]:
    """One row of placeholder input for every input the model declares."""
    inputs = []
    for spec in metadata["inputs"]:  # type: ignore[attr-defined]
        shape = [1 if d < 0 else d for d in spec["shape"]]
        count = 1
        for d in shape:
            count *= d
        inputs.append(
            {
                "name": spec["name"],
                "shape": shape,
                "datatype": spec["datatype"],
                "data": [SAMPLING.get(spec["name"], ZERO.get(spec["datatype"], 0))] * count,
            }
        )
    return {"inputs": inputs}


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.005)


def measure(repos: list[str], mode: str) -> dict[str, float]:
    """Seconds from the process start: `ready`, then each model's first answer (NaN on error)."""
    port = _free_port()
    exe = shutil.which("modelyard") or ".venv/bin/modelyard"
    command = [exe, "serve", *repos, "--http-port", str(port), "--grpc-port", str(_free_port())]
    if mode:
        command += ["--model-control-mode", mode, "--load-model", "*"]
    url = f"http://127.0.0.1:{port}"
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_ready(url, process)
        times = {"ready": time.perf_counter() - start}
        with httpx.Client(base_url=url, timeout=120) as client:
            models = [m["name"] for m in client.post("/v2/repository/index").json()]
            for name in models:
                metadata = client.get(f"/v2/models/{name}").json()
                answer = client.post(f"/v2/models/{name}/infer", json=_request(metadata))
                ok = answer.status_code == 200
                times[name] = time.perf_counter() - start if ok else float("nan")
        return times
    finally:
        process.terminate()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("repos", nargs="*")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--mode", default="", help="--model-control-mode (e.g. none, as the chart sets)"
    )
    args = parser.parse_args()
    measure(args.repos, args.mode)  # the first run builds the demo cache and warms the page cache
    runs = [measure(args.repos, args.mode) for _ in range(args.repeats)]
    head = f"{'from process start to':<28} {'median':>8} {'min':>8} {'max':>8}"
    print(f"{head}  (seconds, {len(runs)} starts)")
    for key in runs[0]:
        values = [r[key] for r in runs]
        label = "ready" if key == "ready" else f"first answer: {key}"
        print(
            f"{label:<28} {statistics.median(values):>8.2f} {min(values):>8.2f} {max(values):>8.2f}"
        )
    print(f"cpus: {os.cpu_count()}")


if __name__ == "__main__":
    main()
