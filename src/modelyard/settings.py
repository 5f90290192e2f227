"""Server settings. The CLI builds them (every option also reads a MODELYARD_* variable);
library users build them directly."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

CONTROL_MODES = ("none", "explicit", "poll", "ondemand")
#: What the advisor and `modelyard tune` optimise a model for (per model: parameter `goal`).
GOALS = ("latency", "throughput")

#: Keep-alive of idle models in `ondemand` mode unless told otherwise (Ollama's default).
DEFAULT_ONDEMAND_KEEP_ALIVE_S = 300.0

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Limits:
    """Limits on what clients may hold, on the HTTP and gRPC ports alike."""

    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    idle_timeout_s: float = 5.0
    grpc_idle_timeout_s: float = 300.0
    max_connections: int = 0
    max_body_memory_bytes: int = 256 * 1024 * 1024


@dataclass(frozen=True)
class Settings:
    repositories: tuple[Path, ...] = ()
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    ollama_port: int = 0  # also serve every HTTP route here (Ollama's 11434); 0: not at all
    #: TorchServe's inference and management APIs on ports of their own (its 8080 and 8081);
    #: 0: not served.
    torchserve_port: int = 0
    torchserve_management_port: int = 0
    #: ondemand with every model loaded at start: what a server started by hand should do
    #: (the API may load, unload, pull, copy and delete); "none" locks the repository.
    model_control_mode: str = "ondemand"
    load_models: tuple[str, ...] = ("*",)
    poll_interval_s: float = 5.0
    trust_pickle: bool = False
    #: What models are configured for when their config says nothing (`goal` parameter).
    goal: str = "latency"
    api_keys: frozenset[str] = field(default_factory=frozenset)
    #: The model TGI's routes serve when a request names none, and that TGI clients' stand-in
    #: names ("tgi", "dummy") mean on /v1; "": the one loaded text generator.
    tgi_model: str = ""
    #: Browser origins allowed beside the defaults (fronts/cors.py).
    cors_origins: tuple[str, ...] = ()
    #: Folders whose models `pull` may copy in by path (none: paths are refused).
    pull_from: tuple[Path, ...] = ()
    #: Whether pulled models may run code when loaded (Python models, pickles).
    pull_code: bool = False
    max_request_bytes: int = 64 * 1024 * 1024
    grpc_max_message_bytes: int = 64 * 1024 * 1024
    workers: int = 0  # model worker threads; 0: a few per core
    keep_alive_s: float | None = None  # idle models unload after this; None: never (or 5m ondemand)
    max_loaded_models: int = 0  # 0: no limit
    memory_budget_bytes: int = 0  # 0: no budget
    log_level: str = "info"
    #: What one client may hold (docs/security.md): a request's header lines (bytes, count),
    #: the time to send a request's headers and its body, idle time between requests, open
    #: connections (0: the open-files limit less a reserve) and request bodies in flight.
    limits: Limits = field(default_factory=Limits)
    #: SIGTERM: readiness turns false, new connections are refused, requests in flight
    #: finish; streams still open near the end get a final error event; the process exits
    #: when the grace is spent, even with a model thread still busy.
    shutdown_timeout_s: float = 30.0

    @property
    def default_keep_alive_s(self) -> float | None:
        if self.keep_alive_s is None and self.model_control_mode == "ondemand":
            return DEFAULT_ONDEMAND_KEEP_ALIVE_S
        return self.keep_alive_s

    @property
    def worker_threads(self) -> int:
        return self.workers or max(4, 2 * (os.cpu_count() or 1))


def cache_dir() -> Path:
    """Where modelyard keeps what it can rebuild (the demo models, tuned configs):
    MODELYARD_CACHE, else $XDG_CACHE_HOME/modelyard, else ~/.cache/modelyard."""
    named = os.environ.get("MODELYARD_CACHE")
    if named:
        return Path(named).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "modelyard"


def split_host(value: str, default_port: int) -> tuple[str, int]:
    """`host[:port]` (Ollama's OLLAMA_HOST form; `[::1]:8000` for IPv6, a scheme is dropped)
    -> (host, port)."""
    text = value.strip().split("://", 1)[-1].rstrip("/")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    if port and not port.isdigit():
        raise ValueError(f"cannot read {value!r} as host[:port]")
    return host or "127.0.0.1", int(port) if port else default_port


def read_api_keys(values: tuple[str, ...], key_file: Path | None) -> frozenset[str]:
    """Keys from repeated --api-key / MODELYARD_API_KEY (comma separated) and a key file
    (one per line, # comments)."""
    keys = {k.strip() for value in values for k in value.split(",") if k.strip()}
    if key_file is not None:
        for line in key_file.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                keys.add(line)
    return frozenset(keys)


def parse_duration(value: str | float | int | None) -> float | None:
    """Seconds from Ollama's keep-alive forms: "5m", "1h30m", "90s", "250ms", a number of
    seconds, or a negative value for "forever" (None)."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return None if value < 0 else float(value)
    text = str(value).strip().lower()
    try:
        number = float(text)
    except ValueError:
        return _parse_units(text)
    return None if number < 0 else number


def _parse_units(text: str) -> float | None:
    import re

    if text.startswith("-"):
        return None
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"cannot read {text!r} as a duration; write e.g. 5m, 90s, 1h or -1")
    return sum(float(n) * _UNITS[u] for n, u in parts)
