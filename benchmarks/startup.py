"""Time from `modelyard serve` to ready, and the server's idle memory, on the demo repository.

    .venv/bin/python benchmarks/startup.py [--repeats 5] [REPO ...]

Starts the real command on a free port each time, polls /v2/health/ready every 5 ms, reads
VmRSS from /proc once ready, and prints the median and range.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(repos: list[str]) -> tuple[float, float]:
    port = _free_port()
    exe = shutil.which("modelyard") or ".venv/bin/modelyard"
    command = [exe, "serve", *repos, "--http-port", str(port), "--grpc-port", str(_free_port())]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}")
            try:
                url = f"http://127.0.0.1:{port}/v2/health/ready"
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.005)
        ready = time.perf_counter() - start
        time.sleep(1.0)
        return ready, _rss_mib(process.pid)
    finally:
        process.terminate()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("repos", nargs="*")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    measure(args.repos)  # first run builds the demo cache and warms the page cache
    results = [measure(args.repos) for _ in range(args.repeats)]
    ready = [r for r, _ in results]
    rss = [m for _, m in results]
    print(
        f"ready after: median {statistics.median(ready):.2f} s "
        f"(min {min(ready):.2f}, max {max(ready):.2f}) over {len(ready)} starts"
    )
    print(
        f"idle RSS:    median {statistics.median(rss):.0f} MiB "
        f"(min {min(rss):.0f}, max {max(rss):.0f})"
    )


if __name__ == "__main__":
    main()
