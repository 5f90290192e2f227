"""modelyard on Ray Serve, end to end: a local three-node Ray cluster (conftest.py), the
application built from a repository by `build_app` (as `serve run` builds it), real clients
through Ray's HTTP and gRPC proxies and through the ingress's own HTTP and gRPC ports;
replicas spread over the nodes, and one killed under load.

Slow (three raylets, Serve's controller, a proxy and a replica process per model start on the
2-core machine): one cluster for the session, shut down after it."""

from __future__ import annotations

import concurrent.futures
import queue
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.models import iris
from tests.ray.conftest import HAS_LLAMA, RayApp, replica_nodes

pytest.importorskip("ray.serve")

import ray
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

#: The models of the test repository (conftest.py), sorted.
MODELS = ["addsub", "iris", "mlp", "slow", *(["tiny"] if HAS_LLAMA else [])]


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


def _grpc_input(name: str, array: np.ndarray, datatype: str) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


@pytest.mark.parametrize("port", ["grpc_proxy", "grpc_own"])
def test_tritonclient_grpc_answers_through_ray(app: RayApp, port: str) -> None:
    rows = np.arange(3 * 32, dtype=np.float32).reshape(3, 32) / 100
    expected = _expected_mlp(app.repository, 3)
    with grpcclient.InferenceServerClient(getattr(app, port)) as client:
        result = client.infer("mlp", [_grpc_input("x", rows, "FP32")])
        np.testing.assert_allclose(result.as_numpy("y"), expected, rtol=1e-5)
        features, _ = iris()
        labels = client.infer("iris", [_grpc_input("input", features[:5], "FP64")])
        assert labels.as_numpy("predict").tolist() == app.estimator.predict(features[:5]).tolist()
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("mlp")
        metadata = client.get_model_metadata("mlp", as_json=True)
        assert metadata["inputs"][0]["shape"] == ["-1", "32"]
        index = client.get_model_repository_index(as_json=True)["models"]
        ready = sorted(entry["name"] for entry in index if entry["state"] == "READY")
        assert ready == MODELS
        assert len(index) == len(ready)


@pytest.mark.parametrize("port", ["grpc_proxy", "grpc_own"])
def test_grpc_errors_keep_their_status_through_ray(app: RayApp, port: str) -> None:
    with grpcclient.InferenceServerClient(getattr(app, port)) as client:
        x = _grpc_input("x", np.ones((1, 32), np.float32), "FP32")
        with pytest.raises(InferenceServerException) as unknown:
            client.infer("nope", [x])
        assert unknown.value.status() == "StatusCode.NOT_FOUND"
        assert "nope" in unknown.value.message()
        with pytest.raises(InferenceServerException) as wrong:
            client.infer("mlp", [_grpc_input("x", np.ones((1, 3), np.float32), "FP32")])
        assert wrong.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert "shape" in wrong.value.message()
        assert client.infer("mlp", [x]).as_numpy("y").shape == (1, 4)  # still answering


@pytest.mark.parametrize("port", ["grpc_proxy", "grpc_own"])
def test_grpc_streams_through_ray(app: RayApp, port: str) -> None:
    """ModelStreamInfer, a bidirectional stream: Ray's gRPC proxy hands it to the ingress's
    method as an iterator of requests (Ray 2.60)."""
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    expected = _expected_mlp(app.repository, 2)
    rows = np.arange(2 * 32, dtype=np.float32).reshape(2, 32) / 100
    with grpcclient.InferenceServerClient(getattr(app, port)) as client:
        client.start_stream(callback=lambda result, error: answers.put((result, error)))
        for request_id in ("a", "b"):
            client.async_stream_infer(
                "mlp", [_grpc_input("x", rows, "FP32")], request_id=request_id
            )
        client.async_stream_infer("nope", [_grpc_input("x", rows, "FP32")], request_id="c")
        got = [answers.get(timeout=60) for _ in range(3)]
        client.stop_stream()
    errors = [str(error) for _, error in got if error is not None]
    assert len(errors) == 1 and "nope" in errors[0]
    for result, error in got:
        if error is None:
            np.testing.assert_allclose(result.as_numpy("y"), expected, rtol=1e-5)


def test_the_repository_index_lists_each_model_once_as_ready(app: RayApp) -> None:
    client = httpclient.InferenceServerClient(app.own)
    index = client.get_model_repository_index()
    ready = sorted(entry["name"] for entry in index if entry["state"] == "READY")
    assert ready == MODELS
    assert len(index) == len(MODELS)


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


@pytest.mark.skipif(not HAS_LLAMA, reason="llama-cpp-python is not installed")
def test_a_chats_turns_land_on_the_replica_holding_its_prefix(app: RayApp) -> None:
    """Twelve chats of three turns over tiny's two replicas: each chat stays on one replica
    (the answers' `x-modelyard-replica`), whose cache holds its earlier turns (cached prompt
    tokens), and the chats spread over both."""
    from openai import OpenAI
    from openai.types.chat import ChatCompletionMessageParam

    client = OpenAI(base_url=f"http://{app.own}/v1", api_key="unused", max_retries=0)
    homes: list[str] = []
    for chat in range(12):
        system = f"{chat} is your number. You answer in rhymes, briefly, about the sea. " * 2
        messages: list[ChatCompletionMessageParam] = [{"role": "system", "content": system}]
        replicas, previous = set(), 0
        for turn in range(3):
            messages.append({"role": "user", "content": f"Turn {turn}: what is the tide?"})
            raw = client.chat.completions.with_raw_response.create(
                model="tiny",
                messages=messages,
                max_tokens=4,
                temperature=0,
            )
            done = raw.parse()
            replicas.add(raw.headers["x-modelyard-replica"])
            usage = done.usage
            assert usage is not None and usage.prompt_tokens_details is not None
            cached = usage.prompt_tokens_details.cached_tokens or 0
            assert cached >= previous - 2, (chat, turn, cached, previous)  # the turns before
            previous = usage.prompt_tokens
            answer = done.choices[0].message.content or ""
            messages.append({"role": "assistant", "content": answer})
        assert len(replicas) == 1, (chat, replicas)
        homes += replicas
    assert len(set(homes)) == 2, homes


def test_metrics_are_every_replicas_each_labelled(app: RayApp) -> None:
    """`/metrics` on the ingress: each family once, every sample labelled with its deployment,
    replica and node, mlp's two replicas (and tiny's) apart; what the Ray dashboard charts is
    there."""
    from prometheus_client.parser import text_string_to_metric_families

    from tests.deploy.promql import selectors
    from tests.deploy.test_grafana import dashboard, expressions

    client = httpclient.InferenceServerClient(app.own)
    client.infer("mlp", [_mlp_input(2)])
    if HAS_LLAMA:
        httpx.post(
            f"http://{app.own}/v1/completions",
            json={"model": "tiny", "prompt": "hello", "max_tokens": 2},
            timeout=60,
        )
    wanted = {
        name for expr in expressions(dashboard("modelyard-ray.json")) for name, _ in selectors(expr)
    }
    if not HAS_LLAMA:
        wanted = {name for name in wanted if not name.startswith("vllm:")}
    deadline = time.monotonic() + 60  # replicas report every 5 s
    while True:
        text = httpx.get(f"http://{app.own}/metrics", timeout=10).text
        families = list(text_string_to_metric_families(text))
        samples = [s for family in families for s in family.samples]
        replicas: dict[str, set[str]] = {}
        for sample in samples:
            replicas.setdefault(sample.labels["deployment"], set()).add(sample.labels["replica"])
        names = {sample.name for sample in samples}
        if (
            len(replicas.get("model-mlp", ())) >= 2 and wanted <= names
        ) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(replicas["model-mlp"]) >= 2, replicas  # >2: a killed one not yet expired
    assert len(replicas["model-iris"]) == 1
    if HAS_LLAMA:
        assert len(replicas["model-tiny"]) == 2
    assert not wanted - names, sorted(wanted - names)
    assert len({family.name for family in families}) == len(families)  # one HELP/TYPE each
    assert text.count("# TYPE modelyard_inference_request_success_total ") <= 1
    for sample in samples:
        assert sample.labels["node"] and sample.labels["replica"], sample


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
