"""The server `modelyard run` starts when none answers: `modelyard serve --model-control-mode
ondemand` in a child process, on the address the client commands use, over MODELYARD_MODELS
(folders separated by the path separator) or else ~/.modelyard/models (where `pull` writes)
plus the demo repository. It lives as long as the `run` that started it; its log is
~/.modelyard/serve.log."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from modelyard.client import Client, ClientError

HOME = Path(os.path.expanduser("~")) / ".modelyard"


def repositories() -> list[Path]:
    """The folders an embedded server serves; the first one receives pulled models."""
    named = os.environ.get("MODELYARD_MODELS", "")
    if named:
        return [Path(p).expanduser() for p in named.split(os.pathsep) if p]
    own = HOME / "models"
    own.mkdir(parents=True, exist_ok=True)
    try:
        from modelyard.demo import demo_repository

        return [own, demo_repository()]
    except ImportError:  # the demo models need the [all] extras
        return [own]


class EmbeddedServer:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.log_path = HOME / "serve.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, client: Client, timeout: float = 120.0) -> None:
        roots = repositories()
        for root in roots:
            if not root.is_dir():
                raise ClientError(f"model repository {root} (MODELYARD_MODELS) is not a folder")
        command = [
            sys.executable,
            "-m",
            "modelyard",
            "serve",
            *map(str, roots),
            "--model-control-mode",
            "ondemand",
            "--host",
            self.host,
            "--http-port",
            str(self.port),
            "--grpc-port",
            str(_free_port(self.host)),
        ]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        self._wait(client, timeout)

    def _wait(self, client: Client, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ClientError(
                    f"the embedded server stopped (exit {self.process.returncode})"
                    f":\n{self._log_tail()}"
                )
            if client.alive(timeout=0.5):
                return
            time.sleep(0.1)
        self.stop()
        raise ClientError(
            f"the embedded server did not start in {timeout:.0f} s; see {self.log_path}"
        )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-10:])
        except OSError:
            return ""


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
