"""Closed-loop load: `wrk -t1 -cC` with a Lua script that posts one fixed JSON body (HTTP
targets), or grpc_load.py in its own process (gRPC). Both warm up, then measure."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

LUA = """\
local file = assert(io.open("{body}", "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{{"requests":%d,"seconds":%.6f,"errors":%d,"p50_ms":%.4f,"p99_ms":%.4f}}\\n',
    summary.requests, summary.duration / 1e6,
    e.connect + e.read + e.write + e.timeout + e.status,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


@dataclass(frozen=True)
class Cell:
    """One (target, concurrency) measurement."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # socket errors, timeouts and non-2xx answers (wrk); failed RPCs (gRPC)


def _cell(stdout: str, what: str) -> Cell:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{what} printed no result:\n{stdout[-2000:]}")
    data = json.loads(lines[-1])
    return Cell(
        data["requests"] / data["seconds"],
        data["p50_ms"],
        data["p99_ms"],
        data["requests"],
        data["errors"],
    )


def lua_script(folder: Path, name: str, body: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_bytes(body)
    script = folder / f"{name}.lua"
    script.write_text(LUA.format(body=folder / f"{name}.json"))
    return script


def _wrk(url: str, script: Path, concurrency: int, seconds: int) -> Cell:
    command = [
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    return _cell(done.stdout + done.stderr, "wrk")


def wrk(url: str, script: Path, concurrency: int, warmup: int, seconds: int) -> Cell:
    if warmup > 0:
        _wrk(url, script, concurrency, warmup)
    return _wrk(url, script, concurrency, seconds)


def grpc(port: int, row: Path, concurrency: int, warmup: int, seconds: int) -> Cell:
    command = [
        sys.executable,
        str(Path(__file__).with_name("grpc_load.py")),
        "--port",
        str(port),
        "--concurrency",
        str(concurrency),
        "--warmup",
        str(warmup),
        "--duration",
        str(seconds),
        "--row",
        str(row),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=warmup + seconds + 60)
    return _cell(done.stdout + done.stderr, "grpc_load.py")
