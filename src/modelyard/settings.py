"""Server settings. The CLI builds them (every option also reads a MODELYARD_* variable);
library users build them directly."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

CONTROL_MODES = ("none", "explicit", "poll")


@dataclass(frozen=True)
class Settings:
    repositories: tuple[Path, ...] = ()
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    model_control_mode: str = "none"
    load_models: tuple[str, ...] = ()
    poll_interval_s: float = 5.0
    trust_pickle: bool = False
    api_keys: frozenset[str] = field(default_factory=frozenset)
    max_request_bytes: int = 64 * 1024 * 1024
    grpc_max_message_bytes: int = 64 * 1024 * 1024
    workers: int = 0  # model worker threads; 0: a few per core
    log_level: str = "info"

    @property
    def worker_threads(self) -> int:
        return self.workers or max(4, 2 * (os.cpu_count() or 1))


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
