"""Triton's generate extension on the KServe HTTP front (fronts/kserve_generate.py), through
every kind of model: inputs by name and shaped to the model's dims, outputs by name, one JSON
answer or Server-Sent Events, errors before and after the first response, a decoupled model's
single-response rule."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.server_process import ServerProcess
from tests.triton_models import triton_repository


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = triton_repository(tmp_path_factory.mktemp("generate-repo"))
    log = tmp_path_factory.mktemp("logs") / "server.log"
    args = ("--model-control-mode", "explicit", "--load-model", "*")
    with ServerProcess(str(repo), *args, log_path=log) as process:
        yield process


def test_generate_on_an_onnx_model_with_two_inputs_and_a_version(server: ServerProcess) -> None:
    body = {"INPUT0": [1, 2, 3, 4], "parameters": {"INPUT1": [1, 1, 1, 1]}, "id": "a"}
    reply = httpx.post(f"{server.url}/v2/models/addsub/versions/1/generate", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        "id": "a",
        "model_name": "addsub",
        "model_version": "1",
        "OUTPUT0": [2.0, 3.0, 4.0, 5.0],
        "OUTPUT1": [0.0, 1.0, 2.0, 3.0],
    }
    missing = httpx.post(f"{server.url}/v2/models/nope/generate", json={})
    assert missing.status_code == 404


def test_generate_and_generate_stream_on_triton_models(server: ServerProcess) -> None:
    """Triton's generate extension: inputs by name, outputs by name, SSE for the stream."""
    reply = httpx.post(f"{server.url}/v2/models/preprocess/generate", json={"INPUT0": [1, 2, 3, 4]})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model_name"] == "preprocess"
    assert body["OUTPUT0"] == [2, 4, 6, 8]
    with httpx.stream(
        "POST", f"{server.url}/v2/models/repeat/generate_stream", json={"IN": [4, 5], "id": "7"}
    ) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in stream.iter_lines() if line]
    assert [(e["OUT"], e["IDX"], e["id"]) for e in events] == [(4, 0, "7"), (5, 1, "7")]


def test_generate_puts_response_parameters_beside_the_outputs(server: ServerProcess) -> None:
    reply = httpx.post(f"{server.url}/v2/models/echo_request/generate", json={"IN": 1, "id": "x"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["inputs_seen"], body["echo"], body["ID"]) == (1, True, "x")


def test_async_decoupled_model_streams(server: ServerProcess) -> None:
    url = f"{server.url}/v2/models/countdown/generate_stream"
    with httpx.stream("POST", url, json={"FROM": 3}) as stream:
        events = [json.loads(line[6:]) for line in stream.iter_lines() if line]
    assert [e["VALUE"] for e in events] == [3, 2, 1]


def test_generate_on_a_decoupled_model_needs_exactly_one_response(server: ServerProcess) -> None:
    one = httpx.post(f"{server.url}/v2/models/repeat/generate", json={"IN": 9})
    assert one.status_code == 200 and one.json()["OUT"] == 9
    two = httpx.post(f"{server.url}/v2/models/repeat/generate", json={"IN": [1, 2]})
    assert two.status_code == 500
    assert "exactly 1 response" in two.json()["error"]


def test_generate_stream_error_event_and_bad_input(server: ServerProcess) -> None:
    with httpx.stream(
        "POST", f"{server.url}/v2/models/repeat/generate_stream", json={"IN": [1, -1]}
    ) as stream:
        events = [json.loads(line[6:]) for line in stream.iter_lines() if line]
    assert events[0]["OUT"] == 1
    assert "element 1 is negative" in events[-1]["error"]
    bad = httpx.post(f"{server.url}/v2/models/preprocess/generate", json={"INPUT0": [1, 2, 3]})
    assert bad.status_code == 400
    assert "do not fit its shape" in bad.json()["error"]
    nested = httpx.post(f"{server.url}/v2/models/preprocess/generate", json={"x": [1]})
    assert nested.status_code == 400
    assert "parameter" in nested.json()["error"]
