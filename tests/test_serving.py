"""The server process: readiness goes false as soon as a SIGTERM starts the drain, while the
last requests still run, and the process then exits by itself."""

from __future__ import annotations

import importlib.util
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
import tritonclient.grpc as grpcclient

from tests.server_process import ServerProcess

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed"
    ),
]


def _running(url: str) -> bool:
    return 'vllm:num_requests_running{model_name="tiny"} 1.0' in httpx.get(f"{url}/metrics").text


def test_not_ready_once_draining(tmp_path: Path) -> None:
    from tests.llm_models import tiny_gguf

    tiny_gguf(tmp_path / "tiny.gguf")
    server = ServerProcess(str(tmp_path), log_path=tmp_path / "log").start()
    try:
        grpc = grpcclient.InferenceServerClient(server.grpc_addr)
        assert grpc.is_server_ready()
        body = {"model": "tiny", "prompt": "hello", "max_tokens": 3500, "ignore_eos": True}
        stream = threading.Thread(
            target=lambda: httpx.post(f"{server.url}/v1/completions", json=body, timeout=60)
        )
        stream.start()
        deadline = time.monotonic() + 30
        while not _running(server.url) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 3
        while grpc.is_server_ready() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not grpc.is_server_ready()  # said while the generation still runs
        stream.join(60)
        assert server.process.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises it
    finally:
        server.stop()
