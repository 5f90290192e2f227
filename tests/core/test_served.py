"""Text generators are served by the core, whatever the protocol: KServe v2 generations run
on the model's engine (never on a worker thread, so a tensor model beside them stays fast),
the engine's metrics exist from load and count every path's tokens, and go with the model;
a config's instance_group on a GGUF model is honoured (one instance: one sequence slot)."""

from __future__ import annotations

import importlib.util
import json
import statistics
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
from onnx import TensorProto
from prometheus_client.parser import text_string_to_metric_families

from tests import models
from tests.server_process import ServerProcess

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed"
    ),
]

TOKENS = 1500  # per generation: 4 of them take seconds on the tiny model


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    from tests.llm_models import tiny_gguf

    repo = tmp_path_factory.mktemp("mixed")
    tiny_gguf(repo / "tiny.gguf")
    one = repo / "tiny_one"
    (one / "1").mkdir(parents=True)
    tiny_gguf(one / "1" / "model.gguf")
    (one / "config.pbtxt").write_text(
        'name: "tiny_one"\ninstance_group [{ count: 1 kind: KIND_CPU }]\n'
    )
    models.identity_onnx(repo / "ident.onnx", TensorProto.FLOAT)
    log = tmp_path_factory.mktemp("logs") / "server.log"
    args = ("--model-control-mode", "explicit", "--load-model", "*")
    with ServerProcess(str(repo), *args, log_path=log) as process:
        yield process


def _generate(url: str, model: str, tokens: int) -> str:
    client = httpclient.InferenceServerClient(url, network_timeout=300, connection_timeout=300)
    text = httpclient.InferInput("text_input", [1], "BYTES")
    text.set_data_from_numpy(np.array([b"hello world"], dtype=object))
    options = {"max_tokens": tokens, "ignore_eos": True, "temperature": 0}
    sampling = httpclient.InferInput("sampling_parameters", [1], "BYTES")
    sampling.set_data_from_numpy(np.array([json.dumps(options).encode()], dtype=object))
    result = client.infer(model, [text, sampling])
    return str(result.as_numpy("text_output")[0].decode())


def _metrics(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{url}/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(url: str, name: str, model: str) -> float:
    return _metrics(url).get((name, (("model_name", model),)), 0.0)


def _wait_for(check: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


def _ident_ms(client: httpclient.InferenceServerClient) -> float:
    x = httpclient.InferInput("x", [1, 4], "FP32")
    x.set_data_from_numpy(np.ones((1, 4), np.float32))
    start = time.perf_counter()
    result = client.infer("ident", [x])
    elapsed = (time.perf_counter() - start) * 1000
    np.testing.assert_array_equal(result.as_numpy("y"), np.ones((1, 4), np.float32))
    return elapsed


def test_kserve_generations_leave_tensor_models_fast(server: ServerProcess) -> None:
    before = _value(server.url, "vllm:generation_tokens_total", "tiny")
    outputs: list[str] = []
    threads = [
        threading.Thread(target=lambda: outputs.append(_generate(server.http_addr, "tiny", TOKENS)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    _wait_for(lambda: _value(server.url, "vllm:num_requests_running", "tiny") == 4)
    client = httpclient.InferenceServerClient(server.http_addr)
    latencies = [_ident_ms(client) for _ in range(5)]
    still_running = _value(server.url, "vllm:num_requests_running", "tiny")
    for thread in threads:
        thread.join(300)
    assert still_running == 4, "the generations ended before the ONNX requests were measured"
    print("ident ms during generations:", [round(x, 2) for x in latencies])
    assert statistics.median(latencies) < 50, latencies
    assert len(outputs) == 4 and all(outputs)
    generated = _value(server.url, "vllm:generation_tokens_total", "tiny") - before
    assert generated == 4 * TOKENS
    assert _value(server.url, "vllm:prompt_tokens_total", "tiny") > 0


def test_unloading_a_generator_takes_its_series_and_engine(server: ServerProcess) -> None:
    _generate(server.http_addr, "tiny", 4)
    assert any(labels == (("model_name", "tiny"),) for _, labels in _metrics(server.url))
    response = httpx.post(f"{server.url}/v2/repository/models/tiny/unload")
    assert response.status_code == 200
    left = [key for key in _metrics(server.url) if ("model_name", "tiny") in key[1]]
    assert not left, left
    response = httpx.post(f"{server.url}/v2/repository/models/tiny/load")
    assert response.status_code == 200
    assert _value(server.url, "vllm:num_requests_running", "tiny") == 0  # a new engine, watched


def test_instance_group_count_one_is_one_sequence_slot(server: ServerProcess) -> None:
    config = httpx.get(f"{server.url}/v2/models/tiny_one/config").json()
    assert [g["count"] for g in config["instance_group"]] == [1]
    parameters = config["parameters"]
    assert parameters["n_seq_max"]["string_value"] == "1"
    threads = [
        threading.Thread(target=_generate, args=(server.http_addr, "tiny_one", 400))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    _wait_for(
        lambda: (
            _value(server.url, "vllm:num_requests_waiting", "tiny_one") == 1
            and _value(server.url, "vllm:num_requests_running", "tiny_one") == 1
        )
    )
    for thread in threads:
        thread.join(120)
