"""Triton's perf_analyzer against modelyard (KServe v2 HTTP with binary tensors, and gRPC) and
against Triton's own gRPC front, on the serving benchmark's ONNX MLP, in one run.

    .venv/bin/python benchmarks/perf.py [--targets modelyard,triton] [--concurrency 1,8,64]
        [--rounds 3] [--window-ms 3000]

perf_analyzer comes from the `tritonclient[all]==2.51.0` wheel (later ones need glibc 2.38),
installed once into benchmarks/.work/venvs/perf_analyzer with `nvidia-cuda-runtime-cu12` for
the libcudart.so.12 it links (no GPU is used); it also needs Debian's `libb64-0d`. Each round
starts every target afresh, in alternating order, checks its answers over both protocols, then
runs perf_analyzer (closed loop, C requests in flight, one row of 256 floats each) for every
protocol and concurrency; every cell reports its median round. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import ctypes.util
import json
import os
import re
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import mlp
import numpy as np
import procs
from targets import TARGETS, Launch, Setup, Target

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / ".work"
PERF_ANALYZER = ["tritonclient[all]==2.51.0", "nvidia-cuda-runtime-cu12"]
#: The targets this driver knows and the protocols each is measured over.
PROTOCOLS = {
    "modelyard": ("http", "grpc"),
    "modelyard-baseline": ("http", "grpc"),
    "triton": ("http", "grpc"),
}


@dataclass(frozen=True)
class Cell:
    rps: float
    p50_us: float
    p99_us: float
    #: CPU time per request over the whole perf_analyzer run (cores used / req/s): the
    #: server's process tree, and perf_analyzer itself, which shares the same cores
    server_us: float = 0.0
    client_us: float = 0.0


@dataclass
class Runs:
    """What the rounds measured, by (target, protocol, concurrency)."""

    cells: dict[tuple[str, str, int], list[Cell]] = field(default_factory=dict)

    def add(self, key: tuple[str, str, int], cell: Cell) -> None:
        self.cells.setdefault(key, []).append(cell)

    def median(self, key: tuple[str, str, int]) -> Cell | None:
        cells = sorted(self.cells.get(key, []), key=lambda c: c.rps)
        return cells[(len(cells) - 1) // 2] if cells else None


# ---- perf_analyzer ------------------------------------------------------------------------------


def perf_analyzer() -> tuple[Path, dict[str, str]]:
    """The perf_analyzer binary and the environment it runs in (installed once)."""
    if ctypes.util.find_library("b64") is None:
        raise SystemExit("perf_analyzer needs libb64: apt-get install -y libb64-0d")
    venv = procs.ensure_venv(WORK, "perf_analyzer", procs.python(11), PERF_ANALYZER)
    cudart = next(venv.glob("lib/python3.*/site-packages/nvidia/cuda_runtime/lib"))
    library = os.pathsep.join(filter(None, [str(cudart), os.environ.get("LD_LIBRARY_PATH")]))
    return venv / "bin" / "perf_analyzer", {**os.environ, "LD_LIBRARY_PATH": library}


def input_file(row: list[float]) -> Path:
    path = WORK / "bodies" / "perf-row.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"data": [{"x": {"content": row, "shape": [len(row)]}}]}))
    return path


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process tree (its live members)."""
    ticks = 0
    for member in procs.tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def measure(
    binary: Path, env: dict[str, str], url: str, protocol: str, c: int, server: int, args: Any
) -> Cell:
    command = [
        str(binary),
        "-m",
        "mlp",
        "-u",
        url,
        "-i",
        protocol,
        "--concurrency-range",
        str(c),
        "--measurement-interval",
        str(args.window_ms),
        "--stability-percentage",
        str(args.stability),
        "--max-trials",
        "10",
        "--input-data",
        str(args.input),
    ]
    start, server_cpu = time.perf_counter(), cpu_seconds(server)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
    cell = parse(done.stdout + done.stderr, done.returncode)
    per_request = 1e6 / (cell.rps * wall)
    server_us = (cpu_seconds(server) - server_cpu) * per_request
    return replace(cell, server_us=server_us, client_us=client * per_request)


def parse(output: str, returncode: int) -> Cell:
    """Throughput and latencies from perf_analyzer's summary."""
    numbers = {
        key: re.search(pattern, output)
        for key, pattern in (
            ("rps", r"Throughput: ([\d.]+) infer/sec"),
            ("p50", r"p50 latency: (\d+) usec"),
            ("p99", r"p99 latency: (\d+) usec"),
        )
    }
    if returncode or not all(numbers.values()):
        raise RuntimeError(f"perf_analyzer failed ({returncode}):\n{output[-1500:]}")
    rps, p50, p99 = (float(m.group(1)) for m in numbers.values() if m)
    return Cell(rps, p50, p99)


# ---- targets ------------------------------------------------------------------------------------


def check(launch: Launch, row: list[float], want: np.ndarray) -> None:
    """One answer over each protocol, against in-process onnxruntime."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    x = np.asarray([row], dtype=np.float32)
    for module, address in (
        (httpclient, f"127.0.0.1:{launch.http_port}"),
        (grpcclient, f"127.0.0.1:{launch.grpc_port}"),
    ):
        client = module.InferenceServerClient(address)
        tensor = module.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        got = np.asarray(client.infer("mlp", [tensor]).as_numpy("y")).reshape(-1)
        if not np.allclose(got, want, rtol=1e-4, atol=1e-5):
            raise RuntimeError(f"{module.__name__}: wrong answer {got[:4]}..., want {want[:4]}...")
        client.close()


def start(target: Target, setup: Setup, log: Path) -> tuple[Launch, subprocess.Popen[bytes]]:
    launch = target.launch(setup)
    process = procs.start(launch.argv, launch.env, launch.cwd, log)
    try:
        procs.wait_http(f"http://127.0.0.1:{launch.http_port}/v2/models/mlp/ready", timeout=300)
    except TimeoutError:
        procs.stop(process)
        raise
    return launch, process


def run_round(order: list[Target], setup: Setup, args: argparse.Namespace, runs: Runs) -> None:
    binary, env = perf_analyzer()
    want = mlp.reference(mlp.session(setup.model), np.asarray([args.row], np.float32))[0]
    for target in order:
        log = WORK / "logs" / f"perf-server-{target.name}.log"
        launch, process = start(target, setup, log)
        try:
            time.sleep(1.0)  # let a server that reported ready finish its start-up work
            check(launch, args.row, want)
            for protocol in PROTOCOLS[target.name]:
                port = launch.grpc_port if protocol == "grpc" else launch.http_port
                for c in args.concurrency:
                    address = f"127.0.0.1:{port}"
                    cell = measure(binary, env, address, protocol, c, process.pid, args)
                    runs.add((target.name, protocol, c), cell)
                    print(
                        f"{target.name} {protocol} c={c}: {cell.rps:,.0f} req/s, "
                        f"p50 {cell.p50_us / 1000:.2f} ms, p99 {cell.p99_us / 1000:.2f} ms; CPU "
                        f"per request: server {cell.server_us:.0f} us, "
                        f"client {cell.client_us:.0f} us",
                        file=sys.stderr,
                        flush=True,
                    )
        finally:
            procs.stop(process)


# ---- report -------------------------------------------------------------------------------------


def _ratio(runs: Runs, a: tuple[str, str], b: tuple[str, str], c: int) -> str:
    top, bottom = runs.median((*a, c)), runs.median((*b, c))
    if top is None or bottom is None:
        return "—"
    return f"{top.rps / bottom.rps:.2f}x"


def report(runs: Runs, targets: list[Target], args: argparse.Namespace) -> str:
    lines = [
        "| target | protocol | "
        + " | ".join(
            f"c={c} req/s (p50, p99 ms; CPU us/req server + client)" for c in args.concurrency
        )
        + " |"
    ]
    lines.append("|---|---|" + "---:|" * len(args.concurrency))
    for target in targets:
        for protocol in PROTOCOLS[target.name]:
            cells = []
            for c in args.concurrency:
                cell = runs.median((target.name, protocol, c))
                cells.append(
                    "—"
                    if cell is None
                    else f"{cell.rps:,.0f} ({cell.p50_us / 1000:.2f}, {cell.p99_us / 1000:.2f}; "
                    f"{cell.server_us:.0f} + {cell.client_us:.0f} us)"
                )
            lines.append(f"| {target.name} | {protocol} | " + " | ".join(cells) + " |")
    lines.append("")
    pairs = [
        ("modelyard gRPC / modelyard HTTP", ("modelyard", "grpc"), ("modelyard", "http")),
        ("modelyard gRPC / Triton gRPC", ("modelyard", "grpc"), ("triton", "grpc")),
        ("modelyard HTTP / Triton HTTP", ("modelyard", "http"), ("triton", "http")),
        ("modelyard gRPC / baseline gRPC", ("modelyard", "grpc"), ("modelyard-baseline", "grpc")),
        (
            "baseline gRPC / baseline HTTP",
            ("modelyard-baseline", "grpc"),
            ("modelyard-baseline", "http"),
        ),
    ]
    names = {t.name for t in targets}
    for label, a, b in pairs:
        if a[0] in names and b[0] in names:
            ratios = ", ".join(f"c={c} {_ratio(runs, a, b, c)}" for c in args.concurrency)
            lines.append(f"{label}: {ratios}")
    return "\n".join(lines)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--targets", default="modelyard,triton", help=f"of {', '.join(PROTOCOLS)}")
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--rounds", type=int, default=3, help="alternating passes; median per cell")
    parser.add_argument("--window-ms", type=int, default=3000, help="perf_analyzer's window")
    parser.add_argument(
        "--stability", type=int, default=50, help="perf_analyzer's --stability-percentage"
    )
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-wait-us", type=int, default=2000, help="Triton's batching delay")
    args = parser.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    wanted = args.targets.split(",")
    if unknown := set(wanted) - set(PROTOCOLS):
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    args.targets = [t for t in TARGETS if t.name in wanted]
    return args


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    model = mlp.build(WORK / "model" / "mlp.onnx")
    setup = Setup(ROOT, WORK, model, args.max_batch, args.max_wait_us)
    args.row = mlp.rows(1)[0]  # the serving benchmark's row
    args.input = input_file(args.row)
    header = (
        f"command: {' '.join([Path(sys.executable).name, *sys.argv])}\n"
        f"date: {datetime.now().isoformat(timespec='seconds')}, "
        f"load average at start {os.getloadavg()[0]:.2f}, {args.rounds} alternating rounds"
    )
    print(header, file=sys.stderr, flush=True)
    runs = Runs()
    for round_ in range(args.rounds):
        order = args.targets if round_ % 2 == 0 else args.targets[::-1]
        run_round(order, setup, args, runs)
    text = header + "\n\n" + report(runs, args.targets, args)
    print(text)
    raw = {"/".join(map(str, key)): [asdict(c) for c in cells] for key, cells in runs.cells.items()}
    procs.save_results(WORK, "perf", text, {"header": header, "cells": raw})


if __name__ == "__main__":
    main()
