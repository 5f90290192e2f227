"""Measure configurations through the real front: `modelyard serve` in a child process on free
loopback ports, the model reloaded with each configuration through the repository API (a load
request with a config), and closed-loop KServe v2 JSON requests at 1 and N clients — from
`wrk` when it is on the PATH and a second per measurement fits the budget (a C client: the
figures are the server's), else from a Python client in this process (which may cap a tiny
model's throughput: the figures say so)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx
import numpy as np

from modelyard.advisor.tuned import Figures
from modelyard.errors import Internal
from modelyard.spec.config import ModelConfig
from modelyard.tensors import datatype_of, to_json
from modelyard.tuning.space import Settings, pinned_config

_LUA = """\
local file = assert(io.open("{body}", "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{{"requests":%d,"seconds":%.6f,"errors":%d,"p50_ms":%.4f,"p99_ms":%.4f}}\\n',
    summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.timeout + e.status,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class FrontServer:
    """`modelyard serve ROOT` in a child process (explicit control): `name` is loaded by each
    `configure`, with its config as sent (so a `tune: auto` on disk never starts a search
    inside the server being measured)."""

    def __init__(self, root: Path, name: str, trust_pickle: bool) -> None:
        self.root, self.name, self.trust_pickle = root, name, trust_pickle
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.scratch = Path(tempfile.mkdtemp(prefix="modelyard-tune-"))
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FrontServer:
        command = [
            sys.executable,
            "-m",
            "modelyard",
            "serve",
            str(self.root),
            "--model-control-mode",
            "explicit",  # nothing loads at start: each configure() loads the model, tune off
            "--http-port",
            str(self.port),
            "--grpc-port",
            str(_free_port()),
            "--log-level",
            "warning",
            *(["--trust-pickle"] if self.trust_pickle else []),
        ]
        with (self.scratch / "server.log").open("wb") as log:  # the child keeps its own copy
            self.process = subprocess.Popen(command, stdout=log, stderr=log, env=dict(os.environ))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        problem = f"the server to measure through did not get ready: {self._log()}"
        self.__exit__(None, None, None)  # `with` does not: __enter__ did not return
        raise Internal(problem)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def _log(self) -> str:
        return (self.scratch / "server.log").read_text(errors="replace")[-2000:]

    def configure(self, config: ModelConfig, settings: Settings, max_batch_size: int) -> None:
        """Reload the model with `settings` (a load request that carries the config).
        `max_batch_size`: the one it loaded with in-process (a load request's config names
        every field, so what the advisor chose must be named too)."""
        body = pinned_config(config, settings).to_triton_json()
        body["max_batch_size"] = max_batch_size
        body["parameters"].pop("trust_pickle", None)  # a load request may not widen trust
        body.pop("name", None)
        answer = httpx.post(
            f"{self.url}/v2/repository/models/{self.name}/load",
            json={"parameters": {"config": json.dumps(body)}},
            timeout=120,
        )
        if answer.status_code != 200:
            raise Internal(f"the server refused the configuration {settings}: {answer.text}")

    def measure(
        self, inputs: dict[str, np.ndarray], concurrency: int, seconds: float = 1.0
    ) -> Figures:
        path = f"/v2/models/{self.name}/infer"
        body = json.dumps(
            {
                "inputs": [
                    {
                        "name": name,
                        "shape": list(array.shape),
                        "datatype": datatype_of(array),
                        "data": to_json(array),
                    }
                    for name, array in inputs.items()
                ]
            }
        ).encode()
        asyncio.run(_python_load(self.port, path, body, concurrency, seconds / 2))  # warm-up
        wrk = shutil.which("wrk") if seconds >= 1 else None  # wrk counts whole seconds
        if wrk:
            lone = self._wrk(wrk, path, body, 1, seconds)
            loaded = self._wrk(wrk, path, body, concurrency, seconds)
        else:
            lone = asyncio.run(_python_load(self.port, path, body, 1, seconds))
            loaded = asyncio.run(_python_load(self.port, path, body, concurrency, seconds))
        return Figures(
            rps=loaded["rps"],
            p50_ms=lone["p50_ms"],
            p99_ms=loaded["p99_ms"],
            concurrency=concurrency,
            c1_rps=lone["rps"],
            where="front" if wrk else "front, python client",
        )

    def _wrk(
        self, wrk: str, path: str, body: bytes, concurrency: int, seconds: float
    ) -> dict[str, float]:
        (self.scratch / "body.json").write_bytes(body)
        script = self.scratch / "post.lua"
        script.write_text(_LUA.format(body=self.scratch / "body.json"))
        command = [
            wrk,
            "-t1",
            f"-c{concurrency}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            self.url + path,
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if not lines:
            raise Internal(f"wrk printed no result: {done.stdout[-500:]}{done.stderr[-500:]}")
        data = json.loads(lines[-1])
        if data["errors"]:
            raise Internal(f"{data['errors']} requests failed through the front: {self._log()}")
        return {
            "rps": data["requests"] / data["seconds"],
            "p50_ms": data["p50_ms"],
            "p99_ms": data["p99_ms"],
        }


async def _python_load(
    port: int, path: str, body: bytes, concurrency: int, seconds: float
) -> dict[str, float]:
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    started = time.perf_counter()
    until = started + seconds
    await asyncio.gather(*(_client(port, request, until, latencies) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(latencies, 50)) * 1000 if latencies else 0.0,
        "p99_ms": float(np.percentile(latencies, 99)) * 1000 if latencies else 0.0,
    }


_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)


async def _client(port: int, request: bytes, until: float, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < until:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = _LENGTH.search(head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            if head[9:12] != b"200":
                raise Internal(f"the front answered {head[:64]!r}")
            latencies.append(time.perf_counter() - started)
    finally:
        writer.close()
