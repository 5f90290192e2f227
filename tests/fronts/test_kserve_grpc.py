"""tritonclient.grpc (and the generated stub, for typed contents) against the real server:
every model kind, sync / async / streaming, errors, repository, API keys, deadlines, limits."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import queue
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aiogrpcclient
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc
from tritonclient.utils import InferenceServerException

from tests import models
from tests.server_process import ServerProcess

Callback = tuple[float, Any, Any]


def _input(name: str, array: np.ndarray, datatype: str) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def _addsub_inputs(a: np.ndarray, b: np.ndarray) -> list[grpcclient.InferInput]:
    return [_input("INPUT0", a, "FP32"), _input("INPUT1", b, "INT32")]


def _count(n: int) -> list[grpcclient.InferInput]:
    return [_input("N", np.array([n], dtype=np.int32), "INT32")]


def _status(err: pytest.ExceptionInfo[InferenceServerException]) -> str | None:
    return cast(str | None, err.value.status())


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[grpcclient.InferenceServerClient]:
    with grpcclient.InferenceServerClient(server.grpc_addr) as grpc_client:
        yield grpc_client


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Iterator[Any]:
    with grpc.insecure_channel(server.grpc_addr) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


# ---- health, metadata, config ----------------------------------------------------------------


def test_health_and_server_metadata(client: grpcclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    meta = client.get_server_metadata(as_json=True)
    assert meta["name"] == "modelyard"
    assert {"model_repository", "statistics", "model_configuration"} <= set(meta["extensions"])


def test_model_metadata_ready_and_config(client: grpcclient.InferenceServerClient) -> None:
    meta = client.get_model_metadata("addsub", as_json=True)
    assert meta["versions"] == ["1", "2"]
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [
        {"name": "INPUT0", "datatype": "FP32", "shape": ["-1", "4"]},
        {"name": "INPUT1", "datatype": "INT32", "shape": ["-1", "4"]},
    ]
    assert client.is_model_ready("addsub", "1")
    assert not client.is_model_ready("addsub", "7")
    assert not client.is_model_ready("no_such_model")
    config = client.get_model_config("addsub", "1").config
    assert config.max_batch_size == 8
    assert [mc.DataType.Name(i.data_type) for i in config.input] == ["TYPE_FP32", "TYPE_INT32"]
    # configs written as model.yaml or inferred from the file come back the same way
    countdown = client.get_model_config("countdown", as_json=True)["config"]
    assert countdown["backend"] == "python"
    assert countdown["parameters"]["delay"]["string_value"] == "0.2"
    inferred = client.get_model_config("identity_fp16", as_json=True)["config"]
    assert inferred["input"][0]["data_type"] == "TYPE_FP16"
    with pytest.raises(InferenceServerException) as err:
        client.get_model_metadata("no_such_model")
    assert _status(err) == "StatusCode.NOT_FOUND"


def test_every_model_has_metadata_and_config(client: grpcclient.InferenceServerClient) -> None:
    names = {m.name for m in client.get_model_repository_index().models}
    assert len(names) >= 14
    for name in names:
        meta = client.get_model_metadata(name)
        config = client.get_model_config(name).config
        assert config.name == name
        assert [t.name for t in meta.inputs] == [t.name for t in config.input]
        assert [t.name for t in meta.outputs] == [t.name for t in config.output]


# ---- inference over every model kind ---------------------------------------------------------


def test_triton_layout_two_versions(client: grpcclient.InferenceServerClient) -> None:
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    b = np.full((2, 4), 3, dtype=np.int32)
    latest = client.infer("addsub", _addsub_inputs(a, b), request_id="r1")
    np.testing.assert_allclose(latest.as_numpy("OUTPUT0"), (a + b) * 10)
    np.testing.assert_allclose(latest.as_numpy("OUTPUT1"), a - b)
    response = latest.get_response()
    assert (response.model_version, response.id) == ("2", "r1")
    first = client.infer(
        "addsub",
        _addsub_inputs(a, b),
        model_version="1",
        outputs=[grpcclient.InferRequestedOutput("OUTPUT0")],
    )
    np.testing.assert_allclose(first.as_numpy("OUTPUT0"), a + b)
    assert first.as_numpy("OUTPUT1") is None
    squeezed = client.infer("addsub", _addsub_inputs(a, b), compression_algorithm="gzip")
    np.testing.assert_allclose(squeezed.as_numpy("OUTPUT0"), (a + b) * 10)


@pytest.mark.parametrize(
    ("model", "array", "datatype"),
    [
        ("identity_fp32", np.random.default_rng(0).random((2, 3), dtype=np.float32), "FP32"),
        ("identity_fp16", np.arange(6, dtype=np.float16).reshape(2, 3) / 4, "FP16"),
        ("identity_bool", np.array([[True, False, True]]), "BOOL"),
        ("identity_int8", np.array([[-128, 0, 127]], dtype=np.int8), "INT8"),
        ("identity_uint64", np.array([[0, 2**63 + 5]], dtype=np.uint64), "UINT64"),
        ("identity_string", np.array([["héllo".encode(), b"", b"x" * 300]], dtype=object), "BYTES"),
    ],
)
def test_bare_onnx_every_datatype(
    client: grpcclient.InferenceServerClient, model: str, array: np.ndarray, datatype: str
) -> None:
    out = client.infer(model, [_input("x", array, datatype)]).as_numpy("y")
    if datatype == "BYTES":
        assert out.reshape(-1).tolist() == array.reshape(-1).tolist()
    else:
        assert out.dtype == array.dtype
        np.testing.assert_array_equal(out, array)


def test_sklearn_models(client: grpcclient.InferenceServerClient, tmp_path: Path) -> None:
    rows = models.iris()[0][::30]
    reference = models.sklearn_skops(tmp_path / "ref.skops")
    result = client.infer("iris_logreg", [_input("input", rows, "FP64")])
    np.testing.assert_array_equal(result.as_numpy("predict"), reference.predict(rows))
    np.testing.assert_allclose(result.as_numpy("predict_proba"), reference.predict_proba(rows))
    tree = models.sklearn_joblib(tmp_path / "ref.joblib")
    result = client.infer("iris_tree", [_input("input", rows, "FP64")])
    np.testing.assert_array_equal(result.as_numpy("predict"), tree.predict(rows))


def test_xgboost_and_lightgbm(client: grpcclient.InferenceServerClient, tmp_path: Path) -> None:
    import xgboost
    from sklearn.datasets import load_diabetes

    rows = models.iris()[0][:5].astype(np.float32)
    booster = models.xgboost_ubj(tmp_path / "ref.ubj")
    result = client.infer("iris_xgb", [_input("input", rows, "FP32")])
    np.testing.assert_allclose(
        result.as_numpy("predict"), booster.predict(xgboost.DMatrix(rows)), rtol=1e-6
    )
    diabetes = load_diabetes().data[:4].astype(np.float32)
    lgbm = models.lightgbm_txt(tmp_path / "ref.txt")
    result = client.infer("diabetes_lgbm", [_input("input", diabetes, "FP32")])
    np.testing.assert_allclose(result.as_numpy("predict"), lgbm.predict(diabetes), rtol=1e-6)


def test_python_model_bytes_in_and_out(client: grpcclient.InferenceServerClient) -> None:
    turtle = "żółw".encode()
    texts = np.array([[b"abc", turtle], [b"modelyard", b""]], dtype=object)
    result = client.infer("reverse", [_input("TEXT", texts, "BYTES")])
    assert result.as_numpy("REVERSED").tolist() == [
        [b"cba!", turtle[::-1] + b"!"],
        [b"drayledom!", b"!"],
    ]
    assert result.as_numpy("LENGTH").tolist() == [[3, len(turtle)], [9, 0]]


def test_classification_extension(client: grpcclient.InferenceServerClient) -> None:
    rows = models.iris()[0][:1]
    result = client.infer(
        "iris_logreg",
        [_input("input", rows, "FP64")],
        outputs=[grpcclient.InferRequestedOutput("predict_proba", class_count=2)],
    )
    top = result.as_numpy("predict_proba")
    assert top.shape == (1, 2)
    score, index = top[0][0].decode().split(":")
    assert index == "0" and float(score) > 0.9


def test_typed_contents_from_the_generated_stub(stub: Any) -> None:
    request = pb.ModelInferRequest(model_name="addsub", model_version="1")
    request.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 4]).contents.fp32_contents[:] = [
        1.0,
        2.0,
        3.0,
        4.0,
    ]
    request.inputs.add(name="INPUT1", datatype="INT32", shape=[1, 4]).contents.int_contents[:] = [
        1,
        1,
        1,
        1,
    ]
    response = stub.ModelInfer(request)
    assert [o.name for o in response.outputs] == ["OUTPUT0", "OUTPUT1"]
    out = np.frombuffer(response.raw_output_contents[0], dtype=np.float32)
    assert out.tolist() == [2.0, 3.0, 4.0, 5.0]
    text = pb.ModelInferRequest(model_name="reverse")
    text.inputs.add(name="TEXT", datatype="BYTES", shape=[1, 2]).contents.bytes_contents[:] = [
        b"ab",
        b"xyz",
    ]
    assert b"zyx!" in stub.ModelInfer(text).raw_output_contents[0]
    narrow = pb.ModelInferRequest(model_name="identity_int8")
    narrow.inputs.add(name="x", datatype="INT8", shape=[1, 2]).contents.int_contents[:] = [-5, 300]
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(narrow)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "does not fit INT8" in err.value.details()


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda r: r.inputs[0].contents.fp32_contents.pop(), "needs 4 elements"),
        (lambda r: r.raw_input_contents.append(b"\0" * 16), "raw_input_contents for 2 inputs"),
        (lambda r: setattr(r.inputs[1], "datatype", "FP16"), "no typed contents"),
        (
            lambda r: (
                r.inputs[1]
                .parameters["shared_memory_region"]
                .MergeFrom(pb.InferParameter(string_param="region"))
            ),
            "shared-memory",
        ),
    ],
)
def test_typed_contents_errors(stub: Any, change: Any, fragment: str) -> None:
    request = pb.ModelInferRequest(model_name="addsub", model_version="1")
    request.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 4]).contents.fp32_contents[:] = [
        1.0,
        2.0,
        3.0,
        4.0,
    ]
    request.inputs.add(name="INPUT1", datatype="INT32", shape=[1, 4]).contents.int_contents[:] = [
        1,
        1,
        1,
        1,
    ]
    change(request)
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in err.value.details()


# ---- async and streaming ---------------------------------------------------------------------


def test_async_infer_with_callbacks(client: grpcclient.InferenceServerClient) -> None:
    a = np.ones((1, 4), dtype=np.float32)
    b = np.ones((1, 4), dtype=np.int32)
    done: queue.Queue[tuple[int, Any, Any]] = queue.Queue()
    for k in range(6):
        client.async_infer(
            "addsub",
            _addsub_inputs(a * k, b),
            model_version="1",
            callback=lambda result, error, k=k: done.put((k, result, error)),
        )
    for _ in range(6):
        k, result, error = done.get(timeout=10)
        assert error is None
        np.testing.assert_allclose(result.as_numpy("OUTPUT0"), a * k + 1)


def test_concurrent_calls_on_one_channel_share_executions(tmp_path: Path) -> None:
    """Calls that wait together go to the model together: 16 calls on one channel while the
    model sleeps take at most 3 executions."""
    models.slow_model(tmp_path / "repo", "slow", "max_batch_size: 32\n", delay=0.3)

    async def run(address: str) -> list[int]:
        async with aiogrpcclient.InferenceServerClient(address) as client:

            async def one(value: float) -> int:
                x = _input("X", np.array([[value]], dtype=np.float32), "FP32")
                result = await client.infer("slow", [x])
                assert result.as_numpy("Y").tolist() == [[value]]
                return int(result.as_numpy("SEQ")[0][0])

            return await asyncio.gather(*(one(float(i)) for i in range(16)))

    with ServerProcess(str(tmp_path / "repo"), log_path=tmp_path / "log") as own:
        executions = set(asyncio.run(run(own.grpc_addr)))
        stats = grpcclient.InferenceServerClient(own.grpc_addr).get_inference_statistics("slow")
    assert len(executions) <= 3, executions
    assert stats.model_stats[0].inference_count == 16


def test_aio_client_concurrent_and_stream(server: ServerProcess) -> None:
    a = np.ones((1, 4), dtype=np.float32)
    b = np.ones((1, 4), dtype=np.int32)

    def aio_input(name: str, array: np.ndarray, datatype: str) -> aiogrpcclient.InferInput:
        tensor = aiogrpcclient.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        return tensor

    async def requests() -> AsyncIterator[dict[str, Any]]:
        for n in (2, 1):
            yield {
                "model_name": "countdown",
                "inputs": [aio_input("N", np.array([n], np.int32), "INT32")],
                "request_id": f"c{n}",
            }

    async def run() -> tuple[list[np.ndarray], list[tuple[str, int]]]:
        async with aiogrpcclient.InferenceServerClient(server.grpc_addr) as aio:
            calls = [
                aio.infer(
                    "addsub",
                    [aio_input("INPUT0", a * k, "FP32"), aio_input("INPUT1", b, "INT32")],
                    model_version="1",
                )
                for k in range(8)
            ]
            results = await asyncio.gather(*calls)
            streamed = []
            async for result, error in aio.stream_infer(requests()):
                assert error is None
                streamed.append((result.get_response().id, int(result.as_numpy("COUNT")[0])))
            return [r.as_numpy("OUTPUT0") for r in results], streamed

    outputs, streamed = asyncio.run(run())
    for k, out in enumerate(outputs):
        np.testing.assert_allclose(out, a * k + 1)
    assert sorted(streamed) == [("c1", 1), ("c2", 1), ("c2", 2)]


def _collect(
    client: grpcclient.InferenceServerClient, **stream_options: Any
) -> queue.Queue[Callback]:
    arrivals: queue.Queue[Callback] = queue.Queue()
    client.start_stream(
        lambda result, error: arrivals.put((time.monotonic(), result, error)), **stream_options
    )
    return arrivals


def test_stream_delivers_each_response_as_produced(server: ServerProcess) -> None:
    with grpcclient.InferenceServerClient(server.grpc_addr) as client:
        arrivals = _collect(client)
        sent = time.monotonic()
        client.async_stream_infer("countdown", _count(5), request_id="five")
        got = [arrivals.get(timeout=10) for _ in range(5)]
        client.stop_stream()
    assert all(error is None for _, _, error in got)
    assert [int(r.as_numpy("COUNT")[0]) for _, r, _ in got] == [5, 4, 3, 2, 1]
    assert all(r.get_response().id == "five" for _, r, _ in got)
    times = [t - sent for t, _, _ in got]
    # produced 0.2 s apart: they must arrive spread out, not all at the end
    assert times[0] < 1.0, times
    assert times[-1] - times[0] > 0.5, times
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert sum(gap > 0.1 for gap in gaps) >= 2, times


def test_stream_errors_do_not_end_the_stream(server: ServerProcess) -> None:
    a = np.ones((1, 4), dtype=np.float32)
    b = np.ones((1, 4), dtype=np.int32)
    with grpcclient.InferenceServerClient(server.grpc_addr) as client:
        arrivals = _collect(client)
        client.async_stream_infer(
            "broken", [_input("x", -np.ones(2, np.float32), "FP32")], request_id="bad"
        )
        client.async_stream_infer("no_such_model", _addsub_inputs(a, b), request_id="missing")
        client.async_stream_infer("addsub", [_input("INPUT0", a, "FP32")], request_id="half")
        client.async_stream_infer(
            "addsub", _addsub_inputs(a, b), model_version="1", request_id="good"
        )
        got = [arrivals.get(timeout=10) for _ in range(4)]
        client.stop_stream()
    errors = sorted(str(error) for _, _, error in got if error is not None)
    assert len(errors) == 3
    assert any("negative input breaks this model" in e for e in errors)
    assert any("unknown model 'no_such_model'" in e for e in errors)
    assert any("missing input 'INPUT1'" in e for e in errors)
    (result,) = [r for _, r, error in got if error is None]
    np.testing.assert_allclose(result.as_numpy("OUTPUT0"), a + b)


def test_stream_empty_final_response(server: ServerProcess) -> None:
    with grpcclient.InferenceServerClient(server.grpc_addr) as client:
        arrivals = _collect(client)
        client.async_stream_infer(
            "countdown", _count(2), request_id="two", enable_empty_final_response=True
        )
        got = [arrivals.get(timeout=10)[1].get_response() for _ in range(3)]
        client.stop_stream()
    finals = [r.parameters["triton_final_response"].bool_param for r in got]
    assert finals == [False, False, True]
    assert [len(r.outputs) for r in got] == [1, 1, 0]
    assert all(r.id == "two" for r in got)


# ---- statistics ------------------------------------------------------------------------------


def test_statistics_count_inferences(client: grpcclient.InferenceServerClient) -> None:
    def stats() -> dict[str, Any]:
        statistics = client.get_inference_statistics("identity_uint64", as_json=True)
        return cast(dict[str, Any], statistics["model_stats"][0])

    before = stats()
    array = np.zeros((3, 2), dtype=np.uint64)
    for _ in range(3):
        client.infer("identity_uint64", [_input("x", array, "UINT64")])
    with pytest.raises(InferenceServerException):
        client.infer("identity_uint64", [_input("x", array.astype(np.int64), "INT64")])
    after = stats()

    def delta(*path: str) -> int:
        old: Any = before
        new: Any = after
        for key in path:
            old, new = old.get(key, 0), new.get(key, 0)
        return int(new) - int(old)

    assert delta("execution_count") == 3
    assert delta("inference_count") == 9
    assert delta("inference_stats", "success", "count") == 3
    assert delta("inference_stats", "fail", "count") == 1
    assert int(after["inference_stats"]["compute_infer"]["ns"]) > 0
    assert any(b["batch_size"] == "3" for b in after["batch_stats"])
    everything = client.get_inference_statistics(as_json=True)["model_stats"]
    assert {s["name"] for s in everything} >= {"addsub", "iris_logreg", "reverse"}


# ---- bad requests ----------------------------------------------------------------------------

A = np.ones((1, 4), dtype=np.float32)
B = np.ones((1, 4), dtype=np.int32)
BAD_CASES: list[tuple[str, str, list[Any], dict[str, Any], str, str]] = [
    (
        "wrong shape",
        "addsub",
        [_input("INPUT0", np.ones((1, 3), np.float32), "FP32"), _input("INPUT1", B, "INT32")],
        {},
        "INVALID_ARGUMENT",
        "expected [-1, 4]",
    ),
    (
        "wrong dtype",
        "addsub",
        [_input("INPUT0", A.astype(np.float64), "FP64"), _input("INPUT1", B, "INT32")],
        {},
        "INVALID_ARGUMENT",
        "must be FP32, got FP64",
    ),
    (
        "missing input",
        "addsub",
        [_input("INPUT0", A, "FP32")],
        {},
        "INVALID_ARGUMENT",
        "missing input 'INPUT1'",
    ),
    (
        "unknown output",
        "addsub",
        _addsub_inputs(A, B),
        {"outputs": [grpcclient.InferRequestedOutput("NOPE")]},
        "INVALID_ARGUMENT",
        "has no output 'NOPE'",
    ),
    (
        "over max batch",
        "addsub",
        _addsub_inputs(np.ones((9, 4), np.float32), np.ones((9, 4), np.int32)),
        {},
        "INVALID_ARGUMENT",
        "max_batch_size 8",
    ),
    ("unknown model", "nope", _addsub_inputs(A, B), {}, "NOT_FOUND", "unknown model 'nope'"),
    (
        "unknown version",
        "addsub",
        _addsub_inputs(A, B),
        {"model_version": "9"},
        "NOT_FOUND",
        "no version 9",
    ),
    (
        "model raises",
        "broken",
        [_input("x", -np.ones(2, np.float32), "FP32")],
        {},
        "INTERNAL",
        "negative input breaks this model",
    ),
    ("several responses", "countdown", _count(2), {}, "INTERNAL", "ModelStreamInfer"),
]


def _assert_good(client: grpcclient.InferenceServerClient) -> None:
    result = client.infer("addsub", _addsub_inputs(A, B), model_version="1")
    np.testing.assert_allclose(result.as_numpy("OUTPUT0"), A + B)


@pytest.mark.parametrize(
    ("case_id", "model", "inputs", "options", "status", "fragment"),
    BAD_CASES,
    ids=[case[0] for case in BAD_CASES],
)
def test_bad_requests_then_good(
    client: grpcclient.InferenceServerClient,
    case_id: str,
    model: str,
    inputs: list[Any],
    options: dict[str, Any],
    status: str,
    fragment: str,
) -> None:
    _assert_good(client)
    with pytest.raises(InferenceServerException) as err:
        client.infer(model, inputs, **options)
    assert _status(err) == f"StatusCode.{status}", case_id
    assert fragment in err.value.message(), case_id
    _assert_good(client)


@pytest.mark.parametrize(
    "call",
    [
        "get_system_shared_memory_status",
        "get_cuda_shared_memory_status",
        "get_trace_settings",
        "get_log_settings",
    ],
)
def test_unserved_rpcs_say_so(client: grpcclient.InferenceServerClient, call: str) -> None:
    with pytest.raises(InferenceServerException) as err:
        getattr(client, call)()
    assert _status(err) == "StatusCode.UNIMPLEMENTED"
    assert "not supported" in err.value.message() or "cannot be changed" in err.value.message()


# ---- deadlines and cancellation --------------------------------------------------------------


def _countdown_stats(client: grpcclient.InferenceServerClient) -> tuple[int, int]:
    stats = client.get_inference_statistics("countdown", as_json=True)["model_stats"][0]
    fail = stats["inference_stats"]["fail"]
    return int(stats.get("execution_count", 0)), int(fail.get("count", 0))


def _while_busy(
    server: ServerProcess,
    client: grpcclient.InferenceServerClient,
    interrupt: Callable[[], None] | None = None,
) -> tuple[int, int]:
    """Run a 4-step countdown stream, calling `interrupt` while the stream holds the model's only
    instance; how many executions and failures countdown's statistics gained meanwhile."""
    before = _countdown_stats(client)
    with grpcclient.InferenceServerClient(server.grpc_addr) as streamer:
        arrivals = _collect(streamer)
        streamer.async_stream_infer("countdown", _count(4))
        assert arrivals.get(timeout=10)[2] is None
        if interrupt is not None:
            interrupt()
        for _ in range(3):
            assert arrivals.get(timeout=10)[2] is None
        streamer.stop_stream()
    after = _countdown_stats(client)
    return after[0] - before[0], after[1] - before[1]


def test_deadline_drops_a_waiting_request_and_the_server_goes_on(
    client: grpcclient.InferenceServerClient, server: ServerProcess
) -> None:
    with pytest.raises(InferenceServerException) as err:
        client.infer("countdown", _count(1), client_timeout=0.05)  # deadline while running
    assert _status(err) == "StatusCode.DEADLINE_EXCEEDED"
    time.sleep(0.3)  # its step finishes on the worker thread; the result is dropped
    executions, failures = _while_busy(server, client)

    def late() -> None:
        with pytest.raises(InferenceServerException) as err:
            client.infer("countdown", _count(1), client_timeout=0.2)
        assert _status(err) == "StatusCode.DEADLINE_EXCEEDED"

    # the request that waited for the instance past its deadline never ran (a server too busy to
    # look at it before the deadline drops it without counting it as failed)
    assert _while_busy(server, client, late) in {(executions, failures + 1), (executions, failures)}
    result = client.infer("countdown", _count(1), client_timeout=10)
    assert result.as_numpy("COUNT").tolist() == [1]


def test_cancelled_request_is_dropped(
    client: grpcclient.InferenceServerClient, server: ServerProcess
) -> None:
    executions, failures = _while_busy(server, client)

    def cancel() -> None:
        errors: queue.Queue[Any] = queue.Queue()
        call = client.async_infer(
            "countdown", _count(1), callback=lambda result, error: errors.put(error)
        )
        time.sleep(0.2)  # it reaches the server and waits for the instance
        call.cancel()
        assert errors.get(timeout=10).status() == "StatusCode.CANCELLED"

    assert _while_busy(server, client, cancel) in {
        (executions, failures + 1),
        (executions, failures),
    }


def test_stream_deadline(server: ServerProcess) -> None:
    with grpcclient.InferenceServerClient(server.grpc_addr) as client:
        arrivals = _collect(client, stream_timeout=0.5)
        client.async_stream_infer("countdown", _count(10))
        results = []
        while (arrival := arrivals.get(timeout=10))[2] is None:
            results.append(arrival[1])
        client.stop_stream()
    assert len(results) <= 2  # 0.2 s apart, the stream ends at 0.5 s
    assert arrival[2].status() == "StatusCode.DEADLINE_EXCEEDED"
    with grpcclient.InferenceServerClient(server.grpc_addr) as client:
        assert client.is_model_ready("countdown")


# ---- own servers: repository, API keys, limits, ports ---------------------------------------


REVERSE_CONFIG = {  # a load request's config replaces the one on disk, as in Triton
    "backend": "python",
    "max_batch_size": 8,
    "input": [{"name": "TEXT", "data_type": "TYPE_STRING", "dims": [-1]}],
    "output": [
        {"name": "REVERSED", "data_type": "TYPE_STRING", "dims": [-1]},
        {"name": "LENGTH", "data_type": "TYPE_INT32", "dims": [-1]},
    ],
    "parameters": {"suffix": {"string_value": "?"}},
}


def test_repository_index_unload_and_load(model_repo: Path, tmp_path: Path) -> None:
    with (
        ServerProcess(
            str(model_repo),
            "--model-control-mode",
            "explicit",
            "--load-model",
            "identity_fp32",
            log_path=tmp_path / "log",
        ) as own,
        grpcclient.InferenceServerClient(own.grpc_addr) as client,
    ):
        index = {m.name: m for m in client.get_model_repository_index().models}
        assert index["identity_fp32"].state == "READY"
        assert index["addsub"].state == "UNAVAILABLE"
        ready = client.get_model_repository_index(as_json=True)["models"]
        assert [m["name"] for m in ready if m.get("state") == "READY"] == ["identity_fp32"]
        array = np.ones((1, 2), dtype=np.float32)
        client.unload_model("identity_fp32")
        assert not client.is_model_ready("identity_fp32")
        with pytest.raises(InferenceServerException) as err:
            client.infer("identity_fp32", [_input("x", array, "FP32")])
        assert _status(err) == "StatusCode.UNAVAILABLE"
        client.load_model("identity_fp32")
        out = client.infer("identity_fp32", [_input("x", array, "FP32")]).as_numpy("y")
        np.testing.assert_array_equal(out, array)
        client.load_model("reverse", config=json.dumps(REVERSE_CONFIG))
        texts = np.array([[b"ab"]], dtype=object)
        reversed_ = client.infer("reverse", [_input("TEXT", texts, "BYTES")]).as_numpy("REVERSED")
        assert reversed_.tolist() == [[b"ba?"]]
        with pytest.raises(InferenceServerException) as err:
            client.load_model("no_such_model")
        assert _status(err) == "StatusCode.NOT_FOUND"
        with pytest.raises(InferenceServerException) as err:
            client.load_model("addsub", config="{not json")
        assert _status(err) == "StatusCode.INVALID_ARGUMENT"
        with pytest.raises(InferenceServerException) as err:
            client.load_model("addsub", files={"file:1/model.onnx": b"x"})
        assert "file overrides" in err.value.message()


def test_api_keys(model_repo: Path, tmp_path: Path) -> None:
    with (
        ServerProcess(
            str(model_repo),
            "--model-control-mode",
            "explicit",
            "--load-model",
            "identity_fp32",
            "--api-key",
            "k1,k2",
            api_key="k1",
            log_path=tmp_path / "log",
        ) as own,
        grpcclient.InferenceServerClient(own.grpc_addr) as client,
    ):
        assert client.is_server_live()
        x = [_input("x", np.ones((1, 2), np.float32), "FP32")]
        wrong = {"authorization": "Bearer no"}
        calls: list[Callable[[], object]] = [
            lambda: client.is_server_ready(),
            lambda: client.infer("identity_fp32", x),
            lambda: client.infer("identity_fp32", x, headers=wrong),
        ]
        for call in calls:
            with pytest.raises(InferenceServerException) as err:
                call()
            assert _status(err) == "StatusCode.UNAUTHENTICATED"
            assert "Bearer" in err.value.message()
        for key in ("k1", "k2"):
            headers = {"authorization": f"Bearer {key}"}
            assert client.is_server_ready(headers=headers)
            out = client.infer("identity_fp32", x, headers=headers).as_numpy("y")
            np.testing.assert_array_equal(out, np.ones((1, 2), np.float32))
        arrivals = _collect(client)
        with contextlib.suppress(InferenceServerException):  # the stream may be refused already
            client.async_stream_infer("identity_fp32", x)
        error = arrivals.get(timeout=10)[2]
        assert error is not None and error.status() == "StatusCode.UNAUTHENTICATED"
        client.stop_stream()
        arrivals = _collect(client, headers={"authorization": "Bearer k2"})
        client.async_stream_infer("identity_fp32", x)
        assert arrivals.get(timeout=10)[2] is None
        client.stop_stream()


def test_message_size_limit(model_repo: Path, tmp_path: Path) -> None:
    with (
        ServerProcess(
            str(model_repo),
            "--model-control-mode",
            "explicit",
            "--load-model",
            "identity_fp32",
            "--grpc-max-message-bytes",
            "4096",
            log_path=tmp_path / "log",
        ) as own,
        grpcclient.InferenceServerClient(own.grpc_addr) as client,
    ):
        small = np.ones((1, 100), np.float32)
        np.testing.assert_array_equal(
            client.infer("identity_fp32", [_input("x", small, "FP32")]).as_numpy("y"), small
        )
        with pytest.raises(InferenceServerException) as err:
            client.infer("identity_fp32", [_input("x", np.ones((1, 2000), np.float32), "FP32")])
        assert _status(err) == "StatusCode.RESOURCE_EXHAUSTED"
        assert "larger than max" in err.value.message()
        assert client.infer("identity_fp32", [_input("x", small, "FP32")]).as_numpy("y").size == 100


def test_grpc_port_in_use_is_a_clear_error(model_repo: Path, tmp_path: Path) -> None:
    own = ServerProcess(
        str(model_repo), "--model-control-mode", "explicit", log_path=tmp_path / "log"
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", own.grpc_port))
        taken.listen()
        with pytest.raises(RuntimeError, match="server exited"):
            own.start(timeout=30)
    assert "cannot serve gRPC" in own.log()
    assert "--grpc-port" in own.log()


def test_stops_cleanly_with_an_open_stream(model_repo: Path, tmp_path: Path) -> None:
    own = ServerProcess(
        str(model_repo),
        "--model-control-mode",
        "explicit",
        "--load-model",
        "countdown",
        "--shutdown-timeout",
        "3",
        log_path=tmp_path / "log",
    ).start()
    try:
        with grpcclient.InferenceServerClient(own.grpc_addr) as client:
            arrivals = _collect(client)
            client.async_stream_infer("countdown", _count(100))
            assert arrivals.get(timeout=10)[2] is None
            began = time.monotonic()
            own.stop()
            took = time.monotonic() - began
            error = None
            while error is None:  # responses until the grace period ends, then the stream breaks
                error = arrivals.get(timeout=10)[2]
    finally:
        own.stop()
    assert took < 3 + 2, took  # 3 s of grace for the stream, then the process ends
    assert "Finished server process" in own.log()
