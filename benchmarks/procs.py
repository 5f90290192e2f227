"""Processes: free ports, venvs made once, servers started in their own session and stopped
with their whole tree (Triton and Ray leave children behind otherwise), memory of a tree."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def python(minor: int) -> Path:
    """A base interpreter 3.`minor` (not a venv's), from pyenv or the PATH."""
    if sys.version_info[:2] == (3, minor):
        return Path(sys.base_prefix) / "bin" / f"python3.{minor}"
    candidates = sorted(Path.home().glob(f".pyenv/versions/3.{minor}*/bin/python3.{minor}"))
    candidates += [Path(p) / f"python3.{minor}" for p in os.environ["PATH"].split(os.pathsep)]
    for candidate in candidates:
        ok = (
            candidate.exists()
            and subprocess.run(
                [candidate, "-c", "pass"], capture_output=True, check=False
            ).returncode
            == 0
        )
        if ok:
            return candidate
    raise RuntimeError(f"no working python3.{minor} found")


def libdir(interpreter: Path) -> str:
    return subprocess.run(
        [interpreter, "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def private_env(work: Path, name: str) -> dict[str, str]:
    """HOME and temp folders inside the benchmark's ignored folder: peers write caches there."""
    home, tmp = work / "home" / name, work / "tmp" / name
    home.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "HOME": str(home), "TMPDIR": str(tmp), "RAY_TMPDIR": str(tmp)}


def ensure_venv(work: Path, name: str, interpreter: Path, requirements: list[str]) -> Path:
    """`work/venvs/name`, created and installed once; later runs reuse it (installing again
    into it when the requirements changed)."""
    venv = work / "venvs" / name
    marker = venv / ".installed"
    wanted = "\n".join(requirements) + "\n"
    if marker.exists() and marker.read_text() == wanted:
        return venv
    env = private_env(work, name)
    log = work / "logs" / f"install-{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"installing {name} into {venv} (log: {log}) ...", flush=True)
    with log.open("w") as out:
        for command in (
            [str(interpreter), "-m", "venv", str(venv)],
            [str(venv / "bin" / "pip"), "install", "-q", *requirements],
        ):
            if subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env).returncode:
                raise RuntimeError(f"install of {name} failed; see {log}")
    marker.write_text(wanted)
    return venv


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, session id) of a live process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), int(fields[3])


def tree(root: int) -> set[int]:
    """`root`, its descendants, and every process left in its session (started with setsid)."""
    table = {
        pid: info
        for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
        if (info := _stat(pid)) is not None
    }
    found = {pid for pid, (_, sid) in table.items() if sid == root} | {root}
    grew = True
    while grew:
        more = {pid for pid, (ppid, _) in table.items() if ppid in found} - found
        found |= more
        grew = bool(more)
    return found & set(table)


def rss_mib(root: int) -> float:
    total = 0
    for pid in tree(root):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def start(argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        return subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


@contextlib.contextmanager
def serving(
    argv: list[str], env: dict[str, str], cwd: Path, log: Path, ready: str, timeout: float = 120
) -> Iterator[subprocess.Popen[bytes]]:
    """A server started (`start`), held until `ready` answers 200 (`wait_http`), and its
    whole process tree stopped (`stop`) when the block ends, however it ends."""
    process = start(argv, env, cwd, log)
    try:
        wait_http(ready, timeout)
        yield process
    finally:
        stop(process)


def wait_http(url: str, timeout: float = 120) -> None:
    """Poll `url` until it answers 200 (a server that has finished starting)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout} s")


def _signal_all(pids: set[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _gone(process: subprocess.Popen[bytes], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None and not tree(process.pid):
            return True
        time.sleep(0.1)
    return False


def stop(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM to the whole tree, then SIGKILL to whatever is left of it after `grace` s."""
    _signal_all(tree(process.pid), signal.SIGTERM)
    if not _gone(process, grace):
        _signal_all(tree(process.pid), signal.SIGKILL)
        _gone(process, grace)


def save_results(work: Path, kind: str, text: str, raw: object) -> None:
    """A run's report and raw numbers: `work/results/KIND-STAMP.{txt,json}`."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    results = work / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{kind}-{stamp}.txt").write_text(text + "\n")
    (results / f"{kind}-{stamp}.json").write_text(json.dumps(raw, indent=1))
