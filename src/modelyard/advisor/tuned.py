"""Tuned configurations: what `modelyard tune` measured best for one artifact on one machine.

A tuned pick is cached per (artifact digest, hardware fingerprint, modelyard version, goal,
latency bound) as one JSON file under `cache_dir()/tuned/`; `advise_config` applies it where
the model's config is silent, in place of the rules' pick, each setting's reason carrying the
measured figures (`tuned: 2 — measured: 16.2k req/s at c=64, p50 0.18 ms at c=1, 2026-12-02`).
Nothing here measures (that is `modelyard.tuning`); this is what a start reads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from modelyard import __version__
from modelyard.advisor.hardware import Hardware
from modelyard.settings import cache_dir

log = logging.getLogger("modelyard.advisor")

SCHEMA = "modelyard-tuned/1"
#: Runtimes `modelyard tune` searches (and whose loads look for a tuned pick).
TUNED_RUNTIMES = (
    "onnx",
    "pytorch",
    "tensorflow",
    "openvino",
    "sklearn",
    "xgboost",
    "lightgbm",
    "llamacpp",
)
#: Files larger than this are keyed by their size and their first and last SAMPLE bytes, not
#: read whole (a multi-GB GGUF: its header holds every tensor's name, shape and offset).
WHOLE_DIGEST_MAX = 256 * 2**20
SAMPLE = 16 * 2**20
_WHERE = {"front": "through the HTTP front"}


@dataclass
class Figures:
    """One configuration measured: closed-loop throughput and latency at 1 and N clients.
    For a text generator (`unit` "tok/s"): generated tokens/s at N streams, and the time to
    the first token (p50 at one stream, p99 at N)."""

    rps: float  # requests (tokens, for "tok/s") per second at `concurrency` clients
    p50_ms: float  # median latency (time to first token) at 1 client
    p99_ms: float  # 99th percentile (of the time to first token) at `concurrency` clients
    concurrency: int
    c1_rps: float = 0.0
    where: str = "in-process"  # "in-process" | "front" (the KServe HTTP front, JSON bodies)
    unit: str = "req/s"  # "req/s" | "tok/s"

    def describe(self) -> str:
        if self.unit == "tok/s":
            return (
                f"{_count(self.rps)} tok/s at {self.concurrency} streams, first token p99 "
                f"{self.p99_ms:.3g} ms (p50 {self.p50_ms:.3g} ms at 1 stream, "
                f"{_count(self.c1_rps)} tok/s)" + f" ({_WHERE.get(self.where, self.where)})"
            )
        return (
            f"{_count(self.rps)} req/s at c={self.concurrency}, p50 {self.p50_ms:.2g} ms at c=1"
            + f" ({_WHERE.get(self.where, self.where)})"
        )


@dataclass
class TunedPick:
    runtime: str
    goal: str
    settings: dict[str, Any]  # the rules' keys: instance_count, parameters.X, ...
    figures: Figures
    default_settings: dict[str, Any] = field(default_factory=dict)
    default_figures: Figures | None = None
    latency_ms: float | None = None
    date: str = ""
    steps: int = 0  # configurations measured

    @property
    def reason(self) -> str:
        text = f"measured: {self.figures.describe()}"
        if self.default_figures is not None:
            d = self.default_figures
            if d.unit == "tok/s":
                text += f"; the rules' pick: {_count(d.rps)} tok/s, "
                text += f"first token p99 {d.p99_ms:.3g} ms"
            else:
                text += f"; the rules' pick: {_count(d.rps)} req/s, p50 {d.p50_ms:.2g} ms"
        return f"{text}, {self.date}"

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TunedPick:
        default = data.get("default_figures")
        return cls(
            runtime=data["runtime"],
            goal=data["goal"],
            settings=dict(data["settings"]),
            figures=Figures(**data["figures"]),
            default_settings=dict(data.get("default_settings") or {}),
            default_figures=Figures(**default) if default else None,
            latency_ms=data.get("latency_ms"),
            date=str(data.get("date", "")),
            steps=int(data.get("steps", 0)),
        )


def _count(value: float) -> str:
    return f"{value / 1000:.3g}k" if value >= 1000 else f"{value:.3g}"


# ---- the cache -------------------------------------------------------------------------------


def tuned_dir() -> Path:
    return cache_dir() / "tuned"


def cache_path(artifact: Path, goal: str, latency_ms: float | None, hw: Hardware) -> Path:
    bound = f"-{latency_ms:g}ms" if latency_ms else ""
    key = f"{digest(artifact)[:16]}-{fingerprint(hw)}-{__version__}-{goal}{bound}.json"
    return tuned_dir() / key


def load_tuned(
    artifact: Path, goal: str, hw: Hardware, latency_ms: float | None = None
) -> TunedPick | None:
    """The cached pick for this artifact, machine, version and goal, if one was measured."""
    folder = tuned_dir()
    if not folder.is_dir() or not any(folder.glob(f"*-{fingerprint(hw)}-{__version__}-*")):
        return None  # nothing tuned here: no need to read (hash) the artifact
    path = cache_path(artifact, goal, latency_ms, hw)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring the tuned config %s: %s", path, exc)
        return None
    if data.get("schema") != SCHEMA:
        return None
    try:
        return TunedPick.from_json(data)
    except (KeyError, TypeError) as exc:
        log.warning("ignoring the tuned config %s: %s", path, exc)
        return None


def save_tuned(artifact: Path, pick: TunedPick, hw: Hardware) -> Path:
    path = cache_path(artifact, pick.goal, pick.latency_ms, hw)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(pick.to_json(), indent=2) + "\n")
    partial.replace(path)
    return path


# ---- keys ------------------------------------------------------------------------------------

_DIGESTS: dict[tuple[str, int, int], str] = {}
_DIGESTS_LOCK = threading.Lock()


def digest(artifact: Path) -> str:
    """sha256 of the artifact (of every file under it, for a folder; of its size and first
    and last SAMPLE bytes for a file over WHOLE_DIGEST_MAX); remembered per (path, size,
    mtime) for the life of the process."""
    files = sorted(p for p in artifact.rglob("*") if p.is_file()) if artifact.is_dir() else []
    stat = artifact.stat()
    key = (str(artifact.resolve()), stat.st_size, stat.st_mtime_ns)
    with _DIGESTS_LOCK:
        if key in _DIGESTS:
            return _DIGESTS[key]
    sha = hashlib.sha256()
    for path in files or [artifact]:
        if files:
            sha.update(str(path.relative_to(artifact)).encode() + b"\0")
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > WHOLE_DIGEST_MAX:
                sha.update(f"{size}\0".encode() + f.read(SAMPLE))
                f.seek(size - SAMPLE)
                sha.update(f.read(SAMPLE))
                continue
            for block in iter(lambda: f.read(1 << 20), b""):
                sha.update(block)
    with _DIGESTS_LOCK:
        _DIGESTS[key] = sha.hexdigest()
    return _DIGESTS[key]


def fingerprint(hw: Hardware) -> str:
    """What makes measurements on one machine hold on another: the CPU model, the cores this
    process may use, memory (to the GiB) and the GPUs. 12 hex digits."""
    parts = [
        platform.machine(),
        _cpu_model(),
        str(hw.cores),
        str(hw.physical_cores),
        str(round(hw.memory_bytes / 2**30)),
        ",".join(sorted(g.name for g in hw.gpus)),
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return platform.processor()
    for line in text.splitlines():
        if line.startswith(("model name", "Model", "cpu model")):
            return line.partition(":")[2].strip()
    return platform.processor()
