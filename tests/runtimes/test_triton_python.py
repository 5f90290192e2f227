"""Triton Python-backend models served unchanged, through tritonclient over HTTP and gRPC:
pb_utils tensors and config helpers, a batch reaching `execute` as a list of requests, a
response's error failing its own request only, BLS (async_exec to a Python and an ONNX model,
a decoupled call, an unknown model), a decoupled model streaming over ModelStreamInfer, an
execute that raises, and the parts of pb_utils modelyard refuses."""

from __future__ import annotations

import importlib.util
import json
import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.server_process import ServerProcess
from tests.triton_models import BLS_LLM, BLS_LLM_CONFIG, python_model, triton_repository


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = triton_repository(tmp_path_factory.mktemp("triton-repo"))
    log = tmp_path_factory.mktemp("logs") / "server.log"
    args = ("--model-control-mode", "explicit", "--load-model", "*")
    with ServerProcess(str(repo), *args, log_path=log) as process:
        yield process


def _http(server: ServerProcess) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(server.http_addr, concurrency=8)


def _input(module: Any, name: str, array: np.ndarray, datatype: str) -> Any:
    tensor = module.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def test_config_reaches_the_model_and_says_python(server: ServerProcess) -> None:
    config = _http(server).get_model_config("preprocess")
    assert config["backend"] == "python"
    assert config["max_batch_size"] == 8
    assert _http(server).get_model_metadata("preprocess")["platform"] == "python"
    grpc = grpcclient.InferenceServerClient(server.grpc_addr)
    assert grpc.get_model_config("repeat").config.model_transaction_policy.decoupled


def test_auto_complete_config_declares_the_tensors(server: ServerProcess) -> None:
    """A model.py alone in its version folder: auto_complete_config gives its config."""
    config = _http(server).get_model_config("autocomplete")
    assert (config["backend"], config["max_batch_size"]) == ("python", 4)
    metadata = _http(server).get_model_metadata("autocomplete")
    assert [(t["name"], t["shape"]) for t in metadata["inputs"]] == [("X", [-1, 2])]
    data = np.array([[1, 2]], dtype=np.float32)
    result = _http(server).infer("autocomplete", [_input(httpclient, "X", data, "FP32")])
    np.testing.assert_array_equal(result.as_numpy("Y"), data + 1)


def test_unload_finalizes_each_instance_and_load_serves_again(server: ServerProcess) -> None:
    client = _http(server)
    client.unload_model("instances")
    assert not client.is_model_ready("instances")
    finalized = Path(server.args[0]) / "instances" / "finalized.txt"
    assert sorted(finalized.read_text().split()) == ["instances_0_0", "instances_0_1"]
    client.load_model("instances")
    data = np.array([1], dtype=np.int32)
    result = client.infer("instances", [_input(httpclient, "IN", data, "INT32")])
    assert result.as_numpy("NAME")[0].decode().startswith("instances_0_")


def test_preprocess_over_http_and_grpc(server: ServerProcess) -> None:
    data = np.array([[1, 2, 3, 4]], dtype=np.float32)
    result = _http(server).infer("preprocess", [_input(httpclient, "INPUT0", data, "FP32")])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data * 2)
    grpc = grpcclient.InferenceServerClient(server.grpc_addr)
    result = grpc.infer("preprocess", [_input(grpcclient, "INPUT0", data, "FP32")])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data * 2)


def test_a_batch_is_a_list_of_requests_and_an_error_fails_only_its_own(
    server: ServerProcess,
) -> None:
    """Concurrent requests reach execute together (one request each, not concatenated); the
    one with a negative value gets the model's TritonError (INVALID_ARG: 400), others answer."""
    client = _http(server)  # async_infer: concurrent requests on one client (greenlets)
    rows = [np.full((1, 4), -1 if i == 3 else i, np.float32) for i in range(8)]
    pending = [
        client.async_infer("preprocess", [_input(httpclient, "INPUT0", row, "FP32")])
        for row in rows
    ]

    def outcome(request: Any) -> Any:
        try:
            return request.get_result()
        except InferenceServerException as exc:
            return exc

    results = [outcome(request) for request in pending]
    error = results[3]
    assert isinstance(error, InferenceServerException)
    assert error.status() == "400"
    assert "INPUT0 must not be negative" in error.message()
    for i, result in enumerate(results):
        if i != 3:
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), np.full((1, 4), 2 * i))
    assert max(int(r.as_numpy("BATCHES")[0, 0]) for i, r in enumerate(results) if i != 3) > 1


def test_execute_sees_the_request_id_parameters_and_requested_outputs(
    server: ServerProcess,
) -> None:
    data = np.array([1], dtype=np.int32)
    for module, client in (
        (httpclient, _http(server)),
        (grpcclient, grpcclient.InferenceServerClient(server.grpc_addr)),
    ):
        asked = [module.InferRequestedOutput(name) for name in ("PARAMS", "NAMES")]
        result = client.infer(
            "echo_request",
            [_input(module, "IN", data, "INT32")],
            outputs=asked,
            parameters={"greeting": "hi"},
            priority=0,
        )
        assert json.loads(result.as_numpy("PARAMS")[0]) == {"greeting": "hi"}
        assert result.as_numpy("NAMES")[0].decode() == "PARAMS,NAMES"
        assert result.as_numpy("ID") is None  # not asked for
        result = client.infer(
            "echo_request", [_input(module, "IN", data, "INT32")], request_id="r-7"
        )
        assert result.as_numpy("ID")[0].decode() == "r-7"
        assert result.as_numpy("NAMES")[0].decode() == "ID,PARAMS,NAMES"
        assert json.loads(result.as_numpy("PARAMS")[0]) == {}
        # the response's parameters reach the client
        if module is httpclient:
            assert result.get_response()["parameters"] == {"inputs_seen": 1, "echo": True}
        else:
            parameters = result.get_response().parameters
            assert parameters["inputs_seen"].int64_param == 1
            assert parameters["echo"].bool_param


def test_each_instance_is_its_own_model_object(server: ServerProcess) -> None:
    client = _http(server)
    data = np.array([1], dtype=np.int32)
    started = time.monotonic()
    pending = [
        client.async_infer("instances", [_input(httpclient, "IN", data, "INT32")]) for _ in range(2)
    ]
    results = [request.get_result() for request in pending]
    assert time.monotonic() - started < 1.0  # both at once: 0.6 s each, 1.2 s in turn
    names = {r.as_numpy("NAME")[0].decode() for r in results}
    assert names == {"instances_0_0", "instances_0_1"}


def test_bls_calls_a_python_and_an_onnx_model(server: ServerProcess) -> None:
    data = np.array([[1, 2, 3, 4]], dtype=np.float32)
    for module, client in (
        (httpclient, _http(server)),
        (grpcclient, grpcclient.InferenceServerClient(server.grpc_addr)),
    ):
        result = client.infer("bls", [_input(module, "INPUT0", data, "FP32")])
        # preprocess doubles, addsub adds INPUT1 = 1
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data * 2 + 1)
        missing = result.as_numpy("MISSING")[0, 0].decode()
        assert "no_such_model" in missing


def test_bls_error_of_a_step_reaches_the_client(server: ServerProcess) -> None:
    data = np.array([[1, -2, 3, 4]], dtype=np.float32)
    with pytest.raises(InferenceServerException) as caught:
        _http(server).infer("bls", [_input(httpclient, "INPUT0", data, "FP32")])
    assert caught.value.status() == "400"
    assert "INPUT0 must not be negative" in caught.value.message()


def test_execute_that_raises_is_a_500_with_the_model_message(server: ServerProcess) -> None:
    data = np.array([1], dtype=np.int32)
    with pytest.raises(InferenceServerException) as caught:
        _http(server).infer("raises", [_input(httpclient, "IN", data, "INT32")])
    assert caught.value.status() == "500"
    assert "Failed to process the request(s) for model 'raises'" in caught.value.message()
    assert "ValueError: the tokenizer is missing" in caught.value.message()
    with pytest.raises(InferenceServerException) as grpc_caught:
        grpcclient.InferenceServerClient(server.grpc_addr).infer(
            "raises", [_input(grpcclient, "IN", data, "INT32")]
        )
    assert grpc_caught.value.status() == "StatusCode.INTERNAL"


def _stream(
    server: ServerProcess, values: list[int], model: str = "repeat", name: str = "IN"
) -> list[Any]:
    results: queue.Queue[Any] = queue.Queue()
    client = grpcclient.InferenceServerClient(server.grpc_addr)
    client.start_stream(callback=lambda result, error: results.put(error or result))
    data = np.array(values, dtype=np.int32)
    client.async_stream_infer(
        model, [_input(grpcclient, name, data, "INT32")], enable_empty_final_response=True
    )
    out = []
    while True:
        item = results.get(timeout=30)
        out.append(item)
        if isinstance(item, InferenceServerException):
            break
        final = item.get_response().parameters.get("triton_final_response")
        if final is not None and final.bool_param:
            break
    client.stop_stream()
    return out


def test_decoupled_model_streams_over_model_stream_infer(server: ServerProcess) -> None:
    responses = _stream(server, [5, 6, 7])
    assert [int(r.as_numpy("OUT")[0]) for r in responses[:-1]] == [5, 6, 7]
    assert [int(r.as_numpy("IDX")[0]) for r in responses[:-1]] == [0, 1, 2]
    assert responses[-1].as_numpy("OUT") is None  # the empty final response


def test_a_model_that_is_not_decoupled_streams_its_one_response(server: ServerProcess) -> None:
    """As in Triton: ModelStreamInfer takes any model; this one answers once, then final."""
    responses = _stream(server, [4], model="wrong", name="MODE")
    assert [int(r.as_numpy("OUT")[0]) for r in responses[:-1]] == [7]
    assert responses[-1].as_numpy("OUT") is None


def test_decoupled_error_after_responses_ends_the_stream(server: ServerProcess) -> None:
    responses = _stream(server, [5, -1, 7])
    assert int(responses[0].as_numpy("OUT")[0]) == 5
    assert isinstance(responses[-1], InferenceServerException)
    assert "element 1 is negative" in responses[-1].message()


def test_decoupled_model_refuses_single_response_infer(server: ServerProcess) -> None:
    """As Triton: HTTP 501 (UNSUPPORTED) and gRPC UNIMPLEMENTED, saying where to call it."""
    data = np.array([1, 2], dtype=np.int32)
    with pytest.raises(InferenceServerException) as caught:
        _http(server).infer("repeat", [_input(httpclient, "IN", data, "INT32")])
    assert caught.value.status() == "501"
    assert "ModelStreamInfer" in caught.value.message()
    with pytest.raises(InferenceServerException) as grpc_caught:
        grpcclient.InferenceServerClient(server.grpc_addr).infer(
            "repeat", [_input(grpcclient, "IN", data, "INT32")]
        )
    assert grpc_caught.value.status() == "StatusCode.UNIMPLEMENTED"


def test_bls_decoupled_call_iterates_every_response(server: ServerProcess) -> None:
    data = np.array([1, 2, 3, 4], dtype=np.int32)
    result = _http(server).infer("sum_repeat", [_input(httpclient, "IN", data, "INT32")])
    assert int(result.as_numpy("SUM")[0]) == 10
    assert "is decoupled" in result.as_numpy("NOTE")[0].decode()  # exec() without decoupled


@pytest.mark.parametrize(
    ("mode", "says"),
    [
        (0, "Expected a list in the execute return, found type 'dict'"),
        (1, "Number of InferenceResponse objects do not match"),
        (2, "Expected an 'InferenceResponse' object"),
        (3, "found type 'NoneType'"),
    ],
)
def test_execute_returning_what_triton_refuses_is_a_500(
    server: ServerProcess, mode: int, says: str
) -> None:
    data = np.array([mode], dtype=np.int32)
    with pytest.raises(InferenceServerException) as caught:
        _http(server).infer("wrong", [_input(httpclient, "MODE", data, "INT32")])
    assert caught.value.status() == "500"
    assert says in caught.value.message()


def test_a_model_may_answer_through_the_sender_and_return_none(server: ServerProcess) -> None:
    data = np.array([4], dtype=np.int32)
    result = _http(server).infer("wrong", [_input(httpclient, "MODE", data, "INT32")])
    assert int(result.as_numpy("OUT")[0]) == 7


def test_initialize_that_raises_leaves_the_model_unavailable_saying_why(
    server: ServerProcess,
) -> None:
    index = {row["name"]: row for row in _http(server).get_model_repository_index()}
    assert index["bad_init"]["state"] == "UNAVAILABLE"
    assert (
        "initialize() of 'bad_init' failed: RuntimeError: no weights"
        in (index["bad_init"]["reason"])
    )
    with pytest.raises(InferenceServerException) as caught:
        _http(server).load_model("bad_init")
    assert "no weights in bad_init" in caught.value.message()


@pytest.mark.parametrize(
    ("mode", "says"),
    [(0, "KeyError: 'vocabulary'"), (1, "execute function must return None")],
)
def test_a_decoupled_execute_that_fails_ends_its_stream_with_the_error(
    server: ServerProcess, mode: int, says: str
) -> None:
    url = f"{server.url}/v2/models/bad_decoupled/generate_stream"
    reply = httpx.post(url, json={"MODE": mode})
    assert reply.status_code == 500
    assert says in reply.json()["error"]


@pytest.mark.parametrize(
    ("what", "says"),
    [
        ("to_dlpack", "DLPack"),
        ("from_dlpack", "DLPack"),
        ("load_model", "pb_utils.load_model"),
        ("unload_model", "pb_utils.unload_model"),
        ("metrics", "MetricFamily"),
        ("gpu_memory", "GPU"),
    ],
)
def test_refused_parts_say_so(server: ServerProcess, what: str, says: str) -> None:
    data = np.array([what.encode()], dtype=object)
    result = _http(server).infer("refused", [_input(httpclient, "WHAT", data, "BYTES")])
    text = result.as_numpy("ERROR")[0].decode()
    assert says in text
    assert "not supported by modelyard" in text


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed"
)
def test_bls_calls_a_python_model_an_onnx_model_and_an_llm(tmp_path: Path) -> None:
    from tests.llm_models import tiny_gguf

    triton_repository(tmp_path)
    tiny_gguf(tmp_path / "tiny.gguf")
    python_model(tmp_path, "bls_llm", BLS_LLM, BLS_LLM_CONFIG)
    args = ("--model-control-mode", "explicit", "--load-model", "*")
    with ServerProcess(str(tmp_path), *args, log_path=tmp_path / "server.log") as server:
        prompt = np.array([[b"hello world"]], dtype=object)
        numbers = np.array([[1, 2, 3, 4]], dtype=np.float32)
        for module, client in (
            (grpcclient, grpcclient.InferenceServerClient(server.grpc_addr)),
            (httpclient, _http(server)),
        ):
            inputs = [
                _input(module, "PROMPT", prompt, "BYTES"),
                _input(module, "INPUT0", numbers, "FP32"),
            ]
            result = client.infer("bls_llm", inputs)
            text = result.as_numpy("TEXT")[0, 0].decode()
            assert text and text == text.upper()
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), numbers * 2 + 1)
        # Triton's generate extension on the LLM, as the vLLM backend's docs call it.
        body = {"text_input": "hello world", "parameters": {"max_tokens": 3, "temperature": 0}}
        direct = httpx.post(f"{server.url}/v2/models/tiny/generate", json=body)
        assert direct.status_code == 200, direct.text
        assert isinstance(direct.json()["text_output"], str)
        body["parameters"] = {"max_tokens": 3, "ignore_eos": True}
        url = f"{server.url}/v2/models/tiny/generate_stream"
        with httpx.stream("POST", url, json=body) as stream:
            events = [json.loads(line[6:]) for line in stream.iter_lines() if line]
        assert 1 <= len(events) <= 4
        assert all(isinstance(e["text_output"], str) for e in events)
