"""The OpenVINO runtime through the real server and tritonclient (HTTP and gRPC): IR converted
from ONNX in Triton's layout (config.pbtxt, `backend: "openvino"`), OVMS's layout (1/model.xml,
no config) and as a bare file; metadata, inference against onnxruntime on the ONNX the IR came
from, batching, statistics and bad input; in process, the advisor's hints, OVMS's config.json
settings and a fixed batch dimension made dynamic."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino")

import onnxruntime as ort

from modelyard.errors import ModelLoadError
from modelyard.repository.loader import Loaded, load_version
from modelyard.repository.scan import scan
from tests.openvino_models import MLP_WIDTHS, build_openvino_repository, mlp_ir
from tests.runtimes.kserve import (
    PROTOCOLS,
    Client,
    assert_batched,
    assert_counted,
    assert_refused,
    infer_input,
    metadata,
    model_config,
    open_client,
    tensors,
)
from tests.server_process import ServerProcess

RNG = np.random.default_rng(0)
X = RNG.standard_normal((3, MLP_WIDTHS[0])).astype(np.float32)
A = RNG.standard_normal((2, 4)).astype(np.float32)
B = RNG.integers(-5, 5, (2, 4)).astype(np.int32)
MLPS = ("mlp", "mlp_ovms")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_openvino_repository(tmp_path_factory.mktemp("openvino_repo"))


@pytest.fixture(scope="module")
def server(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("logs") / "server.log"
    with ServerProcess(
        str(repo), "--model-control-mode", "explicit", "--load-model", "*", log_path=log
    ) as process:
        yield process


@pytest.fixture(params=PROTOCOLS)
def client(request: pytest.FixtureRequest, server: ServerProcess) -> Iterator[Client]:
    with open_client(request.param, server) as client:
        yield client


def _onnx(repo: Path, model: str, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """What onnxruntime answers on the ONNX file the IR was converted from."""
    session = ort.InferenceSession(str(repo / "_onnx" / f"{model}.onnx"))
    return list(session.run(None, inputs))


def test_metadata_from_the_ir_and_from_the_config(client: Client) -> None:
    for model in MLPS:
        meta = metadata(client, model)
        assert tensors(meta, "inputs") == [("x", "FP32", [-1, MLP_WIDTHS[0]])]
        assert tensors(meta, "outputs") == [("y", "FP32", [-1, MLP_WIDTHS[-1]])]
        assert meta["platform"] == "openvino"
        assert int(model_config(client, model)["max_batch_size"]) == 256
    addsub = metadata(client, "addsub")
    assert tensors(addsub, "inputs") == [("INPUT0", "FP32", [-1, 4]), ("INPUT1", "INT32", [-1, 4])]
    config = model_config(client, "addsub")
    assert config["backend"] == "openvino"
    assert int(config["max_batch_size"]) == 8


def test_infer_matches_onnxruntime(client: Client, repo: Path) -> None:
    [want] = _onnx(repo, "mlp", {"x": X})
    for model in MLPS:
        result = client.infer(model, [infer_input(client, "x", X)])
        np.testing.assert_allclose(result.as_numpy("y"), want, rtol=1e-4, atol=1e-5)
    total, diff = _onnx(repo, "addsub", {"INPUT0": A, "INPUT1": B})
    inputs = [infer_input(client, "INPUT1", B, "INT32"), infer_input(client, "INPUT0", A)]
    result = client.infer("addsub", inputs)
    np.testing.assert_allclose(result.as_numpy("OUTPUT0"), total, rtol=1e-6)
    np.testing.assert_allclose(result.as_numpy("OUTPUT1"), diff, rtol=1e-6)


def test_bad_input_is_a_clear_client_error(client: Client) -> None:
    width = f"expected [-1, {MLP_WIDTHS[0]}]"
    assert_refused(client, "mlp", [infer_input(client, "x", X[:, :31])], width)
    wrong_type = [infer_input(client, "x", X.astype(np.float64), "FP64")]
    assert_refused(client, "mlp_ovms", wrong_type, "FP32")
    too_many = [infer_input(client, "INPUT0", np.zeros((9, 4), np.float32))]
    assert_refused(client, "addsub", too_many, "")
    assert client.is_model_ready("mlp")  # and the model goes on serving


def test_concurrent_requests_are_batched(server: ServerProcess, repo: Path) -> None:
    [want] = _onnx(repo, "mlp", {"x": X})
    assert_batched(server, "mlp", "x", X[:3], "y", want[:3], rtol=1e-4, atol=1e-5)


def test_statistics_count_inferences(client: Client, server: ServerProcess) -> None:
    assert_counted(client, server, "mlp_ovms", "x", X, X[:, :4])


# ---- in process: the advisor's hints, OVMS's config.json, fixed batch dimensions --------------


def _load(root: Path, name: str, goal: str = "latency") -> Loaded:
    source = scan([root])[name]
    return load_version(source, max(source.versions), False, goal=goal)


@pytest.mark.parametrize("goal", ["latency", "throughput"])
def test_the_advisor_picks_the_hint_and_threads_for_the_goal(
    tmp_path: Path, repo: Path, goal: str
) -> None:
    mlp_ir(tmp_path / "mlp.xml")
    loaded = _load(tmp_path, "mlp", goal)
    try:
        config = loaded.config
        assert config.parameters["PERFORMANCE_HINT"] == goal.upper()
        assert int(config.parameters["INFERENCE_NUM_THREADS"]) >= 1
        assert config.reasons["parameters.PERFORMANCE_HINT"].startswith("advisor: ")
        hint = loaded.runtime.compiled.get_property("PERFORMANCE_HINT")  # type: ignore[attr-defined]
        assert str(hint).upper().endswith(goal.upper())
        if goal == "throughput":
            assert config.instance_count >= 1
            assert config.dynamic_batching is not None
        [want] = _onnx(repo, "mlp", {"x": X})
        got = loaded.runtime.infer({"x": X})
        np.testing.assert_allclose(got["y"], want, rtol=1e-4, atol=1e-5)
    finally:
        loaded.runtime.unload()


def test_an_ovms_config_json_gives_infer_requests_and_plugin_config(tmp_path: Path) -> None:
    mlp_ir(tmp_path / "models" / "mlp" / "1" / "model.xml")
    config = {
        "model_config_list": [
            {
                "config": {
                    "name": "mlp",
                    "base_path": "models/mlp",
                    "nireq": 2,
                    "plugin_config": {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": 2},
                }
            }
        ]
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = _load(tmp_path, "mlp")
    try:
        assert loaded.config.runtime == "openvino"
        assert loaded.config.instance_count == 2
        assert loaded.config.parameters["PERFORMANCE_HINT"] == "THROUGHPUT"
        streams = loaded.runtime.compiled.get_property("NUM_STREAMS")  # type: ignore[attr-defined]
        assert int(streams) == 2
        assert loaded.runtime.infer({"x": X})["y"].shape == (3, MLP_WIDTHS[-1])
    finally:
        loaded.runtime.unload()


def test_a_fixed_batch_dimension_is_made_dynamic_when_the_config_batches(tmp_path: Path) -> None:
    mlp_ir(tmp_path / "mlp" / "1" / "model.xml", batch=1)
    (tmp_path / "mlp" / "config.pbtxt").write_text('backend: "openvino"\nmax_batch_size: 8\n')
    loaded = _load(tmp_path, "mlp")
    try:
        assert [t.dims for t in loaded.config.inputs] == [[MLP_WIDTHS[0]]]
        assert loaded.runtime.infer({"x": X})["y"].shape == (3, MLP_WIDTHS[-1])
    finally:
        loaded.runtime.unload()
    (tmp_path / "mlp" / "config.pbtxt").write_text(
        'backend: "openvino"\nmax_batch_size: 0\n'
        'parameters { key: "SKIP_OV_DYNAMIC_BATCHSIZE" value { string_value: "YES" } }\n'
    )
    fixed = _load(tmp_path, "mlp")
    try:
        assert [t.dims for t in fixed.config.inputs] == [[1, MLP_WIDTHS[0]]]
    finally:
        fixed.runtime.unload()


def test_a_lower_case_parameter_in_the_config_wins_over_the_advisor(tmp_path: Path) -> None:
    mlp_ir(tmp_path / "mlp" / "model.xml")
    (tmp_path / "mlp" / "model.yaml").write_text("parameters: {performance_hint: throughput}\n")
    loaded = _load(tmp_path, "mlp", "latency")
    try:
        hint = loaded.runtime.compiled.get_property("PERFORMANCE_HINT")  # type: ignore[attr-defined]
        assert str(hint).upper().endswith("THROUGHPUT")
    finally:
        loaded.runtime.unload()


def test_a_bad_hint_or_ir_is_a_load_error(tmp_path: Path) -> None:
    mlp_ir(tmp_path / "mlp" / "1" / "model.xml")
    (tmp_path / "mlp" / "config.pbtxt").write_text(
        'backend: "openvino"\n'
        'parameters { key: "PERFORMANCE_HINT" value { string_value: "FASTEST" } }\n'
    )
    with pytest.raises(ModelLoadError, match="PERFORMANCE_HINT must be one of LATENCY"):
        _load(tmp_path, "mlp")
    (tmp_path / "broken.xml").write_text('<?xml version="1.0"?>\n<net name="x" version="11">')
    with pytest.raises(ModelLoadError, match=r"OpenVINO cannot load broken\.xml"):
        _load(tmp_path, "broken")
