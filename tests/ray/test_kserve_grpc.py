"""KServe v2 gRPC at modelyard on Ray's ingress, without a cluster: `RayKServeGRPC` over
in-process stand-ins for the models' deployments (`tests/ray/local.py`), served on a real port
by modelyard's gRPC server and asked by tritonclient.grpc's asyncio client; and the methods
Ray's gRPC proxy calls on the ingress deployment (`with_rpcs`). Through Ray itself:
test_ray_serve.py."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc.aio as aiogrpcclient
from tritonclient.grpc import service_pb2 as pb
from tritonclient.utils import InferenceServerException

from modelyard.fronts.h2.rpc import RPCError, Status
from modelyard.fronts.kserve_grpc import SERVICE, serve_servicer
from modelyard.ray.kserve_grpc import RayKServeGRPC, with_rpcs
from tests.models import iris, mlp_onnx, sklearn_skops
from tests.ray.local import local_front
from tests.server_process import free_port


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    mlp_onnx(tmp_path / "mlp.onnx")
    sklearn_skops(tmp_path / "iris.skops")
    return tmp_path


def _mlp_rows(rows: int) -> np.ndarray:
    return np.arange(rows * 32, dtype=np.float32).reshape(rows, 32) / 100


def _expected_mlp(repository: Path, rows: int) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(repository / "mlp.onnx"))
    result: np.ndarray = session.run(None, {"x": _mlp_rows(rows)})[0]
    return result


def _input(name: str, array: np.ndarray, datatype: str) -> aiogrpcclient.InferInput:
    tensor = aiogrpcclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


@asynccontextmanager
async def _client(repository: Path) -> AsyncIterator[aiogrpcclient.InferenceServerClient]:
    """tritonclient.grpc on the ingress's own gRPC port, served in this event loop."""
    port = free_port()
    async with local_front(repository) as front:
        server = serve_servicer(RayKServeGRPC(front), "127.0.0.1", port)
        await server.start()
        try:
            async with aiogrpcclient.InferenceServerClient(f"127.0.0.1:{port}") as client:
                yield client
        finally:
            await server.stop(0)


@pytest.mark.anyio
async def test_inference_runs_on_the_models_replicas(repository: Path) -> None:
    async with _client(repository) as client:
        result = await client.infer("mlp", [_input("x", _mlp_rows(3), "FP32")])
        expected = _expected_mlp(repository, 3)
        np.testing.assert_allclose(result.as_numpy("y"), expected, rtol=1e-5)
        features, _ = iris()
        labels = (await client.infer("iris", [_input("input", features[:5], "FP64")])).as_numpy(
            "predict"
        )
        assert labels is not None and labels.shape == (5,)

        async def requests() -> AsyncIterator[dict[str, Any]]:
            for rows in (1, 2):
                yield {"model_name": "mlp", "inputs": [_input("x", _mlp_rows(rows), "FP32")]}

        streamed = [(r, e) async for r, e in client.stream_infer(requests())]
        assert [e for _, e in streamed] == [None, None]
        shapes = sorted(r.as_numpy("y").shape for r, _ in streamed)
        assert shapes == [(1, 4), (2, 4)]


@pytest.mark.anyio
async def test_model_calls_are_answered_by_the_models_replica(repository: Path) -> None:
    async with _client(repository) as client:
        assert await client.is_server_live()
        assert await client.is_server_ready()
        assert (await client.get_server_metadata(as_json=True))["name"] == "modelyard"
        assert await client.is_model_ready("iris")
        metadata = await client.get_model_metadata("mlp", as_json=True)
        assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["-1", "32"]}]
        config = await client.get_model_config("iris", as_json=True)
        assert config["config"]["name"] == "iris"
        await client.infer("mlp", [_input("x", _mlp_rows(1), "FP32")])
        stats = await client.get_inference_statistics("mlp", as_json=True)
        assert stats["model_stats"][0]["inference_stats"]["success"]["count"] == "1"


@pytest.mark.anyio
async def test_listings_are_merged_from_every_deployment(repository: Path) -> None:
    async with _client(repository) as client:
        index = (await client.get_model_repository_index(as_json=True))["models"]
        assert [(m["name"], m["state"]) for m in index] == [("iris", "READY"), ("mlp", "READY")]
        stats = (await client.get_inference_statistics(as_json=True))["model_stats"]
        assert sorted(s["name"] for s in stats) == ["iris", "mlp"]


@pytest.mark.anyio
async def test_errors_keep_their_grpc_status(repository: Path) -> None:
    async with _client(repository) as client:
        with pytest.raises(InferenceServerException) as unknown:
            await client.infer("nope", [_input("x", _mlp_rows(1), "FP32")])
        assert unknown.value.status() == "StatusCode.NOT_FOUND"
        assert "nope" in str(unknown.value.message())
        with pytest.raises(InferenceServerException) as metadata:
            await client.get_model_metadata("nope")
        assert metadata.value.status() == "StatusCode.NOT_FOUND"
        wrong = np.ones((1, 3), np.float32)
        with pytest.raises(InferenceServerException) as shape:
            await client.infer("mlp", [_input("x", wrong, "FP32")])
        assert shape.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert "shape" in str(shape.value.message())
        with pytest.raises(InferenceServerException) as shared:
            await client.get_system_shared_memory_status()
        assert shared.value.status() == "StatusCode.UNIMPLEMENTED"


class RayContext:
    """What the ingress's methods use of Ray's `RayServegRPCContext`."""

    def __init__(self) -> None:
        self.code: Any = None
        self.details = ""

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return [("application", "modelyard")]

    def set_code(self, code: Any) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details


@with_rpcs
class Deployment:
    """Holds the servicer as the ingress deployment does."""

    def __init__(self, servicer: RayKServeGRPC) -> None:
        self.grpc = servicer


def test_the_deployment_has_a_method_per_rpc_that_takes_rays_context() -> None:
    for method in SERVICE.methods:
        call = getattr(Deployment, method.name)
        assert "grpc_context" in inspect.signature(call).parameters, method.name
        assert inspect.isasyncgenfunction(call) == method.server_streaming, method.name


@pytest.mark.anyio
async def test_rays_context_carries_the_status_of_a_failed_call(repository: Path) -> None:
    async with local_front(repository) as front:
        deployment: Any = Deployment(RayKServeGRPC(front))
        request = pb.ModelInferRequest(model_name="mlp")
        x = request.inputs.add(name="x", datatype="FP32", shape=[1, 32])
        request.raw_input_contents.append(_mlp_rows(1).tobytes())
        answer = await deployment.ModelInfer(request, grpc_context=RayContext())
        parsed = pb.ModelInferResponse.FromString(answer.SerializeToString())
        assert parsed.outputs[0].name == "y" and list(parsed.outputs[0].shape) == [1, 4]

        x.shape[:] = [1, 3]
        request.raw_input_contents[0] = np.ones((1, 3), np.float32).tobytes()
        context = RayContext()
        answer = await deployment.ModelInfer(request, grpc_context=context)
        assert context.code == grpc.StatusCode.INVALID_ARGUMENT and "shape" in context.details
        assert answer == pb.ModelInferResponse()  # gRPC sends none with an error status

        context = RayContext()
        await deployment.ModelMetadata(pb.ModelMetadataRequest(name="nope"), grpc_context=context)
        assert context.code == grpc.StatusCode.NOT_FOUND and "nope" in context.details


def test_an_rpc_error_crosses_between_processes_whole() -> None:
    import pickle

    error = pickle.loads(pickle.dumps(RPCError(Status.NOT_FOUND, "unknown model 'nope'")))
    assert (error.status, error.message) == (Status.NOT_FOUND, "unknown model 'nope'")


def test_modelyard_serve_ray_gives_the_ingress_its_grpc_port(tmp_path: Path) -> None:
    pytest.importorskip("ray.serve")
    from modelyard.ray.run import app_args
    from modelyard.settings import Settings

    settings = Settings(repositories=(tmp_path,), grpc_port=9001, grpc_max_message_bytes=1 << 20)
    args = app_args(settings, "10.0.0.5")
    assert (args["grpc_port"], args["grpc_max_message_bytes"]) == (9001, 1 << 20)
