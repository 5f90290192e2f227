"""modelyard on Ray Serve, end to end: a local three-node Ray cluster (conftest.py), the
application built from a repository by `build_app` (as `serve run` builds it), real clients
through Ray's HTTP proxy and through the ingress's own port; replicas spread over the nodes,
and one killed under load.

Slow (three raylets, Serve's controller, a proxy and a replica process per model start on the
2-core machine): one cluster for the session, shut down after it."""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.models import iris
from tests.ray.conftest import HAS_LLAMA, RayApp, replica_nodes

pytest.importorskip("ray.serve")

import ray
import tritonclient.http as httpclient

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture
def app(ray_app: RayApp) -> RayApp:
    return ray_app


def _mlp_input(rows: int) -> httpclient.InferInput:
    x = httpclient.InferInput("x", [rows, 32], "FP32")
    x.set_data_from_numpy(np.arange(rows * 32, dtype=np.float32).reshape(rows, 32) / 100)
    return x


def _expected_mlp(repository: Path, rows: int) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(repository / "mlp" / "model.onnx"))
    x = np.arange(rows * 32, dtype=np.float32).reshape(rows, 32) / 100
    result: np.ndarray = session.run(None, {"x": x})[0]
    return result


@pytest.mark.parametrize("port", ["proxy", "own"])
def test_tritonclient_http_answers_through_ray(app: RayApp, port: str) -> None:
    client = httpclient.InferenceServerClient(getattr(app, port))
    result = client.infer("mlp", [_mlp_input(3)])
    np.testing.assert_allclose(result.as_numpy("y"), _expected_mlp(app.repository, 3), rtol=1e-5)

    features, _ = iris()
    x = httpclient.InferInput("input", [5, 4], "FP64")
    x.set_data_from_numpy(features[:5])
    labels = client.infer("iris", [x]).as_numpy("predict")
    assert labels is not None
    assert labels.tolist() == app.estimator.predict(features[:5]).tolist()
    assert client.is_server_ready()
    assert client.get_model_metadata("mlp")["inputs"][0]["shape"] == [-1, 32]


def test_the_repository_index_lists_each_model_once_as_ready(app: RayApp) -> None:
    client = httpclient.InferenceServerClient(app.own)
    index = client.get_model_repository_index()
    ready = sorted(entry["name"] for entry in index if entry["state"] == "READY")
    expected = ["addsub", "iris", "mlp", "slow", *(["tiny"] if HAS_LLAMA else [])]
    assert ready == expected
    assert len(index) == len(expected)


def test_bad_requests_get_clear_4xx_and_the_app_keeps_answering(app: RayApp) -> None:
    url = f"http://{app.own}/v2/models"
    body = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
    unknown = httpx.post(f"{url}/nope/infer", json=body)
    assert unknown.status_code == 404
    assert "nope" in unknown.json()["error"]
    wrong = httpx.post(f"{url}/mlp/infer", json=body)
    assert wrong.status_code == 400
    assert "shape" in wrong.json()["error"]
    assert httpx.get(f"{url}/nope").status_code in (400, 404)
    client = httpclient.InferenceServerClient(app.own)
    assert client.infer("mlp", [_mlp_input(1)]).as_numpy("y") is not None


@pytest.mark.skipif(not HAS_LLAMA, reason="llama-cpp-python is not installed")
def test_openai_answers_through_ray(app: RayApp) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"http://{app.own}/v1", api_key="unused")
    done = client.completions.create(model="tiny", prompt="hello", max_tokens=4, temperature=0)
    assert done.choices[0].text
    again = client.completions.create(model="tiny", prompt="hello", max_tokens=4, temperature=0)
    assert again.choices[0].text == done.choices[0].text
    stream = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=4,
        stream=True,
    )
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert "".join(pieces)
    assert [m.id for m in client.models.list().data] == ["tiny"]


def test_replicas_spread_over_the_worker_nodes_and_answer_there(app: RayApp) -> None:
    """mlp's two replicas run on two nodes (Ray spreads them; the head, with no CPU, takes no
    model), the ingress on the head; concurrent requests through it are answered."""
    workers = {node.node_id for node in app.cluster.worker_nodes}
    mlp = replica_nodes("model-mlp")
    assert len(mlp) == 2, mlp
    assert set(mlp.values()) == workers  # one replica on each worker node
    models = ("model-iris", "model-addsub", "model-slow")
    assert {node for d in models for node in replica_nodes(d).values()} <= workers
    assert set(replica_nodes("ingress").values()) == {ray.get_runtime_context().get_node_id()}

    client = httpclient.InferenceServerClient(app.own, concurrency=8)
    pending = [client.async_infer("mlp", [_mlp_input(4)]) for _ in range(64)]
    expected = _expected_mlp(app.repository, 4)
    for request in pending:
        np.testing.assert_allclose(request.get_result().as_numpy("y"), expected, rtol=1e-5)
    client.close()


def test_a_killed_replica_loses_no_request(app: RayApp) -> None:
    """Kill one of mlp's two replicas (its actor, as kill -9 would) under load: every request
    is answered (those it held run again on the other replica), none fails."""
    replicas = [
        name
        for name in ray.util.list_named_actors(all_namespaces=True)
        if isinstance(name, dict) and "model-mlp" in name["name"]
    ]
    assert len(replicas) == 2, replicas
    expected = _expected_mlp(app.repository, 2).tolist()
    x = (np.arange(2 * 32, dtype=np.float32).reshape(2, 32) / 100).tolist()
    body = {"inputs": [{"name": "x", "shape": [2, 32], "datatype": "FP32", "data": x}]}

    with httpx.Client(base_url=f"http://{app.own}", timeout=120) as client:

        def one(_: int) -> list[float]:
            answer = client.post("/v2/models/mlp/infer", json=body)
            assert answer.status_code == 200, answer.text
            data: list[float] = answer.json()["outputs"][0]["data"]
            return data

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            before = [pool.submit(one, i) for i in range(200)]
            time.sleep(0.05)
            victim = ray.get_actor(replicas[0]["name"], namespace=replicas[0]["namespace"])
            ray.kill(victim, no_restart=True)
            after = [pool.submit(one, i) for i in range(200)]
            for future in before + after:
                got = np.asarray(future.result(timeout=120)).reshape(2, -1)
                np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_a_deployments_version_changes_with_what_its_replicas_load_only(tmp_path: Path) -> None:
    """No cluster: a new version folder changes that model's deployment version (Ray rolls
    it), and nothing else's; a replica option changes every model's."""
    from modelyard.ray.app import model_version
    from modelyard.ray.replica import ReplicaOptions
    from modelyard.repository.scan import scan
    from tests.models import addsub_onnx, mlp_onnx

    addsub_onnx(tmp_path / "addsub" / "1" / "model.onnx")
    mlp_onnx(tmp_path / "mlp.onnx")
    options = ReplicaOptions()

    def versions(replica: ReplicaOptions = options) -> dict[str, str]:
        sources = scan([tmp_path])
        return {name: model_version(sources, name, replica) for name in sources}

    before = versions()
    assert versions() == before  # the same repository deployed again: nothing rolls
    addsub_onnx(tmp_path / "addsub" / "2" / "model.onnx", scale=10.0)
    after = versions()
    assert after["mlp"] == before["mlp"]
    assert after["addsub"] != before["addsub"]
    trusted = versions(ReplicaOptions(trust_pickle=True))
    assert all(trusted[name] != after[name] for name in after)
