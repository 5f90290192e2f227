"""The server process: readiness goes false as soon as a SIGTERM starts the drain, while the
last requests still run, and the process then exits by itself."""

from __future__ import annotations

import importlib.util
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
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


GRACE_S = 3.0


def _wait_running(url: str, count: int) -> None:
    deadline = time.monotonic() + 30
    metric = f'vllm:num_requests_running{{model_name="tiny"}} {float(count)}'
    while metric not in httpx.get(f"{url}/metrics").text:
        assert time.monotonic() < deadline, "the streams did not start"
        time.sleep(0.02)


def _terminate(server: ServerProcess) -> tuple[int, float]:
    """SIGTERM; the exit status and how long the process took to go."""
    assert server.process is not None
    began = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    status = server.process.wait(GRACE_S + 10)
    return status, time.monotonic() - began


LONG = {"max_tokens": 4000, "ignore_eos": True}
OLLAMA_LONG = {"num_predict": 4000, "ignore_eos": True}


def _openai_stream(url: str, seen: dict[str, Any]) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{url}/v1", api_key="-")
    try:
        for _ in client.completions.create(
            model="tiny", prompt="hello", stream=True, max_tokens=4000, extra_body=LONG
        ):
            pass
    except openai.APIError as exc:
        seen["openai"] = exc.message


def _raw_sse(url: str, seen: dict[str, Any]) -> None:
    body = {"model": "tiny", "prompt": "hello", "stream": True, **LONG}
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=60) as reply:
        seen["sse"] = [line for line in reply.iter_lines() if line]


def _ollama_stream(url: str, seen: dict[str, Any]) -> None:
    import ollama

    client = ollama.Client(host=url)
    try:
        for _ in client.generate(model="tiny", prompt="hello", stream=True, options=OLLAMA_LONG):
            pass
    except ollama.ResponseError as exc:
        seen["ollama"] = exc.error


def _raw_ndjson(url: str, seen: dict[str, Any]) -> None:
    body = {"model": "tiny", "prompt": "hello", "options": OLLAMA_LONG}
    with httpx.stream("POST", f"{url}/api/generate", json=body, timeout=60) as reply:
        seen["ndjson"] = [line for line in reply.iter_lines() if line]


def _grpc_stream(address: str, results: list[Any]) -> grpcclient.InferenceServerClient:
    client = grpcclient.InferenceServerClient(address)
    client.start_stream(callback=lambda result, error: results.append(error or result))
    text = grpcclient.InferInput("text_input", [1], "BYTES")
    text.set_data_from_numpy(np.array([b"hello"], dtype=object))
    options = grpcclient.InferInput("sampling_parameters", [1], "BYTES")
    options.set_data_from_numpy(np.array([orjson.dumps(LONG)], dtype=object))
    client.async_stream_infer("tiny", [text, options])
    return client


def _roomy_tiny(root: Path) -> None:
    """The tiny model with a slot for each of the test's five streams."""
    from tests.llm_models import tiny_gguf

    folder = root / "tiny"
    folder.mkdir(parents=True)
    tiny_gguf(folder / "model.gguf")
    (folder / "model.yaml").write_text("runtime: llamacpp\nparameters:\n  n_seq_max: 8\n")


def test_sigterm_ends_each_stream_in_its_protocol(tmp_path: Path) -> None:
    """Streams still running when the grace is nearly spent end with their protocol's final
    error: OpenAI an error event then [DONE], Ollama a done object with an error, KServe
    gRPC an error response; then the process exits within the grace."""
    from tritonclient.utils import InferenceServerException

    _roomy_tiny(tmp_path / "repo")
    server = ServerProcess(
        str(tmp_path / "repo"), "--shutdown-timeout", str(GRACE_S), log_path=tmp_path / "log"
    ).start()
    seen: dict[str, Any] = {}
    results: list[Any] = []
    streams = (_openai_stream, _raw_sse, _ollama_stream, _raw_ndjson)
    threads = [threading.Thread(target=f, args=(server.url, seen)) for f in streams]
    try:
        for thread in threads:
            thread.start()
        grpc = _grpc_stream(server.grpc_addr, results)
        _wait_running(server.url, 5)
        status, seconds = _terminate(server)
        for thread in threads:
            thread.join(10)
        grpc.stop_stream(cancel_requests=True)
    finally:
        server.stop()
    assert status in (0, -signal.SIGTERM) and seconds < GRACE_S + 2, (status, seconds)
    assert "shutting down" in seen["openai"]
    assert seen["sse"][-1] == "data: [DONE]"
    assert "shutting down" in orjson.loads(seen["sse"][-2][6:])["error"]["message"]
    assert "shutting down" in seen["ollama"]
    last = orjson.loads(seen["ndjson"][-1])
    assert last["done"] is True and last["done_reason"] == "error"
    assert "shutting down" in last["error"]
    errors = [r for r in results if isinstance(r, InferenceServerException)]
    assert errors and "shutting down" in str(errors[0].message())


def test_a_hung_model_thread_does_not_outlive_the_grace(tmp_path: Path) -> None:
    from tests.models import slow_model

    # in the server process (a worker process would be killed at the grace by itself)
    thread = 'parameters { key: "isolation" value: { string_value: "thread" } }\n'
    slow_model(tmp_path, "stuck", "max_batch_size: 0\n" + thread, delay=120)
    server = ServerProcess(  # its one worker thread stuck: unloading cannot run
        str(tmp_path), "--shutdown-timeout", "2", "--workers", "1", log_path=tmp_path / "log"
    ).start()
    body = {"inputs": [{"name": "X", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
    call = threading.Thread(
        target=lambda: httpx.post(f"{server.url}/v2/models/stuck/infer", json=body, timeout=30),
        daemon=True,
    )
    try:
        call.start()
        time.sleep(0.5)
        status, seconds = _terminate(server)
    finally:
        server.stop()
    assert status == 1 and 2 <= seconds < 2 + 3, (status, seconds)
    assert "shutdown grace spent" in server.log()


def test_a_hung_model_in_its_worker_process_does_not_hold_the_shutdown(tmp_path: Path) -> None:
    from tests.models import slow_model

    slow_model(tmp_path, "stuck", "max_batch_size: 0\n", delay=120)  # a worker process
    server = ServerProcess(
        str(tmp_path), "--shutdown-timeout", "2", log_path=tmp_path / "log"
    ).start()
    body = {"inputs": [{"name": "X", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
    call = threading.Thread(
        target=lambda: httpx.post(f"{server.url}/v2/models/stuck/infer", json=body, timeout=30),
        daemon=True,
    )
    try:
        call.start()
        time.sleep(0.5)
        status, seconds = _terminate(server)
    finally:
        server.stop()
    # the worker unloads the model beside its stuck thread and ends: no hard exit needed
    assert status in (0, -signal.SIGTERM) and seconds < 2 + 3, (status, seconds)
    assert "shutdown grace spent" not in server.log()
