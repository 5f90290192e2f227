"""tritonclient helpers the runtime tests share: a client of either protocol, and inputs,
metadata, configs and statistics read the same way over HTTP and gRPC."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeAlias

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.http.aio as aioclient

from tests.server_process import ServerProcess

Client: TypeAlias = httpclient.InferenceServerClient | grpcclient.InferenceServerClient
PROTOCOLS = ("http", "grpc")


@contextmanager
def connect(protocol: str, server: ServerProcess) -> Iterator[Client]:
    """A tritonclient of `protocol` ("http" or "grpc") to `server`, closed afterwards."""
    client: Client
    if protocol == "http":
        client = httpclient.InferenceServerClient(server.http_addr)
    else:
        client = grpcclient.InferenceServerClient(server.grpc_addr)
    try:
        yield client
    finally:
        client.close()


def is_grpc(client: Client) -> bool:
    return isinstance(client, grpcclient.InferenceServerClient)


def bad_request_status(client: Client) -> str:
    """What tritonclient reports for a 400 / INVALID_ARGUMENT answer."""
    return "StatusCode.INVALID_ARGUMENT" if is_grpc(client) else "400"


def infer_input(client: Client, name: str, array: np.ndarray, datatype: str = "FP32") -> Any:
    module = grpcclient if is_grpc(client) else httpclient
    tensor = module.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def metadata(client: Client, model: str) -> dict[str, Any]:
    """Model metadata as HTTP's JSON has it (gRPC's shapes as ints)."""
    if not is_grpc(client):
        http: dict[str, Any] = client.get_model_metadata(model)
        return http
    grpc: dict[str, Any] = client.get_model_metadata(model, as_json=True)
    for tensor in grpc["inputs"] + grpc["outputs"]:
        tensor["shape"] = [int(d) for d in tensor["shape"]]
    return grpc


def model_config(client: Client, model: str) -> dict[str, Any]:
    if not is_grpc(client):
        http: dict[str, Any] = client.get_model_config(model)
        return http
    grpc: dict[str, Any] = client.get_model_config(model, as_json=True)["config"]
    return grpc


def tensors(meta: dict[str, Any], kind: str) -> list[tuple[str, str, list[int]]]:
    """(name, datatype, shape) of metadata's "inputs" or "outputs"."""
    return [(t["name"], t["datatype"], t["shape"]) for t in meta[kind]]


def statistics(server: ServerProcess, model: str) -> dict[str, Any]:
    """The model's statistics row, its counts as ints."""
    with grpcclient.InferenceServerClient(server.grpc_addr) as grpc:
        stats: dict[str, Any] = grpc.get_inference_statistics(model, as_json=True)
    row = stats["model_stats"][0]
    for key in ("inference_count", "execution_count"):
        row[key] = int(row.get(key, 0))
    return dict(row)


def outcome_count(stats: dict[str, Any], outcome: str) -> int:
    """How many inferences ended in `outcome` ("success", "fail") in a statistics row."""
    return int(stats["inference_stats"].get(outcome, {}).get("count", 0))


def infer_together(
    server: ServerProcess, model: str, name: str, rows: list[np.ndarray], output: str
) -> list[np.ndarray]:
    """One HTTP request per array in `rows`, all sent at once; each answer's `output`."""

    async def run() -> list[np.ndarray]:
        aio = aioclient.InferenceServerClient(server.http_addr)
        try:

            async def one(array: np.ndarray) -> np.ndarray:
                tensor = aioclient.InferInput(name, list(array.shape), "FP32")
                tensor.set_data_from_numpy(array)
                result = await aio.infer(model, [tensor])
                out: np.ndarray = result.as_numpy(output)
                return out

            return list(await asyncio.gather(*[one(array) for array in rows]))
        finally:
            await aio.close()

    return asyncio.run(run())
