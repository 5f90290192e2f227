"""The end-to-end checks every tensor runtime's tests run through the real server with
tritonclient, over HTTP and gRPC alike: metadata and config as plain dicts, one input, bad
input refused as a client error, concurrent requests batched, statistics counted."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeAlias

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.http.aio as aioclient
from tritonclient.utils import InferenceServerException

from tests.server_process import ServerProcess

Client: TypeAlias = httpclient.InferenceServerClient | grpcclient.InferenceServerClient
PROTOCOLS = ("http", "grpc")


@contextmanager
def open_client(protocol: str, server: ServerProcess) -> Iterator[Client]:
    """tritonclient over `protocol` ("http" or "grpc") to the server."""
    client: Client = (
        httpclient.InferenceServerClient(server.http_addr)
        if protocol == "http"
        else grpcclient.InferenceServerClient(server.grpc_addr)
    )
    try:
        yield client
    finally:
        client.close()


def infer_input(client: Client, name: str, array: np.ndarray, datatype: str = "FP32") -> Any:
    module = httpclient if isinstance(client, httpclient.InferenceServerClient) else grpcclient
    tensor = module.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def metadata(client: Client, model: str) -> dict[str, Any]:
    """The model's metadata, shapes as ints whatever the protocol."""
    if isinstance(client, httpclient.InferenceServerClient):
        http: dict[str, Any] = client.get_model_metadata(model)
        return http
    grpc: dict[str, Any] = client.get_model_metadata(model, as_json=True)
    for tensor in grpc["inputs"] + grpc["outputs"]:
        tensor["shape"] = [int(d) for d in tensor["shape"]]
    return grpc


def model_config(client: Client, model: str) -> dict[str, Any]:
    if isinstance(client, httpclient.InferenceServerClient):
        http: dict[str, Any] = client.get_model_config(model)
        return http
    grpc: dict[str, Any] = client.get_model_config(model, as_json=True)["config"]
    return grpc


def tensors(meta: dict[str, Any], kind: str) -> list[tuple[str, str, list[int]]]:
    """(name, datatype, shape) of the metadata's "inputs" or "outputs"."""
    return [(t["name"], t["datatype"], t["shape"]) for t in meta[kind]]


def stats(server: ServerProcess, model: str) -> dict[str, Any]:
    """The model's statistics row, its counts as ints."""
    with grpcclient.InferenceServerClient(server.grpc_addr) as grpc:
        found: dict[str, Any] = grpc.get_inference_statistics(model, as_json=True)
    row = found["model_stats"][0]
    for key in ("inference_count", "execution_count"):
        row[key] = int(row.get(key, 0))
    return dict(row)


def outcome_count(row: dict[str, Any], outcome: str) -> int:
    """Requests of one outcome ("success", "fail") in a statistics row."""
    return int(row["inference_stats"].get(outcome, {}).get("count", 0))


def assert_refused(client: Client, model: str, inputs: list[Any], fragment: str) -> None:
    """The request is the client's error (400 / INVALID_ARGUMENT), its message holding
    `fragment`."""
    grpc = isinstance(client, grpcclient.InferenceServerClient)
    with pytest.raises(InferenceServerException) as refused:
        client.infer(model, inputs)
    assert fragment in refused.value.message()
    assert refused.value.status() == ("StatusCode.INVALID_ARGUMENT" if grpc else "400")


def assert_bad_input(
    client: Client,
    model: str,
    name: str,
    wrong_shape: np.ndarray,
    wrong_type: np.ndarray,
    expected_shape: str,
) -> None:
    """A wrong shape and a wrong datatype are client errors whose messages say what was
    expected."""
    shape = [infer_input(client, name, wrong_shape)]
    assert_refused(client, model, shape, f"expected {expected_shape}")
    datatype = "FP64" if wrong_type.dtype == np.float64 else "INT32"
    assert_refused(client, model, [infer_input(client, name, wrong_type, datatype)], "FP32")


def assert_batched(
    server: ServerProcess,
    model: str,
    name: str,
    rows: np.ndarray,
    output: str,
    want: np.ndarray,
    rtol: float = 1e-5,
    atol: float = 1e-6,
) -> None:
    """12 one-row requests sent together get their own rows' answers (`want`, per row of
    `rows`, cycled) and run in fewer executions than requests."""

    async def run() -> list[np.ndarray]:
        aio = aioclient.InferenceServerClient(server.http_addr)
        try:

            async def one(k: int) -> np.ndarray:
                row = rows[k % len(rows) : k % len(rows) + 1]
                tensor = aioclient.InferInput(name, list(row.shape), "FP32")
                tensor.set_data_from_numpy(row)
                result = await aio.infer(model, [tensor])
                out: np.ndarray = result.as_numpy(output)
                return out

            return list(await asyncio.gather(*[one(k) for k in range(12)]))
        finally:
            await aio.close()

    before = stats(server, model)
    outputs = asyncio.run(run())
    for k, out in enumerate(outputs):
        np.testing.assert_allclose(out[0], want[k % len(rows)], rtol=rtol, atol=atol)
    after = stats(server, model)
    assert after["inference_count"] - before["inference_count"] == 12
    assert after["execution_count"] - before["execution_count"] < 12
    assert max(int(b["batch_size"]) for b in after["batch_stats"]) > 1


def assert_counted(
    client: Client, server: ServerProcess, model: str, name: str, batch: np.ndarray, bad: np.ndarray
) -> None:
    """Two requests of `batch` and one refused request of `bad`: two executions, the rows of
    both counted as inferences, one success each and one failure."""
    before = stats(server, model)
    for _ in range(2):
        client.infer(model, [infer_input(client, name, batch)])
    with pytest.raises(InferenceServerException):
        client.infer(model, [infer_input(client, name, bad)])
    after = stats(server, model)
    assert after["execution_count"] - before["execution_count"] == 2
    assert after["inference_count"] - before["inference_count"] == 2 * len(batch)
    assert outcome_count(after, "success") - outcome_count(before, "success") == 2
    assert outcome_count(after, "fail") - outcome_count(before, "fail") == 1
    assert any(int(b["batch_size"]) == len(batch) for b in after["batch_stats"])
