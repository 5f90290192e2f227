"""Triton Python-backend models in their worker process (the default, as Triton runs them in a
stub process): a model that segfaults in execute fails only its own requests while another
model answers, and answers again once its worker restarts; BLS (a blocking exec()) from a
worker-hosted model goes up the worker's calls channel and back; a batch crosses as a list of
requests with their ids and parameters, and a response's parameters come back; `isolation:
thread` keeps a Triton model in the server process."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient

from tests import models
from tests.server_process import ServerProcess
from tests.triton_models import python_model

CRASHES = """
import ctypes
import os

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            if (x < 0).any():
                ctypes.string_at(0)  # a segfault
            outputs = [
                pb_utils.Tensor("Y", x * 2),
                pb_utils.Tensor("PID", np.array([os.getpid()], np.int64)),
            ]
            seen = {"id": request.request_id(), "batch": len(requests)}
            responses.append(pb_utils.InferenceResponse(outputs, parameters=seen))
        return responses
"""


def _config(name: str, extra: str = "") -> str:
    return f"""
name: "{name}"
backend: "python"
max_batch_size: 0
input [{{ name: "X" data_type: TYPE_FP32 dims: [ -1 ] }}]
output [
  {{ name: "Y" data_type: TYPE_FP32 dims: [ -1 ] }},
  {{ name: "PID" data_type: TYPE_INT64 dims: [ 1 ] }}
]
{extra}
"""


SYNC_BLS = """
import os

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            answer = pb_utils.InferenceRequest(
                model_name="crashes",
                requested_output_names=["Y", "PID"],
                inputs=[pb_utils.Tensor("X", x)],
            ).exec()
            if answer.has_error():
                responses.append(pb_utils.InferenceResponse(error=answer.error()))
                continue
            y = pb_utils.get_output_tensor_by_name(answer, "Y").as_numpy()
            callee = pb_utils.get_output_tensor_by_name(answer, "PID").as_numpy()
            responses.append(
                pb_utils.InferenceResponse([
                    pb_utils.Tensor("Y", y + 1),
                    pb_utils.Tensor("PID", np.array([os.getpid()], np.int64)),
                    pb_utils.Tensor("CALLEE_PID", callee),
                ])
            )
        return responses
"""

SYNC_BLS_CONFIG = """
name: "sync_bls"
backend: "python"
max_batch_size: 0
input [{ name: "X" data_type: TYPE_FP32 dims: [ -1 ] }]
output [
  { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] },
  { name: "PID" data_type: TYPE_INT64 dims: [ 1 ] },
  { name: "CALLEE_PID" data_type: TYPE_INT64 dims: [ 1 ] }
]
"""

THREAD = 'parameters { key: "isolation" value: { string_value: "thread" } }'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("triton-worker-repo")
    python_model(repo, "crashes", CRASHES, _config("crashes"))
    python_model(repo, "in_thread", CRASHES, _config("in_thread", THREAD))
    python_model(repo, "sync_bls", SYNC_BLS, SYNC_BLS_CONFIG)
    (repo / "addsub" / "1").mkdir(parents=True)
    models.addsub_onnx(repo / "addsub" / "1" / "model.onnx")
    (repo / "addsub" / "config.pbtxt").write_text(
        'name: "addsub"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n'
    )
    log = tmp_path_factory.mktemp("logs") / "server.log"
    args = ("--model-control-mode", "explicit", "--load-model", "*")
    with ServerProcess(str(repo), *args, log_path=log) as process:
        yield process


def _infer(server: ServerProcess, model: str, x: list[float], **extra: object) -> httpx.Response:
    body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [len(x)], "data": x}], **extra}
    return httpx.post(f"{server.url}/v2/models/{model}/infer", json=body, timeout=30)


def _output(response: httpx.Response, name: str) -> list[float]:
    body = response.json()
    data: list[float] = next(o for o in body["outputs"] if o["name"] == name)["data"]
    return data


def _ready(server: ServerProcess, model: str) -> bool:
    return httpx.get(f"{server.url}/v2/models/{model}/ready", timeout=5).status_code == 200


def _server_pid(server: ServerProcess) -> int:
    assert server.process is not None
    return server.process.pid


def test_a_triton_model_runs_in_its_worker_and_thread_isolation_keeps_it_here(
    server: ServerProcess,
) -> None:
    answer = _infer(server, "crashes", [1.0, 2.0], id="req-7")
    assert answer.status_code == 200, answer.text
    assert _output(answer, "Y") == [2.0, 4.0]
    assert _output(answer, "PID")[0] != _server_pid(server)
    # the request id reached execute in the worker; the response parameters came back
    assert answer.json()["parameters"] == {"id": "req-7", "batch": 1}
    here = _infer(server, "in_thread", [1.0])
    assert _output(here, "PID")[0] == _server_pid(server)


def test_a_segfault_in_execute_fails_its_requests_others_answer_and_it_restarts(
    server: ServerProcess,
) -> None:
    before = _output(_infer(server, "crashes", [1.0]), "PID")[0]
    answers, failures = 0, []
    stop = threading.Event()

    def steady() -> None:
        nonlocal answers
        client = httpclient.InferenceServerClient(server.http_addr)
        inputs = [
            httpclient.InferInput("INPUT0", [1, 4], "FP32"),
            httpclient.InferInput("INPUT1", [1, 4], "INT32"),
        ]
        inputs[0].set_data_from_numpy(np.arange(4, dtype=np.float32).reshape(1, 4))
        inputs[1].set_data_from_numpy(np.ones((1, 4), dtype=np.int32))
        while not stop.is_set():
            try:
                out = client.infer("addsub", inputs).as_numpy("OUTPUT0")
                assert out is not None and out.tolist() == [[1.0, 2.0, 3.0, 4.0]]
                answers += 1
            except Exception as exc:  # asserted on below
                failures.append(repr(exc))

    other = threading.Thread(target=steady)
    other.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            crashes = list(pool.map(lambda _: _infer(server, "crashes", [-1.0]), range(3)))
        for response in crashes:
            assert 500 <= response.status_code < 600, response.text
        assert any("signal SIGSEGV" in r.json()["error"] for r in crashes), [
            r.text for r in crashes
        ]
        deadline = time.monotonic() + 30
        while not _ready(server, "crashes"):
            assert time.monotonic() < deadline, server.log()[-3000:]
            time.sleep(0.05)
        after = _infer(server, "crashes", [3.0])
        assert after.status_code == 200, after.text
        assert _output(after, "Y") == [6.0]
        assert _output(after, "PID")[0] != before  # a new worker
        assert _output(_infer(server, "in_thread", [1.0]), "Y") == [2.0]
        time.sleep(0.2)
    finally:
        stop.set()
        other.join()
    assert answers > 0 and not failures


def test_bls_exec_from_a_worker_goes_through_the_server(server: ServerProcess) -> None:
    answer = _infer(server, "sync_bls", [1.0, 2.0])
    assert answer.status_code == 200, answer.text
    assert _output(answer, "Y") == [3.0, 5.0]
    caller, callee = _output(answer, "PID")[0], _output(answer, "CALLEE_PID")[0]
    assert caller != _server_pid(server) and callee != _server_pid(server)
    assert caller != callee  # each model in its own worker


def test_bls_error_from_a_crashing_callee_reaches_the_caller(server: ServerProcess) -> None:
    answer = _infer(server, "sync_bls", [-1.0])
    assert 500 <= answer.status_code < 600, answer.text
    assert "worker process died" in answer.json()["error"]
    deadline = time.monotonic() + 30
    while not _ready(server, "crashes"):
        assert time.monotonic() < deadline, server.log()[-3000:]
        time.sleep(0.05)
    assert _output(_infer(server, "sync_bls", [1.0]), "Y") == [3.0]


def test_concurrent_requests_keep_their_ids(server: ServerProcess) -> None:
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(
            pool.map(lambda i: _infer(server, "crashes", [float(i)], id=f"r{i}"), range(6))
        )
    for i, response in enumerate(results):
        assert response.status_code == 200, response.text
        assert _output(response, "Y") == [2.0 * i]
        assert response.json()["parameters"]["id"] == f"r{i}"
