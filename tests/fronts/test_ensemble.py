"""Pipelines over the real server with tritonclient (HTTP and gRPC): a Triton ensemble written
the way Triton's docs write one (Python preprocess -> ONNX -> Python postprocess), the same DAG
as a model.yaml pipeline and as an OVMS config.json DAG (same answers), parallel branches,
`model_version: -1`, a step's error, statistics, /metrics, ModelStreamInfer, and the
repository's load/unload rules for ensembles and their steps."""

from __future__ import annotations

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

from tests.pipeline_models import (
    expected,
    ovms_repository,
    pb_utils_pipeline_repository,
    pipeline_repository,
)
from tests.server_process import ServerProcess

CYCLE = """\
platform: "ensemble"
input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] } ]
ensemble_scheduling { step [ { model_name: "OTHER"
  input_map { key: "X" value: "X" } output_map { key: "Y" value: "Y" } } ] }
"""
RAW = np.array([[1.5, 2.0, 3.0, 4.0], [-1.5, 0.0, 1.0, 2.0]], dtype=np.float32)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pipeline_repository(tmp_path_factory.mktemp("pipelines"))


@pytest.fixture(scope="module")
def served(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Explicit mode; only the pipelines named at start: they load their steps."""
    log = tmp_path_factory.mktemp("logs") / "server.log"
    names = ("pipeline", "pipeline_yaml", "fanout", "fails")
    args = [a for n in names for a in ("--load-model", n)]
    with ServerProcess(str(repo), "--model-control-mode", "explicit", *args, log_path=log) as p:
        yield p


@pytest.fixture(scope="module")
def http(served: ServerProcess) -> Iterator[httpclient.InferenceServerClient]:
    with httpclient.InferenceServerClient(served.http_addr, concurrency=8) as client:
        yield client


@pytest.fixture(scope="module")
def grpc(served: ServerProcess) -> Iterator[grpcclient.InferenceServerClient]:
    with grpcclient.InferenceServerClient(served.grpc_addr) as client:
        yield client


def _http_infer(client: httpclient.InferenceServerClient, model: str, raw: np.ndarray) -> Any:
    tensor = httpclient.InferInput("RAW", list(raw.shape), "FP32")
    tensor.set_data_from_numpy(raw)
    return client.infer(model, [tensor]).as_numpy("RESULT")


def _grpc_input(name: str, array: np.ndarray) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, list(array.shape), "FP32")
    tensor.set_data_from_numpy(array)
    return tensor


# ---- answers ---------------------------------------------------------------------------------


def test_ensemble_over_http_and_grpc(
    http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient
) -> None:
    want = expected(RAW)  # model_version -1: addsub's latest version (2, scale 10)
    np.testing.assert_allclose(_http_infer(http, "pipeline", RAW), want)
    result = grpc.infer("pipeline", [_grpc_input("RAW", RAW)]).as_numpy("RESULT")
    np.testing.assert_allclose(result, want)


def test_model_yaml_and_ovms_pipelines_answer_like_the_ensemble(
    http: httpclient.InferenceServerClient, tmp_path: Path
) -> None:
    raw = np.random.default_rng(0).uniform(-5, 5, (5, 4)).astype(np.float32)
    ensemble = _http_infer(http, "pipeline", raw)
    np.testing.assert_array_equal(_http_infer(http, "pipeline_yaml", raw), ensemble)
    ovms = ovms_repository(tmp_path / "ovms")  # config.json at the root, as OVMS reads it
    with (
        ServerProcess(str(ovms), log_path=tmp_path / "ovms.log") as server,
        httpclient.InferenceServerClient(server.http_addr) as client,
    ):
        index = {m["name"] for m in client.get_model_repository_index()}
        assert index == {"pre", "addsub", "post", "pipeline"}
        np.testing.assert_array_equal(_http_infer(client, "pipeline", raw), ensemble)
        assert client.get_model_metadata("pipeline")["platform"] == "ensemble"


def test_parallel_branches_read_one_tensor(http: httpclient.InferenceServerClient) -> None:
    """Two steps of 0.6 s each read X: they run side by side, not one after the other."""
    x = httpclient.InferInput("X", [1], "FP32")
    x.set_data_from_numpy(np.array([3.0], dtype=np.float32))
    http.infer("fanout", [x])  # warm
    start = time.monotonic()
    result = http.infer("fanout", [x])
    elapsed = time.monotonic() - start
    assert result.as_numpy("LEFT").tolist() == [3.0]
    assert result.as_numpy("RIGHT").tolist() == [3.0]
    assert elapsed < 1.05, f"branches ran one after the other ({elapsed:.2f} s)"


def test_steps_batch_under_load(served: ServerProcess) -> None:
    """Concurrent ensemble requests share executions of the step models."""
    with httpclient.InferenceServerClient(served.http_addr, concurrency=16) as client:
        before = client.get_inference_statistics("preprocess")["model_stats"][0]
        tensor = httpclient.InferInput("RAW", [1, 4], "FP32")
        tensor.set_data_from_numpy(RAW[:1])
        pending = [client.async_infer("pipeline", [tensor]) for _ in range(48)]
        for request in pending:
            np.testing.assert_allclose(request.get_result().as_numpy("RESULT"), expected(RAW[:1]))
        after = client.get_inference_statistics("preprocess")["model_stats"][0]
    rows = int(after["inference_count"]) - int(before["inference_count"])
    executions = int(after["execution_count"]) - int(before["execution_count"])
    assert rows == 48
    assert executions < rows, "every step request ran alone"


# ---- errors ----------------------------------------------------------------------------------


def test_step_error_reaches_the_client(
    http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient
) -> None:
    bad = np.array([-1.0, -2.0], dtype=np.float32)
    tensor = httpclient.InferInput("IN", [2], "FP32")
    tensor.set_data_from_numpy(bad)
    with pytest.raises(InferenceServerException) as err:
        http.infer("fails", [tensor])
    assert err.value.status() == "500"
    message = str(err.value.message())
    assert "ensemble 'fails' step 1 (model 'broken')" in message
    assert "negative input breaks this model" in message
    with pytest.raises(InferenceServerException) as grpc_err:
        grpc.infer("fails", [_grpc_input("IN", bad)])
    assert grpc_err.value.status() == "StatusCode.INTERNAL"
    assert "step 1 (model 'broken')" in str(grpc_err.value.message())
    good = _grpc_input("IN", np.array([1.0, 2.0], dtype=np.float32))
    assert grpc.infer("fails", [good]).as_numpy("OUT").tolist() == [2.0, 4.0]


def test_bad_ensemble_input_is_a_400(http: httpclient.InferenceServerClient) -> None:
    tensor = httpclient.InferInput("RAW", [1, 3], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(InferenceServerException) as err:
        http.infer("pipeline", [tensor])
    assert err.value.status() == "400"
    assert "expected [-1, 4]" in str(err.value.message())


# ---- metadata, config, statistics, metrics ---------------------------------------------------


def test_metadata_and_config(
    http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient
) -> None:
    meta = http.get_model_metadata("pipeline")
    assert meta["platform"] == "ensemble"
    assert meta["inputs"] == [{"name": "RAW", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["outputs"] == [{"name": "RESULT", "datatype": "FP32", "shape": [-1, 4]}]
    config = http.get_model_config("pipeline")
    steps = config["ensemble_scheduling"]["step"]
    assert [s["model_name"] for s in steps] == ["preprocess", "addsub", "postprocess"]
    assert steps[1]["input_map"] == {"INPUT0": "a", "INPUT1": "b"}
    assert steps[1]["model_version"] == -1
    grpc_config = grpc.get_model_config("pipeline", as_json=True)["config"]
    assert grpc_config["platform"] == "ensemble"
    assert len(grpc_config["ensemble_scheduling"]["step"]) == 3
    # the model.yaml pipeline took its output's type from the step that makes it
    yaml_meta = grpc.get_model_metadata("pipeline_yaml", as_json=True)
    assert yaml_meta["outputs"] == [{"name": "RESULT", "datatype": "FP32", "shape": ["-1", "4"]}]


def test_statistics_of_the_ensemble_and_its_steps(
    served: ServerProcess, http: httpclient.InferenceServerClient
) -> None:
    _http_infer(http, "pipeline", RAW)
    stats = http.get_inference_statistics("pipeline")["model_stats"]
    names = [(s["name"], s["version"]) for s in stats]
    assert names[0] == ("pipeline", "1")
    assert set(names[1:]) == {("preprocess", "1"), ("addsub", "2"), ("postprocess", "1")}
    assert all(int(s["inference_count"]) >= 2 for s in stats)
    metrics = httpx.get(f"{served.url}/metrics").text
    assert 'modelyard_inference_request_success_total{model="pipeline",version="1"}' in metrics


def test_stream_infer_on_an_ensemble(served: ServerProcess) -> None:
    responses: queue.Queue[tuple[Any, Any]] = queue.Queue()
    with grpcclient.InferenceServerClient(served.grpc_addr) as client:
        client.start_stream(lambda result, error: responses.put((result, error)))
        client.async_stream_infer("pipeline", [_grpc_input("RAW", RAW)], request_id="p1")
        result, error = responses.get(timeout=10)
        client.stop_stream()
    assert error is None
    assert result.get_response().id == "p1"
    np.testing.assert_allclose(result.as_numpy("RESULT"), expected(RAW))


# ---- load and unload -------------------------------------------------------------------------


def _state(client: httpclient.InferenceServerClient) -> dict[str, str]:
    rows = client.get_model_repository_index()
    return {r["name"]: r.get("state", "") for r in rows if r.get("state") == "READY"}


def test_the_advisor_notes_on_a_loaded_ensemble(http: httpclient.InferenceServerClient) -> None:
    """Two Python steps in a chain: merging them is advised in the metadata's reasons; a
    pipeline of ONNX and Python steps gets no such note."""
    http.load_model("slowchain")  # its steps are loaded already, for fanout
    try:
        parameters = http.get_model_metadata("slowchain")["parameters"]
        merge = parameters["reason.pipeline-merge"]
        assert "steps 'slow_left' and 'slow_right' form a chain on python" in merge
        assert "already loaded, so loading it adds 0 B" in parameters["reason.memory"]
        assert "reason.pipeline-merge" not in http.get_model_metadata("pipeline")["parameters"]
    finally:
        http.unload_model("slowchain")
    assert http.is_model_ready("fanout") and http.is_model_ready("slow_left")


def test_load_unload_rules(repo: Path, tmp_path: Path) -> None:
    """Loading an ensemble loads its steps; a step in use is refused unload (naming the
    ensemble); unloading the ensemble unloads the steps loaded only for it."""
    with (
        ServerProcess(
            str(repo), "--model-control-mode", "explicit", log_path=tmp_path / "s.log"
        ) as server,
        httpclient.InferenceServerClient(server.http_addr) as client,
    ):
        assert _state(client) == {}
        client.load_model("addsub")  # loaded by itself
        client.load_model("pipeline")
        assert set(_state(client)) == {"addsub", "preprocess", "postprocess", "pipeline"}
        # the advisor counts what loading the ensemble added: not addsub, loaded before it
        memory = client.get_model_metadata("pipeline")["parameters"]["reason.memory"]
        assert memory.startswith("advisor: ") and "addsub already loaded" in memory
        with pytest.raises(InferenceServerException) as err:
            client.unload_model("preprocess")
        assert err.value.status() == "400"
        assert "it is a step of the loaded ensemble pipeline" in str(err.value.message())
        deleted = httpx.request("DELETE", f"{server.url}/api/delete", json={"model": "addsub"})
        assert deleted.status_code == 400
        assert "cannot delete model 'addsub'" in deleted.json()["error"]
        np.testing.assert_allclose(_http_infer(client, "pipeline", RAW), expected(RAW))
        client.unload_model("pipeline")
        assert set(_state(client)) == {"addsub"}  # loaded by itself: stays
        client.unload_model("addsub")
        assert _state(client) == {}
        # a load request's config replaces the ensemble's on disk, its steps included
        override = {
            "platform": "ensemble",
            "input": [{"name": "X", "data_type": "TYPE_FP32", "dims": [1]}],
            "output": [{"name": "LEFT", "data_type": "TYPE_FP32", "dims": [1]}],
            "ensemble_scheduling": {
                "step": [
                    {
                        "model_name": "slow_left",
                        "model_version": -1,
                        "input_map": {"X": "X"},
                        "output_map": {"Y": "LEFT"},
                    }
                ]
            },
        }
        client.load_model("fanout", config=json.dumps(override))
        assert set(_state(client)) == {"fanout", "slow_left"}


def test_ondemand_loads_the_steps_at_the_first_request(repo: Path, tmp_path: Path) -> None:
    with (
        ServerProcess(
            str(repo), "--model-control-mode", "ondemand", log_path=tmp_path / "s.log"
        ) as server,
        httpclient.InferenceServerClient(server.http_addr, concurrency=4) as client,
    ):
        tensor = httpclient.InferInput("RAW", list(RAW.shape), "FP32")
        tensor.set_data_from_numpy(RAW)
        pending = [client.async_infer("pipeline", [tensor]) for _ in range(4)]
        for request in pending:  # the first requests load the steps, then the ensemble
            np.testing.assert_allclose(request.get_result().as_numpy("RESULT"), expected(RAW))
        assert {"preprocess", "addsub", "postprocess", "pipeline"} <= set(_state(client))


def test_broken_ensembles_say_which_step(tmp_path: Path) -> None:
    """An unknown step model, and a step output of the wrong type for the next input:
    load errors naming the step."""
    root = pipeline_repository(tmp_path / "repo")
    config = (root / "pipeline" / "config.pbtxt").read_text()
    (root / "unknown" / "1").mkdir(parents=True)
    (root / "unknown" / "config.pbtxt").write_text(
        config.replace('name: "pipeline"\n', "").replace('"postprocess"', '"nowhere"')
    )
    (root / "mismatch" / "1").mkdir(parents=True)
    (root / "mismatch" / "config.pbtxt").write_text(
        config.replace('name: "pipeline"\n', "").replace(
            'key: "INPUT1" value: "b"', 'key: "INPUT1" value: "a"'
        )
    )
    (root / "oldversion" / "1").mkdir(parents=True)
    (root / "oldversion" / "config.pbtxt").write_text(
        config.replace('name: "pipeline"\n', "").replace(
            'model_name: "preprocess"\n      model_version: -1',
            'model_name: "preprocess"\n      model_version: 7',
        )
    )
    (root / "nofile" / "1").mkdir(parents=True)  # a step model that cannot load
    (root / "nofile" / "config.pbtxt").write_text((root / "postprocess/config.pbtxt").read_text())
    (root / "badstep" / "1").mkdir(parents=True)
    (root / "badstep" / "config.pbtxt").write_text(
        config.replace('name: "pipeline"\n', "").replace('"postprocess"', '"nofile"')
    )
    for name, other in (("cyc_a", "cyc_b"), ("cyc_b", "cyc_a")):
        (root / name / "1").mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(CYCLE.replace("OTHER", other))
    with (
        ServerProcess(
            str(root), "--model-control-mode", "explicit", log_path=tmp_path / "s.log"
        ) as server,
        httpclient.InferenceServerClient(server.http_addr) as client,
    ):
        with pytest.raises(InferenceServerException) as cycle:
            client.load_model("cyc_a")
        assert "use each other in a cycle: cyc_a -> cyc_b -> cyc_a" in str(cycle.value.message())
        with pytest.raises(InferenceServerException) as old:
            client.load_model("oldversion")
        assert "step 1 (model 'preprocess'): model 'preprocess' has no version 7" in str(
            old.value.message()
        )
        with pytest.raises(InferenceServerException) as bad:
            client.load_model("badstep")
        assert "step 3 (model 'nofile') did not load" in str(bad.value.message())
        index = {r["name"]: r for r in client.get_model_repository_index()}
        assert "did not load" in index["badstep"]["reason"]
        assert _state(client) == {}
        with pytest.raises(InferenceServerException) as unknown:
            client.load_model("unknown")
        assert "step 3 (model 'nowhere')" in str(unknown.value.message())
        assert _state(client) == {}  # no step stays loaded for an ensemble that did not load
        with pytest.raises(InferenceServerException) as mismatch:
            client.load_model("mismatch")
        message = str(mismatch.value.message())
        assert "step 2 (model 'addsub')" in message
        assert "FP32" in message and "INT32" in message


def test_steps_in_use_are_not_evicted(repo: Path, tmp_path: Path) -> None:
    """Three models may stay loaded. While slowchain's first step runs, its second step is
    idle but held by the ensemble's request: a fourth model gets no room (429) instead of
    evicting it, and the request ends well."""
    with (
        ServerProcess(
            str(repo),
            "--model-control-mode",
            "ondemand",
            "--max-loaded-models",
            "3",
            log_path=tmp_path / "s.log",
        ) as server,
        httpclient.InferenceServerClient(server.http_addr, concurrency=2) as client,
    ):
        x = httpclient.InferInput("X", [1], "FP32")
        x.set_data_from_numpy(np.array([1.0], dtype=np.float32))
        client.infer("slowchain", [x])  # loads slowchain, slow_left, slow_right
        running = client.async_infer("slowchain", [x])
        time.sleep(0.15)  # inside slow_left's 0.6 s; slow_right waits for its input
        with pytest.raises(InferenceServerException) as err:
            _http_infer(client, "preprocess", RAW)
        assert err.value.status() == "429"
        assert running.get_result().as_numpy("OUT").tolist() == [1.0]
        assert set(_state(client)) == {"slowchain", "slow_left", "slow_right"}


def test_memory_budget_counts_the_steps_not_loaded(repo: Path, tmp_path: Path) -> None:
    with (
        ServerProcess(
            str(repo),
            "--model-control-mode",
            "ondemand",
            "--memory-budget",
            "1",
            log_path=tmp_path / "s.log",
        ) as server,
        httpclient.InferenceServerClient(server.http_addr) as client,
    ):
        with pytest.raises(InferenceServerException) as err:
            _http_infer(client, "pipeline", RAW)
        assert "its steps not loaded yet need about" in str(err.value.message())
        assert _state(client) == {}


def test_an_ensemble_of_triton_python_backend_steps(tmp_path: Path) -> None:
    """Triton's docs' shape: pb_utils preprocess -> ONNX -> pb_utils postprocess, over HTTP
    and gRPC; a postprocess error (InferenceResponse(error=...)) reaches the client as that
    step's error while the other requests of its batch succeed."""
    repo = pb_utils_pipeline_repository(tmp_path / "repo")
    with (
        ServerProcess(str(repo), log_path=tmp_path / "server.log") as server,
        httpclient.InferenceServerClient(server.http_addr) as http,
        grpcclient.InferenceServerClient(server.grpc_addr) as grpc,
    ):
        np.testing.assert_allclose(_http_infer(http, "pipeline", RAW), expected(RAW))
        result = grpc.infer("pipeline", [_grpc_input("RAW", RAW)]).as_numpy("RESULT")
        np.testing.assert_allclose(result, expected(RAW))
        bad = np.full((1, 4), -60.0, dtype=np.float32)  # SUM = (-59 + -60) * 10 = -1190
        with pytest.raises(InferenceServerException) as error:
            _http_infer(http, "pipeline", bad)
        message = error.value.message()
        assert "step 3 (model 'postprocess')" in message, message
        assert "SUM below -1000" in message, message
        np.testing.assert_allclose(_http_infer(http, "pipeline", RAW), expected(RAW))
