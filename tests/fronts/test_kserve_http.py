"""tritonclient.http against the real server: every model kind, binary and JSON, sync and async."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
import tritonclient.http.aio as aiohttpclient
from tritonclient.utils import InferenceServerException

from tests import models
from tests.server_process import ServerProcess


def _input(name: str, array: np.ndarray, datatype: str, binary: bool) -> httpclient.InferInput:
    tensor = httpclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(server.http_addr, concurrency=4)


def test_server_health_and_metadata(
    client: httpclient.InferenceServerClient, server: ServerProcess
) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    # the Open Inference Protocol's bodies, which the KServe SDK reads
    assert httpx.get(f"{server.url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{server.url}/v2/health/ready").json() == {"ready": True}
    ready = httpx.get(f"{server.url}/v2/models/addsub/ready")
    assert ready.status_code == 200 and ready.json() == {"name": "addsub", "ready": True}
    missing = httpx.get(f"{server.url}/v2/models/nope/ready")
    assert missing.status_code == 400 and missing.json() == {"name": "nope", "ready": False}
    meta = client.get_server_metadata()
    assert meta["name"] == "modelyard"
    assert "binary_tensor_data" in meta["extensions"]


@pytest.mark.parametrize("binary", [True, False])
def test_triton_layout_two_versions_two_dtypes(
    client: httpclient.InferenceServerClient, binary: bool
) -> None:
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    b = np.full((2, 4), 3, dtype=np.int32)
    inputs = [_input("INPUT0", a, "FP32", binary), _input("INPUT1", b, "INT32", binary)]
    outputs = [
        httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("OUTPUT0", "OUTPUT1")
    ]
    latest = client.infer("addsub", inputs, outputs=outputs)
    np.testing.assert_allclose(latest.as_numpy("OUTPUT0"), (a + b) * 10)
    np.testing.assert_allclose(latest.as_numpy("OUTPUT1"), a - b)
    first = client.infer("addsub", inputs, model_version="1", outputs=outputs)
    np.testing.assert_allclose(first.as_numpy("OUTPUT0"), a + b)
    assert latest.get_response()["model_version"] == "2"


def test_model_metadata_and_config(client: httpclient.InferenceServerClient) -> None:
    meta = client.get_model_metadata("addsub")
    assert meta["versions"] == ["1", "2"]
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [
        {"name": "INPUT0", "datatype": "FP32", "shape": [-1, 4]},
        {"name": "INPUT1", "datatype": "INT32", "shape": [-1, 4]},
    ]
    config = client.get_model_config("addsub", "1")
    assert config["max_batch_size"] == 8
    assert [i["data_type"] for i in config["input"]] == ["TYPE_FP32", "TYPE_INT32"]
    assert client.is_model_ready("addsub", "1")
    assert not client.is_model_ready("addsub", "7")
    assert not client.is_model_ready("no_such_model")


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
@pytest.mark.parametrize("binary", [True, False])
def test_bare_onnx_every_datatype(
    client: httpclient.InferenceServerClient,
    model: str,
    array: np.ndarray,
    datatype: str,
    binary: bool,
) -> None:
    result = client.infer(
        model,
        [_input("x", array, datatype, binary)],
        outputs=[httpclient.InferRequestedOutput("y", binary_data=binary)],
    )
    out = result.as_numpy("y")
    if datatype == "BYTES":  # tritonclient gives str for JSON BYTES, bytes for binary ones
        got = [v if isinstance(v, bytes) else v.encode() for v in out.reshape(-1)]
        assert got == array.reshape(-1).tolist()
    else:
        assert out.dtype == array.dtype
        np.testing.assert_array_equal(out, array)


def test_sklearn_skops_and_trusted_pickle(
    client: httpclient.InferenceServerClient, tmp_path: Path
) -> None:
    x, _ = models.iris()
    rows = x[::30]
    reference = models.sklearn_skops(tmp_path / "ref.skops")
    result = client.infer("iris_logreg", [_input("input", rows, "FP64", True)])
    np.testing.assert_array_equal(result.as_numpy("predict"), reference.predict(rows))
    np.testing.assert_allclose(result.as_numpy("predict_proba"), reference.predict_proba(rows))
    tree = models.sklearn_joblib(tmp_path / "ref.joblib")
    result = client.infer("iris_tree", [_input("input", rows, "FP64", False)])
    np.testing.assert_array_equal(result.as_numpy("predict"), tree.predict(rows))


def test_xgboost_and_lightgbm(client: httpclient.InferenceServerClient, tmp_path: Path) -> None:
    import xgboost

    x, _ = models.iris()
    rows = x[:5].astype(np.float32)
    booster = models.xgboost_ubj(tmp_path / "ref.ubj")
    result = client.infer("iris_xgb", [_input("input", rows, "FP32", True)])
    np.testing.assert_allclose(
        result.as_numpy("predict"), booster.predict(xgboost.DMatrix(rows)), rtol=1e-6
    )
    from sklearn.datasets import load_diabetes

    diabetes = load_diabetes().data[:4].astype(np.float32)
    lgbm = models.lightgbm_txt(tmp_path / "ref.txt")
    result = client.infer("diabetes_lgbm", [_input("input", diabetes, "FP32", False)])
    np.testing.assert_allclose(result.as_numpy("predict"), lgbm.predict(diabetes), rtol=1e-6)


def test_python_model_bytes_in_and_out(client: httpclient.InferenceServerClient) -> None:
    turtle = "żółw".encode()
    texts = np.array([[b"abc", turtle], [b"modelyard", b""]], dtype=object)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=True) for n in ("REVERSED", "LENGTH")]
    result = client.infer("reverse", [_input("TEXT", texts, "BYTES", True)], outputs=outputs)
    assert result.as_numpy("REVERSED").tolist() == [
        [b"cba!", turtle[::-1] + b"!"],
        [b"drayledom!", b"!"],
    ]
    assert result.as_numpy("LENGTH").tolist() == [[3, len(turtle)], [9, 0]]


def test_python_model_bytes_as_json(client: httpclient.InferenceServerClient) -> None:
    texts = np.array([[b"abc", b"hello world"]], dtype=object)
    outputs = [httpclient.InferRequestedOutput("REVERSED", binary_data=False)]
    result = client.infer("reverse", [_input("TEXT", texts, "BYTES", False)], outputs=outputs)
    assert result.as_numpy("REVERSED").tolist() == [["cba!", "dlrow olleh!"]]
    # reversed UTF-8 is not UTF-8: JSON cannot carry it, and the error says what to do
    bad = np.array([["żółw".encode()]], dtype=object)
    with pytest.raises(InferenceServerException, match="binary_data"):
        client.infer("reverse", [_input("TEXT", bad, "BYTES", False)], outputs=outputs)


def test_classification_extension(client: httpclient.InferenceServerClient) -> None:
    rows = models.iris()[0][:1]
    result = client.infer(
        "iris_logreg",
        [_input("input", rows, "FP64", True)],
        outputs=[httpclient.InferRequestedOutput("predict_proba", class_count=2)],
    )
    top = result.as_numpy("predict_proba")
    assert top.shape == (1, 2)
    score, index = top[0][0].decode().split(":")
    assert index == "0" and float(score) > 0.9


def test_async_clients(server: ServerProcess) -> None:
    a = np.ones((1, 4), dtype=np.float32)
    b = np.ones((1, 4), dtype=np.int32)

    async def run() -> list[np.ndarray]:
        client = aiohttpclient.InferenceServerClient(server.http_addr)
        try:
            calls = []
            for k in range(8):
                i0 = aiohttpclient.InferInput("INPUT0", [1, 4], "FP32")
                i0.set_data_from_numpy(a * k)
                i1 = aiohttpclient.InferInput("INPUT1", [1, 4], "INT32")
                i1.set_data_from_numpy(b)
                calls.append(client.infer("addsub", [i0, i1], model_version="1"))
            results = await asyncio.gather(*calls)
            return [r.as_numpy("OUTPUT0") for r in results]
        finally:
            await client.close()

    outputs = asyncio.run(run())
    for k, out in enumerate(outputs):
        np.testing.assert_allclose(out, a * k + 1)

    sync = httpclient.InferenceServerClient(server.http_addr, concurrency=4)
    pending = [
        sync.async_infer(
            "addsub",
            [_input("INPUT0", a * k, "FP32", True), _input("INPUT1", b, "INT32", True)],
            model_version="1",
        )
        for k in range(4)
    ]
    for k, request in enumerate(pending):
        np.testing.assert_allclose(request.get_result().as_numpy("OUTPUT0"), a * k + 1)


def test_statistics_count_inferences(client: httpclient.InferenceServerClient) -> None:
    before = client.get_inference_statistics("identity_int8")["model_stats"][0]
    array = np.zeros((3, 2), dtype=np.int8)
    for _ in range(3):
        client.infer("identity_int8", [_input("x", array, "INT8", True)])
    with pytest.raises(InferenceServerException):
        client.infer("identity_int8", [_input("x", array.astype(np.int16), "INT16", True)])
    after = client.get_inference_statistics("identity_int8")["model_stats"][0]
    assert after["execution_count"] - before["execution_count"] == 3
    assert after["inference_count"] - before["inference_count"] == 9
    stats = after["inference_stats"]
    assert stats["success"]["count"] - before["inference_stats"]["success"]["count"] == 3
    assert stats["fail"]["count"] - before["inference_stats"]["fail"]["count"] == 1
    assert stats["compute_infer"]["ns"] > 0
    assert any(b["batch_size"] == 3 for b in after["batch_stats"])
    everything = client.get_inference_statistics()["model_stats"]
    assert {s["name"] for s in everything} >= {"addsub", "iris_logreg", "reverse"}


def test_repository_extension_unload_and_load(model_repo: Path, tmp_path: Path) -> None:
    with ServerProcess(
        str(model_repo),
        "--model-control-mode",
        "explicit",
        "--load-model",
        "identity_fp32",
        log_path=tmp_path / "log",
    ) as own:
        client = httpclient.InferenceServerClient(own.http_addr)
        index = {row["name"]: row for row in client.get_model_repository_index()}
        assert index["identity_fp32"]["state"] == "READY"
        assert index["addsub"]["state"] == "UNAVAILABLE"
        array = np.ones((1, 2), dtype=np.float32)
        client.unload_model("identity_fp32")
        assert not client.is_model_ready("identity_fp32")
        with pytest.raises(InferenceServerException) as err:
            client.infer("identity_fp32", [_input("x", array, "FP32", True)])
        assert err.value.status() == "503" or "not ready" in str(err.value)
        client.load_model("identity_fp32")
        assert client.is_model_ready("identity_fp32")
        out = client.infer("identity_fp32", [_input("x", array, "FP32", True)]).as_numpy("y")
        np.testing.assert_array_equal(out, array)
        client.load_model("addsub")
        assert client.get_model_metadata("addsub")["versions"] == ["1", "2"]
        with pytest.raises(InferenceServerException, match="no model"):
            client.load_model("no_such_model")
