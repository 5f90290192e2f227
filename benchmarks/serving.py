"""modelyard against the servers users would pick instead, on the same ONNX MLP, in one run.

    .venv/bin/python benchmarks/serving.py [--targets floor,modelyard,triton,...]
        [--duration 15] [--warmup 5] [--concurrency 1,16,64] [--max-wait-us 2000]

For each target: start it (peers install once into benchmarks/.work/venvs/), wait for its first
correct answer, check a sample of answers against in-process onnxruntime, drive it with a
closed loop at each concurrency (wrk -t1, one row of 256 floats as JSON in the server's own
format; gRPC via grpc_load.py), check again, stop its whole process tree. Then print the table,
modelyard's ratios and the limits. Needs `wrk` on the PATH. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import load
import mlp
import numpy as np
import onnxruntime as ort
import procs
from report import Outcome, render
from targets import TARGETS, Launch, Setup, Target

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / ".work"
BATCHES = [1, 4, 16, 64, 256]
Probe = Callable[[list[float]], np.ndarray]
#: What a correct server answers for some rows (default: the MLP's outputs).
Reference = Callable[[np.ndarray], np.ndarray]


def _http_probe(target: Target, launch: Launch) -> Probe:
    url = f"http://127.0.0.1:{launch.http_port}{target.wire.path}"

    def probe(row: list[float]) -> np.ndarray:
        answer = httpx.post(
            url,
            content=target.wire.encode(row),
            timeout=30,
            headers={"content-type": "application/json"},
        )
        answer.raise_for_status()
        return target.wire.decode(answer.content) if target.checked else np.empty(0)

    return probe


def _grpc_probe(launch: Launch) -> Probe:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(f"127.0.0.1:{launch.grpc_port}")

    def probe(row: list[float]) -> np.ndarray:
        tensor = grpcclient.InferInput("x", [1, len(row)], "FP32")
        tensor.set_data_from_numpy(np.asarray([row], dtype=np.float32))
        return np.asarray(client.infer("mlp", [tensor]).as_numpy("y")).reshape(-1)

    return probe


def _wait_ready(
    process: subprocess.Popen[bytes], probe: Probe, row: list[float], limit: float
) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        if process.poll() is not None:
            raise RuntimeError("server exited before answering")
        try:
            probe(row)
            return time.perf_counter() - start
        except Exception:
            time.sleep(0.05)
    raise RuntimeError(f"no answer within {limit:.0f} s")


def _check(probe: Probe, rows: list[list[float]], reference: Reference) -> None:
    want = reference(np.asarray(rows, dtype=np.float32))
    for row, expected in zip(rows, want, strict=True):
        got = probe(row)
        if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-4, atol=1e-5):
            raise RuntimeError(f"wrong answer: got {got[:4]}..., want {expected[:4]}...")


@dataclass
class _Live:
    """A target, its server while it runs, and what its rounds measured."""

    outcome: Outcome
    launch: Launch | None = None
    process: subprocess.Popen[bytes] | None = None
    probe: Probe | None = None
    samples: dict[int, list[load.Cell]] = field(default_factory=dict)

    @property
    def log(self) -> Path:
        return WORK / "logs" / f"server-{self.outcome.target.name}.log"

    def fail(self, exc: Exception) -> None:
        self.outcome.error = f"{type(exc).__name__}: {exc} (server log: {self.log})"
        print(f"{self.outcome.target.name}: {self.outcome.error}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        if self.process is not None:
            procs.stop(self.process)
            self.process = None


class Bench:
    def __init__(
        self, args: argparse.Namespace, setup: Setup, reference: Reference | None = None
    ) -> None:
        self.args, self.setup = args, setup
        session = mlp.session(setup.model)
        self.reference = reference or (lambda rows: mlp.reference(session, rows))
        self.rows = mlp.rows(9)  # the first is the one the load sends

    def run(self, targets: list[Target]) -> list[Outcome]:
        """Every target in turn, one server up at a time; with --rounds N, N such passes in
        alternating order (each target started afresh), each cell the median round."""
        lives = [_Live(Outcome(target)) for target in targets]
        for round_ in range(self.args.rounds):
            for live in lives if round_ % 2 == 0 else lives[::-1]:
                if live.outcome.error:
                    continue
                try:
                    self._start(live)
                    for c in self.args.concurrency:
                        self._measure(live, c)
                    self._check_again(live)
                finally:
                    live.stop()
        for live in lives:
            for c, cells in live.samples.items():
                live.outcome.cells[c] = sorted(cells, key=lambda x: x.rps)[(len(cells) - 1) // 2]
        return [live.outcome for live in lives]

    def _start(self, live: _Live) -> None:
        target = live.outcome.target
        try:
            live.launch = launch = target.launch(self.setup)
            live.process = procs.start(launch.argv, launch.env, launch.cwd, live.log)
            grpc = target.protocol == "grpc"
            live.probe = _grpc_probe(launch) if grpc else _http_probe(target, launch)
            ready = _wait_ready(live.process, live.probe, self.rows[0], self.args.ready_timeout)
            live.outcome.ready_s = min(ready, live.outcome.ready_s or ready)
            if target.checked:
                _check(live.probe, self.rows, self.reference)
        except Exception as exc:
            live.fail(exc)
            live.stop()

    def _measure(self, live: _Live, c: int) -> None:
        if live.process is None or live.launch is None or live.outcome.error:
            return
        try:
            cell = self._load(live.outcome.target, live.launch, c, live.process.pid, live.outcome)
        except Exception as exc:
            live.fail(exc)
            return
        live.samples.setdefault(c, []).append(cell)
        _progress(live.outcome.target.name, c, cell)

    def _check_again(self, live: _Live) -> None:
        """One more checked answer after the load."""
        if live.outcome.target.checked and live.probe is not None and not live.outcome.error:
            try:
                _check(live.probe, self.rows[:1], self.reference)
            except Exception as exc:
                live.fail(exc)

    def _load(
        self, target: Target, launch: Launch, c: int, pid: int, outcome: Outcome
    ) -> load.Cell:
        warmup, seconds = self.args.warmup, self.args.duration

        def sample() -> None:
            outcome.rss_mib = max(outcome.rss_mib or 0.0, procs.rss_mib(pid))

        timer = threading.Timer(warmup + seconds / 2, sample)
        timer.start()
        try:
            bodies = WORK / "bodies"
            if target.protocol == "grpc":
                raw = bodies / "row.f32"
                bodies.mkdir(parents=True, exist_ok=True)
                raw.write_bytes(np.asarray(self.rows[0], dtype=np.float32).tobytes())
                return load.grpc(launch.grpc_port, raw, c, warmup, seconds)
            script = load.lua_script(bodies, target.name, target.wire.encode(self.rows[0]))
            url = f"http://127.0.0.1:{launch.http_port}{target.wire.path}"
            return load.wrk(url, script, c, warmup, seconds)
        finally:
            timer.cancel()


def _progress(name: str, c: int, cell: load.Cell) -> None:
    print(
        f"{name} c={c}: {cell.rps:,.0f} req/s, p50 {cell.p50_ms:.2f} ms, "
        f"p99 {cell.p99_ms:.2f} ms, errors {cell.errors}",
        file=sys.stderr,
        flush=True,
    )


def _commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    dirty = " + uncommitted changes in src/" if git("status", "--porcelain", "src") else ""
    return (git("rev-parse", "--short", "HEAD") or "unknown commit") + dirty


def _header(args: argparse.Namespace) -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return "\n".join(
        [
            f"command: {' '.join([Path(sys.executable).name, *sys.argv])}",
            f"date: {datetime.now().isoformat(timespec='seconds')}, modelyard at {_commit()}",
            f"machine: {cpu}, {os.cpu_count()} cores, Linux {platform.release()}, "
            f"load average at start {os.getloadavg()[0]:.2f}",
            f"load: {args.warmup} s warm-up + {args.duration} s measured per cell; batching max "
            f"{args.max_batch}, max wait {args.max_wait_us} us "
            f"(modelyard: {args.modelyard_wait_us} us); onnxruntime {ort.__version__} here; "
            + (
                f"{args.rounds} alternating rounds (one server up at a time), median per cell"
                if args.rounds > 1
                else "one server up at a time"
            ),
        ]
    )


def _parse(argv: list[str] | None) -> argparse.Namespace:
    names = [t.name for t in TARGETS]
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--targets", default=",".join(names), help=f"comma-separated subset of: {', '.join(names)}"
    )
    parser.add_argument("--duration", type=int, default=15, help="measured seconds per cell")
    parser.add_argument("--warmup", type=int, default=5, help="warm-up seconds per cell")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-wait-us", type=int, default=2000, help="the peers' batching delay")
    parser.add_argument(
        "--modelyard-wait-us",
        type=int,
        default=0,
        help="modelyard's max_queue_delay (0: its default, no added wait)",
    )
    parser.add_argument("--ready-timeout", type=float, default=300.0)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="passes over the targets, in alternating order, each target started afresh; "
        "every cell reports its median pass",
    )
    args = parser.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    wanted = args.targets.split(",")
    unknown = set(wanted) - set(names)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    args.targets = [t for t in TARGETS if t.name in wanted]
    return args


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    # stopped with SIGTERM: unwind, so every started server's process tree is stopped too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    header = _header(args)
    print(header, file=sys.stderr, flush=True)
    model = mlp.build(WORK / "model" / "mlp.onnx")
    seconds = max(0.5, min(3.0, args.duration / 5))
    before = mlp.limits(model, BATCHES, seconds)
    setup = Setup(ROOT, WORK, model, args.max_batch, args.max_wait_us, args.modelyard_wait_us)
    bench = Bench(args, setup)
    outcomes = bench.run(args.targets)
    after = mlp.limits(model, BATCHES, seconds)  # the machine is shared: keep the better one
    limits = {batch: max(before[batch], after[batch]) for batch in BATCHES}
    text = header + "\n\n" + render(outcomes, args.concurrency, limits)
    print(text)
    raw = [
        {
            "target": o.target.name,
            "ready_s": o.ready_s,
            "rss_mib": o.rss_mib,
            "error": o.error,
            "cells": {c: asdict(cell) for c, cell in o.cells.items()},
        }
        for o in outcomes
    ]
    procs.save_results(
        WORK, "serving", text, {"header": header, "ort_rows_per_s": limits, "targets": raw}
    )


if __name__ == "__main__":
    main()
